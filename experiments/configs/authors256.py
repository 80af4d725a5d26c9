"""The authors' public code (spec §6): 256×256 in [-1, 1], batch 6, Adam lr 1e-5 constant,
eps 1e-6, weight decay 1e-5 (PyTorch Adam's, coupled), margin 1.2, about 300k steps,
obfuscator strengths of the authors256 preset. The authors trained on aligned CelebA:
--config.data=tfds:celeb_a (the default data, UTKFace at 200×200, is upscaled to 256)."""
from experiments.configs import base_config


def get_config(arg=None):
    c = base_config(arg)
    c.image_size = 256
    c.batch_size = 6
    c.eval_batch_size = 6
    c.loss.margin = 1.2
    c.optim.eps = 1e-6
    c.optim.weight_decay = 1e-5
    c.obfuscator_preset = "authors256"
    c.num_train_steps = 300_000
    return c

"""Tiny and quick, for tests and plumbing checks: 32×32, one block, batch 2, 4 steps, LPIPS off."""
from experiments.configs import base_config


def get_config(arg=None):
    c = base_config(arg)
    c.image_size = 32
    c.batch_size = 2
    c.flow.num_blocks = 1
    c.num_train_steps = 4
    c.loss.use_lpips = False
    c.eval_lpips = False
    c.optim.lr = 1e-4
    c.optim.grad_clip = 1.0
    c.eval_batch_size = 2
    c.donor_limit = 8
    c.log_every = 1
    c.eval_every = 2
    c.sample_every = 2
    c.checkpoint_every = 2
    c.keep_checkpoints = 2
    c.guard.min_history = 2
    c.guard.window = 10
    c.num_workers = 1
    c.prefetch = 1
    c.progress_bar = False
    return c

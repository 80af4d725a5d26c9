"""The paper's setting (spec §6): N=3, 112×112, batch 12, Adam (0.9, 0.999) lr 1e-5 constant,
margin 1.0, β=5, the authors' λ per mode, about 135k steps; obfuscators drawn per batch."""
from experiments.configs import base_config


def get_config(arg=None):
    return base_config(arg)

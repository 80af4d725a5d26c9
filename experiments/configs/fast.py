"""`fast`: see `proface_jax.training.config.fast`."""
from proface_jax.training import config


def get_config(arg=None):
    """`--config=experiments/configs/fast.py[:obfswr]`."""
    return config.get("fast", arg)

"""`smoke`: see `proface_jax.training.config.smoke`."""
from proface_jax.training import config


def get_config(arg=None):
    """`--config=experiments/configs/smoke.py[:obfswr]`."""
    return config.get("smoke", arg)

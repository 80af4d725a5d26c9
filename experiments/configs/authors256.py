"""`authors256`: see `proface_jax.training.config.authors256`."""
from proface_jax.training import config


def get_config(arg=None):
    """`--config=experiments/configs/authors256.py[:obfswr]`."""
    return config.get("authors256", arg)

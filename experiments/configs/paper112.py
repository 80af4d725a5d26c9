"""`paper112`: see `proface_jax.training.config.paper112`."""
from proface_jax.training import config


def get_config(arg=None):
    """`--config=experiments/configs/paper112.py[:obfswr]`."""
    return config.get("paper112", arg)

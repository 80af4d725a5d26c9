"""LPIPS (v0.1, VGG16 trunk) in JAX, numerically matching the PyTorch `lpips` package.

    params = proface_jax.lpips.load_params()      # converted weights, see weights.py
    d = proface_jax.lpips.lpips(params, a, b)     # NHWC in [-1, 1] -> [N]

Get the weights once with `python -m proface_jax.lpips.convert`.
"""
from proface_jax.lpips.distance import SCALE, SHIFT, lpips, scale_input
from proface_jax.lpips.weights import (
    FETCH_COMMAND,
    LPIPSWeightsInvalid,
    LPIPSWeightsMissing,
    default_weights_path,
    find_weights,
    load_params,
)

__all__ = [
    "FETCH_COMMAND", "LPIPSWeightsInvalid", "LPIPSWeightsMissing", "SCALE", "SHIFT",
    "default_weights_path", "find_weights", "lpips", "load_params", "scale_input",
]

"""Shared inputs for the flow property tests (float32 and float64 modules)."""
import jax
import jax.numpy as jnp

from proface_jax import keys, variants
from proface_jax.flow import FlowConfig
from proface_jax.testing import random_params

# A fixed small set of shapes, so that each jitted function compiles once per shape.
SHAPES = [(2, 16, 16, 3), (1, 24, 16, 3)]
CONFIG = FlowConfig(num_blocks=3)

# Every registered variant, at one block (two with a mixing layer, which sits between blocks):
# N is a number, not an architecture (test_flow checks N = 3 for the paper's).
VSHAPE = (1, 8, 8, 3)


def variant_config(name: str, **kw) -> FlowConfig:
    cfg = variants.get(name)
    return variants.get(name, num_blocks=1 if cfg.mixing == "none" else 2, **kw)


# registered names, each distinct config once (n1, n2, n4 are the paper's here)
_seen: set = set()
VARIANTS = [n for n in variants.names() if not (variant_config(n) in _seen or _seen.add(variant_config(n)))]


def case(seed: int, shape, scale: float, shift: float, internal_gain: float, dtype=jnp.float32, config=CONFIG):
    """(params, x, y, K) with random params (see `testing.random_params`) and images in [-1, 1]."""
    k = jax.random.split(jax.random.key(seed), 4)
    params = random_params(k[0], config, scale, shift, internal_gain)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    x = jax.random.uniform(k[1], shape, dtype, -1, 1)
    y = jax.random.uniform(k[2], shape, dtype, -1, 1)
    K = keys.random_key(k[3], shape[0], shape[1], shape[2], dtype)
    return params, x, y, K


def max_err(a, b) -> float:
    return float(jnp.max(jnp.abs(a - b)))

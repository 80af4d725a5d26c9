"""Helpers for tests, benchmarks and the invertibility lab: params that exercise every subnet."""
from __future__ import annotations

import jax
import numpy as np

from proface_jax import flow


def random_params(rng, config=None, scale: float = 1.0, shift_scale: float = 0.5, internal_gain: float = 1.0):
    """Params with every conv drawn He-style (std √(2/fan_in)); the last conv of
    the scale subnets (ω, ρ) is multiplied by `scale`, that of the shift subnets
    (φ, η) by `shift_scale`, and convs 1–4 by `internal_gain` (a smaller gain
    makes each subnet smoother, i.e. a smaller Lipschitz constant).

    Unlike the authors' init (identity at start), these make every subnet
    matter, and a large `scale` drives e(s) into the soft clamp's saturation
    (|log e| → clamp), where inverses are hardest. Shifts are unbounded, so a
    large shift gain only inflates the values (and absolute float32 errors with
    them) without testing anything new. Any variant's params (`flow.FlowConfig`): FiLM convs
    take `internal_gain`; mixers' params (LU factors, log-scales) are drawn with std 0.1·internal_gain.
    """
    params = flow.init_params(rng, config)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(jax.random.fold_in(rng, 1), len(leaves))
    out = []
    for (path, leaf), k in zip(leaves, keys):
        names = [getattr(p, "key", None) for p in path]
        gain = internal_gain
        if "conv5" in names or "head" in names:  # the last conv (dense; resnet / unet)
            gain = scale if ("omega" in names or "rho" in names) else shift_scale
        if leaf.ndim == 4:  # HWIO kernel
            std = np.sqrt(2.0 / (leaf.shape[0] * leaf.shape[1] * leaf.shape[2]))
        else:  # bias
            std = 0.1
        out.append(gain * std * jax.random.normal(k, leaf.shape, leaf.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)

"""LPIPS v0.1 with the VGG16 trunk: the math of `lpips.LPIPS(net='vgg')` (PyTorch), in JAX.

d(a, b) = Σ_l mean_hw( Σ_c w_lc · (n_l(a) − n_l(b))²_hwc ),
with n_l the VGG16 ReLU features at tap l divided by their channel-wise L2 norm
(+1e-10), after the `lpips` package's input scaling (x − shift) / scale.
Inputs are NHWC in [-1, 1] — the range the package expects by default
(`normalize=False`). Dropout in the heads is inactive (eval mode).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from proface_jax.lpips import vgg

# lpips.ScalingLayer constants: for [-1, 1] input they turn it into roughly
# ImageNet-normalised input for the trunk.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
NORM_EPS = 1e-10
MIN_SIZE = 16  # four 2×2 pools before conv5_3


def scale_input(x):
    return (x - jnp.asarray(SHIFT, jnp.float32)) / jnp.asarray(SCALE, jnp.float32)


def _unit_normalise(feat):
    """feat / (‖feat‖₂ over channels + eps), with a gradient that stays finite where feat = 0.

    A ReLU feature vector can be exactly zero; d sqrt(s)/ds is infinite at s = 0
    and would turn the gradient into NaN (it does in the PyTorch package too).
    The value is unchanged: the norm is 0 there either way.
    """
    sq = jnp.sum(feat * feat, axis=-1, keepdims=True)
    positive = sq > 0
    norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
    return feat / (norm + NORM_EPS)


def _check(a, b):
    if not (jnp.issubdtype(a.dtype, jnp.floating) and jnp.issubdtype(b.dtype, jnp.floating)):
        raise TypeError(f"lpips: expected float images in [-1, 1], got {a.dtype} and {b.dtype} (convert uint8 with images.to_unit)")
    if a.shape != b.shape:
        raise ValueError(f"lpips: shapes differ, {a.shape} vs {b.shape}")
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"lpips: expected NHWC RGB images, got shape {a.shape}")
    if min(a.shape[1:3]) < MIN_SIZE:
        raise ValueError(f"lpips: images must be at least {MIN_SIZE}×{MIN_SIZE}, got {a.shape[1:3]}")


@jax.jit
def lpips(params, a, b) -> jax.Array:
    """LPIPS-VGG distance per image: float32 [N] for NHWC images `a`, `b` in [-1, 1].

    Pure and differentiable w.r.t. `a` and `b`. Values outside [-1, 1] are not
    clamped here (a loss may need their gradient); clamp first when scoring
    (`proface_jax.metrics` does).
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    _check(a, b)
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    # Constants, never trained: no gradient reaches them even if a caller differentiates a
    # pytree that happens to contain them.
    params = jax.lax.stop_gradient(params)
    # Separate trunk passes (not one concatenated batch): identical images then give
    # bit-identical features, so lpips(x, x) is exactly 0.
    return from_taps(params["lin"], unit_taps(params, a), unit_taps(params, b))


def unit_taps(params, x) -> list:
    """The VGG trunk's five taps for NHWC `x` in [-1, 1], unit-normalised along channels: what
    `from_taps` compares (an image scored against several others needs its trunk pass once)."""
    return [_unit_normalise(f) for f in vgg.features(params["vgg"], scale_input(x))]


def from_taps(lin, taps_a, taps_b) -> jax.Array:
    """LPIPS per image from two images' `unit_taps` and the linear heads `params["lin"]`."""
    total = jnp.zeros((taps_a[0].shape[0],), jnp.float32)
    for fa, fb, w in zip(taps_a, taps_b, lin):
        # The 1×1 head as a weighted channel sum (not a dot): an exact zero d stays an exact 0.
        per_pixel = jnp.sum(jnp.square(fa - fb) * w, axis=-1)
        total = total + jnp.mean(per_pixel, axis=(1, 2))
    return total

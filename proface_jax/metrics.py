"""PSNR, SSIM and LPIPS on RGB images, with the range conventions written down once.

Conventions (spec §8, which lists the pitfalls they prevent):
* Inputs are NHWC RGB in the model's range [-1, 1] (float), or uint8 files' pixels.
* Everything is clamped to [-1, 1] before scoring: an output outside the valid range is
  scored as the image a viewer would see, never min–max renormalised.
* `from_8bit=True` (the default of `score`) rounds both images to 8-bit levels first
  (`images.quantize`: clamp, round-half-even to k/255): the image a user stores and
  recovers from. Report both where the float result matters too.
* PSNR and SSIM are computed on [0, 1] = (x + 1) / 2, data range 1. Identical images
  give PSNR = +inf.
* SSIM is dm-pix's: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03, population
  (co)variances, mean over the valid (un-padded) window positions and the 3 channels.
  That equals scikit-image's `structural_similarity(a, b, channel_axis=-1, data_range=1.0,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)` (tests/test_metrics.py
  checks it on real faces).
* LPIPS (VGG16, v0.1) is fed the clamped image in [-1, 1], the range it expects.
All metrics are per image: arrays of shape [N].
"""
from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import images
from proface_jax.lpips import lpips as _lpips

SSIM_FILTER_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


# The float value of each 8-bit level, taken from `images.to_unit` itself: indexing this
# table gives bit-for-bit what reloading a stored PNG gives (XLA's division by 127.5 can
# differ from numpy's in the last bit).
LEVELS_8BIT = images.to_unit(np.arange(256, dtype=np.uint8))


def as_model_range(x):
    """uint8 pixels -> [-1, 1] float32; float input is taken as already in [-1, 1] (not clamped here)."""
    x = jnp.asarray(x)
    if x.dtype == jnp.uint8:
        return jnp.asarray(LEVELS_8BIT)[x.astype(jnp.int32)]
    if jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"integer images must be uint8 pixels, got {x.dtype}")
    return x.astype(jnp.float32)


def clamp(x):
    """The valid range, [-1, 1]."""
    return jnp.clip(x, -1.0, 1.0)


def quantize8(x):
    """`images.quantize` (clamp, round-half-even to k/255), each level then snapped to the exact float
    `images.to_unit` gives it, so the result equals `images.to_unit(images.from_unit(x))` bit for bit:
    the stored file's pixels. (images.quantize's division by 127.5 can differ from numpy's in the last
    bit under XLA; the snap is exact because those values lie within 1e-6 of the levels.)
    """
    q = images.quantize(as_model_range(x))
    levels = jnp.round((q + 1.0) * 127.5).astype(jnp.int32)
    return jnp.asarray(LEVELS_8BIT)[levels]


def _to_unit_interval(x):
    return (clamp(x) + 1.0) * 0.5


def _check(a, b):
    if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected two NHWC RGB batches of the same shape, got {a.shape} and {b.shape}")


@jax.jit
def psnr(a, b) -> jax.Array:
    """PSNR in dB per image, on clamped images mapped to [0, 1] (data range 1)."""
    a, b = as_model_range(a), as_model_range(b)
    _check(a, b)
    return pix.psnr(_to_unit_interval(a), _to_unit_interval(b))


@jax.jit
def ssim(a, b) -> jax.Array:
    """SSIM per image (see module docstring for the exact definition)."""
    a, b = as_model_range(a), as_model_range(b)
    _check(a, b)
    return pix.ssim(_to_unit_interval(a), _to_unit_interval(b), max_val=1.0,
                    filter_size=SSIM_FILTER_SIZE, filter_sigma=SSIM_SIGMA, k1=SSIM_K1, k2=SSIM_K2)


def lpips(params, a, b) -> jax.Array:
    """LPIPS-VGG per image on clamped [-1, 1] images (for a loss, use `proface_jax.lpips.lpips`)."""
    a, b = as_model_range(a), as_model_range(b)
    _check(a, b)
    return _lpips(params, clamp(a), clamp(b))


def _lpips_batched(params, a, b, batch: int) -> np.ndarray:
    """LPIPS in fixed-size chunks (the last one padded), bounding memory with one compiled shape."""
    n = a.shape[0]
    if n <= batch:
        return np.asarray(lpips(params, a, b))
    out = []
    for i in range(0, n, batch):
        ca, cb = a[i:i + batch], b[i:i + batch]
        k = ca.shape[0]
        if k < batch:
            pad = [(0, batch - k)] + [(0, 0)] * 3
            ca, cb = jnp.pad(ca, pad), jnp.pad(cb, pad)
        out.append(np.asarray(lpips(params, ca, cb))[:k])
    return np.concatenate(out)


def score(a, b, lpips_params=None, from_8bit: bool = True, lpips_batch: int = 32) -> dict[str, np.ndarray]:
    """{"psnr", "ssim"[, "lpips"]}: per-image numpy arrays comparing `a` with reference `b`.

    `from_8bit`: score the 8-bit-quantised images (what a user stores); False scores the
    clamped floats. LPIPS is included when `lpips_params` is given
    (`proface_jax.lpips.load_params()`); it is left out otherwise, never guessed.
    """
    a, b = as_model_range(a), as_model_range(b)
    _check(a, b)
    a, b = (quantize8(a), quantize8(b)) if from_8bit else (clamp(a), clamp(b))
    out = {"psnr": np.asarray(psnr(a, b)), "ssim": np.asarray(ssim(a, b))}
    if lpips_params is not None:
        out["lpips"] = _lpips_batched(lpips_params, a, b, lpips_batch)
    return out

"""Haar DWT / IWT as fixed stride-2 convolutions (spec §2).

For each 2×2 block with pixels a=(row 0, col 0), b=(row 1, col 0),
c=(row 0, col 1), d=(row 1, col 1), all halved:

    LL =  a + b + c + d        HL = -a - b + c + d
    LH = -a + b - c + d        HH =  a - b - c + d

The four kernels are orthonormal, so the IWT is the transpose of the DWT. The
output is band-major, `[LL(c0..cC-1), HL(...), LH(...), HH(...)]`, the authors'
channel order, so that their checkpoints line up.

Both are constants applied at `Precision.HIGHEST`: on GPUs the default conv
precision is TF32, whose 10-bit mantissa would make the transform, and with it
every recovery, lossy.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

# [kh, kw, band]: kernel of each band at each position of the 2×2 block.
_HAAR = 0.5 * np.array(
    [
        # (kh=0,kw=0)=a  (kh=0,kw=1)=c
        [[1, -1, -1, 1], [1, 1, -1, -1]],
        # (kh=1,kw=0)=b  (kh=1,kw=1)=d
        [[1, -1, 1, -1], [1, 1, 1, 1]],
    ],
    dtype=np.float64,
)
NUM_BANDS = 4
_DN = ("NHWC", "HWIO", "NHWC")


def _check_even(x, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} expects NHWC images of rank 4, got shape {tuple(x.shape)}")
    h, w = x.shape[1], x.shape[2]
    if h % 2 or w % 2:
        raise ValueError(f"{what} needs even height and width, got {h}×{w}; crop or pad the image to even size")


def haar_dwt(x: jnp.ndarray) -> jnp.ndarray:
    """[B, H, W, C] -> [B, H/2, W/2, 4C], band-major."""
    _check_even(x, "haar_dwt")
    c = x.shape[-1]
    # Grouped conv: one group per input channel, 4 outputs (bands) per group,
    # so outputs come channel-major [c0:LL,HL,LH,HH, c1:...].
    kernel = jnp.asarray(np.tile(_HAAR[:, :, None, :], (1, 1, 1, c)), dtype=x.dtype)
    y = lax.conv_general_dilated(
        x, kernel, window_strides=(2, 2), padding="VALID",
        dimension_numbers=_DN, feature_group_count=c, precision=lax.Precision.HIGHEST,
    )
    b, h, w, _ = y.shape
    # channel-major -> band-major (a pure permutation, exact)
    return y.reshape(b, h, w, c, NUM_BANDS).swapaxes(-1, -2).reshape(b, h, w, NUM_BANDS * c)


def haar_iwt(y: jnp.ndarray) -> jnp.ndarray:
    """[B, h, w, 4C] band-major -> [B, 2h, 2w, C]; the exact inverse (transpose) of `haar_dwt`."""
    if y.ndim != 4:
        raise ValueError(f"haar_iwt expects NHWC of rank 4, got shape {tuple(y.shape)}")
    if y.shape[-1] % NUM_BANDS:
        raise ValueError(f"haar_iwt needs a multiple of 4 channels (band-major), got {y.shape[-1]}")
    b, h, w, c4 = y.shape
    c = c4 // NUM_BANDS
    y = y.reshape(b, h, w, NUM_BANDS, c).swapaxes(-1, -2).reshape(b, h, w, c4)
    # Transposed conv written as a dilated-input conv: dilate by 2, pad 1, and
    # flip the kernel spatially; each group maps its 4 bands back to 1 channel.
    kernel = np.flip(_HAAR, axis=(0, 1))[:, :, :, None]  # [2, 2, 4, 1]
    kernel = jnp.asarray(np.tile(kernel, (1, 1, 1, c)), dtype=y.dtype)
    return lax.conv_general_dilated(
        y, kernel, window_strides=(1, 1), padding=((1, 1), (1, 1)), lhs_dilation=(2, 2),
        dimension_numbers=_DN, feature_group_count=c, precision=lax.Precision.HIGHEST,
    )


def haar_dwt_reference(x):
    """Slicing reference for tests: the spec's formulas written out directly."""
    x = jnp.asarray(x)
    a = x[:, 0::2, 0::2] / 2
    b = x[:, 1::2, 0::2] / 2
    c = x[:, 0::2, 1::2] / 2
    d = x[:, 1::2, 1::2] / 2
    return jnp.concatenate([a + b + c + d, -a - b + c + d, -a + b - c + d, a - b - c + d], axis=-1)

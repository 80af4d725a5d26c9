"""Gaussian blur, pixelate and median filter in JAX: jit-able, batched, per-batch or per-sample strengths.

Strengths are given in pixels at the preset's reference size R (112 for `paper112`,
256 for `authors256`) and scaled by s = min(H, W) / R for other image sizes:

* blur: σ → σ·s; kernel size → the odd integer nearest kernel·s (at least 3).
* pixelate: block b → round(b·s) (at least 1); the train support is the scaled
  reference support, duplicates kept, so the distribution keeps its shape.
* median: kernel k → round(k·s) (at least 1); presets that only use odd kernels
  (authors256) map to the nearest odd integer instead.

At the reference size every value is exactly the spec's (§7). The paper draws the
strength once per batch; pass `per_sample=True` to draw one per image.
"""
from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from proface_jax.obfuscators.base import Obfuscator, check_images, resolution_scale, round_half_up


def _nearest_odd(x: float, minimum: int = 1) -> int:
    return max(minimum, 2 * round_half_up((x - 1) / 2) + 1)


class _Filter(Obfuscator):
    """Shared logic: strengths drawn from `rng` (`draw`), then a pure filter (`apply`)."""

    jittable = True
    strength_name = "?"
    strength_dtype = jnp.int32

    def __init__(self, preset: str, mode: str, per_sample: bool = False):
        super().__init__(preset, mode)
        self.per_sample = bool(per_sample)

    # --- strengths -----------------------------------------------------------------
    def eval_strength(self, height: int, width: int):
        raise NotImplementedError

    def train_support(self, height: int, width: int):
        """Integer strengths: a tuple of values drawn uniformly (continuous ones override `_draw_train`)."""
        raise NotImplementedError

    def setting(self, height: int, width: int) -> dict:
        if self.mode == "eval":
            return {self.strength_name: self.eval_strength(height, width)}
        return {self.strength_name: self.train_support(height, width)}

    def _draw_train(self, rng, shape, height, width):
        support = jnp.asarray(np.asarray(self.train_support(height, width), np.int32))
        return jax.random.choice(rng, support, shape=shape)

    def draw(self, rng, batch: int, height: int, width: int) -> jax.Array:
        """The per-image strengths [batch] that `__call__` uses for this key and size."""
        if self.mode == "eval":
            return jnp.full((batch,), self.eval_strength(height, width), self.strength_dtype)
        if self.per_sample:
            return self._draw_train(rng, (batch,), height, width).astype(self.strength_dtype)
        one = self._draw_train(rng, (), height, width).astype(self.strength_dtype)
        return jnp.broadcast_to(one, (batch,))

    # --- filtering -----------------------------------------------------------------
    def apply(self, images: jax.Array, strengths: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, rng, images, *, names=None):
        check_images(images, self.name)
        b, h, w, _ = images.shape
        images = jnp.asarray(images, jnp.float32)
        return self.apply(images, self.draw(rng, b, h, w))


# ------------------------------------------------------------------------------------
class GaussianBlur(_Filter):
    """Gaussian blur with a fixed kernel size and σ per image (dm-pix, reflect-padded borders).

    paper112: kernel 21, train σ ~ U(6, 10), eval σ 8. authors256: kernel 61, σ ~ U(9, 21), eval 15.
    """

    name = "blur"
    strength_name = "sigma"
    strength_dtype = jnp.float32
    _REF = {"paper112": (21, 6.0, 10.0, 8.0), "authors256": (61, 9.0, 21.0, 15.0)}

    def kernel_size(self, height: int, width: int) -> int:
        s = resolution_scale(height, width, self.preset.reference_size)
        return _nearest_odd(self._REF[self.preset.name][0] * s, minimum=3)

    def eval_strength(self, height, width):
        return self._REF[self.preset.name][3] * resolution_scale(height, width, self.preset.reference_size)

    def train_support(self, height, width):
        s = resolution_scale(height, width, self.preset.reference_size)
        _, lo, hi, _ = self._REF[self.preset.name]
        return (lo * s, hi * s)

    def setting(self, height, width):
        return {**super().setting(height, width), "kernel": self.kernel_size(height, width)}

    def _draw_train(self, rng, shape, height, width):
        lo, hi = self.train_support(height, width)
        return jax.random.uniform(rng, shape, jnp.float32, lo, hi)

    def apply(self, images, strengths):
        check_images(images, self.name)
        _, h, w, _ = images.shape
        k = self.kernel_size(h, w)
        r = min(k // 2, h - 1, w - 1)  # reflect padding needs r < size
        # dm-pix pads with zeros ("SAME"), which would darken borders; reflect first, then VALID.
        padded = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
        blur_one = lambda im, sigma: dm_pix.gaussian_blur(im, sigma, 2 * r + 1, padding="VALID")
        return jax.vmap(blur_one)(padded, jnp.asarray(strengths, jnp.float32))


# ------------------------------------------------------------------------------------
def _block_mean_matrix(n: int, block) -> jax.Array:
    """[n, n] matrix that replaces each entry by the mean of its block (blocks of `block` from index 0)."""
    idx = jnp.arange(n)
    blk = idx // jnp.maximum(block, 1)
    same = (blk[:, None] == blk[None, :]).astype(jnp.float32)
    return same / jnp.sum(same, axis=1, keepdims=True)


class Pixelate(_Filter):
    """Mosaic: each block×block cell (grid anchored at the top-left; the last cell of a row or
    column may be smaller) is replaced by its mean colour. Equivalent to area downsampling then
    nearest upsampling when the size divides evenly. Block size may differ per image under jit.

    paper112: block ~ U{5..13}, eval 9. authors256: block ∈ {14, 16, …, 26}, eval 20.
    """

    name = "pixelate"
    strength_name = "block"
    _REF = {"paper112": (tuple(range(5, 14)), 9), "authors256": (tuple(range(14, 27, 2)), 20)}

    def _scale(self, b, height, width):
        return max(1, round_half_up(b * resolution_scale(height, width, self.preset.reference_size)))

    def eval_strength(self, height, width):
        return self._scale(self._REF[self.preset.name][1], height, width)

    def train_support(self, height, width):
        return tuple(self._scale(b, height, width) for b in self._REF[self.preset.name][0])

    def apply(self, images, strengths):
        check_images(images, self.name)
        _, h, w, _ = images.shape
        blocks = jnp.asarray(strengths, jnp.int32)
        mh = jax.vmap(lambda b: _block_mean_matrix(h, b))(blocks)
        mw = jax.vmap(lambda b: _block_mean_matrix(w, b))(blocks)
        hi = jax.lax.Precision.HIGHEST
        out = jnp.einsum("bij,bjwc->biwc", mh, images, precision=hi)
        return jnp.einsum("bkw,biwc->bikc", mw, out, precision=hi)


# ------------------------------------------------------------------------------------
def _window_bounds(n: int, kernels):
    """Per-image window [start, stop) along an axis of length n, clipped to the image.

    Window of size k at index i: rows i - k//2 … i - k//2 + k - 1 (OpenCV's default anchor).
    For odd k it is centred; for even k it reaches k/2 before and k/2 - 1 after i.
    """
    i = jnp.arange(n)
    start = i[None, :] - (kernels // 2)[:, None]
    return jnp.clip(start, 0, n), jnp.clip(start + kernels[:, None], 0, n)


def median_filter(images, kernels):
    """Median filter of each image with its own (traced) kernel size; exact on 8-bit values.

    Definition: pixel values are rounded to the 8-bit grid (what a stored image holds);
    the window is k×k (anchor as in `_window_bounds`), truncated at the image border
    (border pixels take the median of the in-image part of their window). With n values
    in the window, the median is the mean of the ⌈n/2⌉-th and (⌊n/2⌋+1)-th smallest:
    the single middle value when n is odd, the mean of the two middle values when n is
    even (e.g. every interior pixel of an even kernel).

    How: the t-th smallest value in a window is #{v : count(window values ≤ v) < t}, and
    each count is a box sum, computed per image as B_h · [levels ≤ v] · B_wᵀ with 0/1 band
    matrices B (row i selects its window), so the cost is 255 box sums per image whatever
    the kernel size, and kernel sizes may be traced and differ per image. The sums are
    small integers, exact in float32 (matmuls at HIGHEST precision: no TF32/bf16 passes).
    (Band matmuls run ~2× faster on CPU than summed-area tables built with `jnp.cumsum`,
    which XLA:CPU lowers to a quadratic reduce_window.)
    """
    b, h, w, c = images.shape
    levels = jnp.round((jnp.clip(images, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.int32)
    kernels = jnp.asarray(kernels, jnp.int32)
    r0, r1 = _window_bounds(h, kernels)
    c0, c1 = _window_bounds(w, kernels)
    count = ((r1 - r0)[:, :, None, None] * (c1 - c0)[:, None, :, None])
    rank_lo = ((count + 1) // 2).astype(jnp.float32)
    rank_hi = (count // 2 + 1).astype(jnp.float32)

    def band(n, start, stop):  # [b, n, n]: row i is 1 on columns start[i] … stop[i] - 1
        j = jnp.arange(n)[None, None, :]
        return ((j >= start[:, :, None]) & (j < stop[:, :, None])).astype(jnp.float32)

    band_h, band_w = band(h, r0, r1), band(w, c0, c1)
    highest = jax.lax.Precision.HIGHEST

    def box_sum(ind):  # ind [b, h, w, c] -> window sums
        rows = jnp.einsum("bij,bjwc->biwc", band_h, ind, precision=highest)
        return jnp.einsum("bkw,biwc->bikc", band_w, rows, precision=highest)

    def step(v, acc):
        lo, hi = acc
        n_le = box_sum((levels <= v).astype(jnp.float32))
        return lo + (n_le < rank_lo), hi + (n_le < rank_hi)

    zero = jnp.zeros(levels.shape, jnp.int32)
    lo, hi = jax.lax.fori_loop(0, 255, step, (zero, zero))
    return (lo + hi).astype(jnp.float32) / 255.0 - 1.0


class MedianBlur(_Filter):
    """Median filter; even kernels allowed (see `median_filter` for the even-window median).

    paper112: kernel ~ U{8..22}, eval 15. authors256: odd kernel ∈ {17, 19, …, 29}, eval 23.
    """

    name = "median"
    strength_name = "kernel"
    _REF = {"paper112": (tuple(range(8, 23)), 15, False), "authors256": (tuple(range(17, 30, 2)), 23, True)}

    def _scale(self, k, height, width):
        x = k * resolution_scale(height, width, self.preset.reference_size)
        return _nearest_odd(x) if self._REF[self.preset.name][2] else max(1, round_half_up(x))

    def eval_strength(self, height, width):
        return self._scale(self._REF[self.preset.name][1], height, width)

    def train_support(self, height, width):
        return tuple(self._scale(k, height, width) for k in self._REF[self.preset.name][0])

    def apply(self, images, strengths):
        check_images(images, self.name)
        return median_filter(images, strengths)

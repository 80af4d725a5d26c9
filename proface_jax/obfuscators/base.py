"""What every pre-obfuscator shares: the interface, presets, input checks, seeding.

An obfuscator maps a batch of faces (NHWC float in [-1, 1]) and a JAX PRNG key to
a batch of obfuscated faces of the same shape. Two kinds exist:

* `jittable=True` (blur, pixelate, median): `__call__` is a pure JAX function of
  (rng, images), safe inside `jax.jit`, `vmap` and a training step.
* `jittable=False` (mask, swap, template): numpy/OpenCV/PIL code for the input
  pipeline. Call it outside `jax.jit`; it accepts numpy or JAX arrays and returns
  a numpy float32 array in [-1, 1] of the same shape. Internally it works on the
  8-bit pixels a stored image would have.

Every random draw comes from the explicit `rng` key; the numpy-based obfuscators
derive a numpy Generator from it with `numpy_rng`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import images as _images

# The two strength settings of every obfuscator (the `mode` argument of `make`): fixed (eval) or
# drawn from a range (train). Not the RandWR/ObfsWR modes of a model (`checkpoint.MODES`).
SETTINGS = ("eval", "train")


@dataclass(frozen=True)
class Preset:
    """A named set of strengths, defined at `reference_size` pixels (square faces)."""

    name: str
    reference_size: int


PRESETS = {
    "paper112": Preset("paper112", 112),      # the paper's values, 112×112
    "authors256": Preset("authors256", 256),  # the authors' public code, 256×256
}


def check_preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[preset]


def check_mode(mode: str) -> str:
    if mode not in SETTINGS:
        raise ValueError(f"unknown mode {mode!r}; choose 'eval' (fixed setting) or 'train' (random strengths)")
    return mode


def check_images(images: Any, name: str) -> None:
    """Refuses anything but a batch NHWC with 3 channels (works on traced arrays: only shapes are read)."""
    shape = getattr(images, "shape", None)
    if shape is None:
        raise ValueError(f"{name}: expected an array of faces [batch, height, width, 3], got {type(images).__name__}")
    if len(shape) != 4:
        raise ValueError(f"{name}: expected a batch of faces of rank 4 [batch, height, width, 3], got shape {tuple(shape)}")
    if shape[-1] != 3:
        raise ValueError(f"{name}: expected 3 colour channels (RGB, NHWC), got {shape[-1]} in shape {tuple(shape)}")
    if shape[1] < 8 or shape[2] < 8:
        raise ValueError(f"{name}: faces of {shape[1]}×{shape[2]} pixels are too small (need at least 8×8)")


def resolution_scale(height: int, width: int, reference_size: int) -> float:
    """How much to scale a strength given in pixels at `reference_size`: min(H, W) / reference."""
    return min(height, width) / reference_size


def round_half_up(x: float) -> int:
    # Python's round() is half-to-even, which would make 10.5 -> 10 but 11.5 -> 12.
    return int(np.floor(x + 0.5))


def key_seed(rng) -> list[int]:
    """The words of a JAX key (raw uint32 or typed) as ints, to seed numpy."""
    arr = rng
    if jnp.issubdtype(getattr(rng, "dtype", np.uint32), jax.dtypes.prng_key):
        arr = jax.random.key_data(rng)
    words = np.asarray(arr).ravel()
    if words.size == 0:
        raise ValueError("rng: empty PRNG key")
    return [int(w) for w in words.astype(np.uint64)]


def numpy_rng(rng) -> np.random.Generator:
    """A numpy Generator determined by a JAX key (same key -> same draws)."""
    return np.random.default_rng(key_seed(rng))


def to_uint8_batch(images: Any, name: str) -> np.ndarray:
    """[-1, 1] float batch (numpy or JAX) -> uint8 numpy batch (`images.from_unit`), after the shape checks."""
    check_images(images, name)
    return _images.from_unit(images)


def from_uint8_batch(images_u8: np.ndarray) -> np.ndarray:
    """uint8 batch -> float32 [-1, 1] (`images.to_unit`)."""
    return _images.to_unit(images_u8)


class Obfuscator:
    """Base class. Subclasses set `name`, `jittable` and implement `__call__(rng, images, *, names=None)`.

    `names` (one string per image) is only used by `template`; every obfuscator accepts
    it so that an input pipeline can call all of them the same way. Do not pass it
    through `jax.jit` (call the jittable ones as `obf(rng, images)` there).
    """

    name: str = "?"
    jittable: bool = False

    def __init__(self, preset: str, mode: str):
        self.preset = check_preset(preset)
        self.mode = check_mode(mode)

    def setting(self, height: int, width: int) -> dict:
        """The strength(s) used at this image size: a fixed value (eval) or a range (train)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, preset={self.preset.name!r}, mode={self.mode!r})"

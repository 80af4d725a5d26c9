"""Pre-obfuscators (spec §7): the "diversity" of PRO-Face S, behind one interface.

    obf = make("blur", preset="paper112", mode="train")
    y = obf(rng, x)          # x: [B, H, W, 3] float in [-1, 1]; same shape out

Names: blur, pixelate, median (JAX, `obf.jittable` is True: pure functions of
(rng, images), safe under `jax.jit`); mask, swap, template (numpy/OpenCV, run them
in the input pipeline, not under jit; they return numpy float32 in [-1, 1]).

mode='eval' uses each obfuscator's fixed setting; mode='train' draws strengths from
the preset's train distribution (one per batch, as the paper; `per_sample=True` for
one per image). Presets: 'paper112' (the paper's values at 112×112) and
'authors256' (the authors' code at 256×256); strengths scale with min(H, W) / the
preset's reference size for other sizes (see `filters`).

Options:
    make('mask', stickers=FOLDER)      # RGBA PNGs; default: procedural cartoon stickers
    make('swap', donors=FOLDER_OR_ARRAY)   # required; keep donors apart from protected faces
    make('template', folder=FOLDER)    # precomputed outputs keyed by image name;
                                       # call as obf(rng, images, names=[...])

For training, `choose(rng, obfuscators)` picks one obfuscator per batch.
"""
from __future__ import annotations

import functools
import importlib
import inspect

import jax

from proface_jax.obfuscators.base import PRESETS, SETTINGS, Obfuscator, check_mode, check_preset, numpy_rng


# name -> (module in this package, class). Modules load lazily so the JAX filters never need OpenCV.
_REGISTRY = {
    "blur": ("filters", "GaussianBlur"),
    "pixelate": ("filters", "Pixelate"),
    "median": ("filters", "MedianBlur"),
    "mask": ("mask", "StickerMask"),
    "swap": ("swap", "FaceSwap"),
    "template": ("template", "Template"),
}

# Paper row labels, for tables.
LABELS = {"blur": "GB", "pixelate": "PL", "median": "MB", "mask": "MS", "swap": "FS/SS, classical", "template": "FS/SS, precomputed"}


def names() -> list[str]:
    """The registered obfuscator names, in the spec's order."""
    return list(_REGISTRY)


def make(name: str, preset: str = "paper112", mode: str = "eval", **options) -> Obfuscator:
    """Builds obfuscator `name`; returns a callable `(rng, images) -> images` (see module doc)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown obfuscator {name!r}; choose one of {names()}")
    check_preset(preset)
    check_mode(mode)
    module, cls_name = _REGISTRY[name]
    cls = getattr(importlib.import_module(f"proface_jax.obfuscators.{module}"), cls_name)
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "preset", "mode"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for obfuscator {name!r}; it takes {sorted(allowed)}")
    return cls(preset=preset, mode=mode, **options)


@functools.lru_cache(maxsize=None)
def jitted(name: str, preset: str = "paper112", mode: str = "eval"):
    """A jittable obfuscator as one compiled function of (rng, images), cached per setting: the
    training loop and the evaluation obfuscate outside their big jitted steps, so those compile once
    whatever the obfuscator."""
    obf = make(name, preset=preset, mode=mode)
    if not obf.jittable:
        raise ValueError(f"obfuscator {name!r} runs on the host (numpy); call it directly")
    return jax.jit(obf.__call__)


def choose(rng, obfuscators):
    """Picks one obfuscator (uniformly) for a training batch; returns (obfuscator, rng for it)."""
    obfuscators = list(obfuscators)
    if not obfuscators:
        raise ValueError("choose: no obfuscators to choose from")
    pick_key, use_key = jax.random.split(rng)
    idx = int(jax.random.randint(pick_key, (), 0, len(obfuscators)))
    return obfuscators[idx], use_key


__all__ = ["names", "make", "jitted", "choose", "Obfuscator", "PRESETS", "SETTINGS", "LABELS", "numpy_rng"]

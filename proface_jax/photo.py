"""Protecting and recovering one photo: the layer between the flow and files.

    ck = load_checkpoint("randwr")
    protected_u8, meta = protect_photo(ck, face_u8, "pass phrase", obfuscator="blur")
    save_protected("out.png", protected_u8, meta)
    face_u8 = recover_photo(ck, *load_protected("out.png"), "pass phrase")

What a protected PNG carries, in an iTXt chunk named ``proface`` (JSON), is
everything recovery needs except the password: format version, the KDF with
its parameters and salt, the model id (first 16 hex digits of the checkpoint
payload's SHA-256), the mode, the obfuscator and the image size. The PNG is
8-bit: recovery always starts from the rounded pixels, never from floats.
Never store the protection byproduct x̂: it leaks the original face.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from proface_jax import images, keys
from proface_jax.checkpoint import Checkpoint
from proface_jax.flow import protect, recover

META_KEY = "proface"
META_FORMAT = "proface-jax-protected"
META_VERSION = 1
# Obfuscators usable on a single photo without extra data (swap needs a donor pool).
PHOTO_OBFUSCATORS = ("blur", "pixelate", "median", "mask", "swap")


class ProtectedImageError(ValueError):
    """A file that is not a proface-protected PNG, or whose metadata is unusable."""


def check_photo(image_u8: np.ndarray, where: str = "image") -> None:
    a = np.asarray(image_u8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"{where}: expected 8-bit RGB pixels [H, W, 3], got {a.dtype} {tuple(a.shape)}")
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"{where}: {h}×{w} pixels; the wavelet transform needs even height and width "
                         f"(crop one row/column, or pass --size to resize)")
    if h < 16 or w < 16:
        raise ValueError(f"{where}: {h}×{w} pixels is too small (need at least 16×16)")


def obfuscate(image_u8: np.ndarray, obfuscator: str, seed: int = 0, donors: str | None = None) -> np.ndarray:
    """Pre-obfuscation y of one photo at the obfuscator's fixed (eval) setting, as [-1, 1] float32."""
    from proface_jax import obfuscators

    if obfuscator not in PHOTO_OBFUSCATORS:
        raise ValueError(f"obfuscator {obfuscator!r} is not usable on a single photo; choose one of {PHOTO_OBFUSCATORS}")
    options = {}
    if obfuscator == "swap":
        if not donors:
            raise ValueError("the 'swap' obfuscator needs a donor folder of other faces (--donors DIR)")
        options["donors"] = donors
    obf = obfuscators.make(obfuscator, preset="paper112", mode="eval", **options)
    x = images.to_unit(image_u8)[None]
    return np.asarray(obf(jax.random.key(seed), x), np.float32)


def protect_photo(ck: Checkpoint, image_u8: np.ndarray, password: str | bytes, obfuscator: str = "blur",
                  kdf: str | keys.KDF = "strong", seed: int = 0, donors: str | None = None
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (protected 8-bit pixels, metadata for the PNG). `kdf='strong'` draws a fresh salt."""
    check_photo(image_u8)
    h, w = image_u8.shape[:2]
    kdf = keys.strong_kdf() if kdf == "strong" else keys.resolve_kdf(kdf)
    sm = keys.secret_map(password, h, w, kdf)
    x = images.to_unit(image_u8)[None]
    y = obfuscate(image_u8, obfuscator, seed, donors)
    protected, _byproduct = _protect_jit(ck.params, x, y, sm.K, ck.config)  # byproduct dropped: it leaks x
    meta = {"format": META_FORMAT, "version": META_VERSION, "kdf": kdf.to_json(), "model_id": ck.model_id,
            "mode": ck.mode, "obfuscator": obfuscator, "height": h, "width": w}
    return images.from_unit(np.asarray(protected[0])), meta


def recover_photo(ck: Checkpoint, protected_u8: np.ndarray, meta: dict[str, Any], password: str | bytes,
                  check_model: bool = True) -> np.ndarray:
    """-> recovered 8-bit pixels. With a wrong password the result is noise (RandWR) or y (ObfsWR)."""
    check_photo(protected_u8, "protected image")
    validate_meta(meta)
    h, w = protected_u8.shape[:2]
    if (meta["height"], meta["width"]) != (h, w):
        raise ProtectedImageError(f"protected image is {h}×{w} but its metadata says "
                                  f"{meta['height']}×{meta['width']}: it was resized or cropped after protection")
    if check_model and meta["model_id"] != ck.model_id:
        raise ProtectedImageError(f"image was protected with model {meta['model_id']}, but the checkpoint "
                                  f"{ck.path} is model {ck.model_id} ({ck.mode}); pass the matching --checkpoint")
    kdf = keys.KDF.from_json(meta["kdf"])
    sm = keys.secret_map(password, h, w, kdf)
    recovered, _ = _recover_jit(ck.params, images.to_unit(protected_u8)[None], sm.K, ck.config)
    return images.from_unit(np.asarray(recovered[0]))


def validate_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ProtectedImageError("not a proface-protected image (no proface metadata)")
    if meta.get("version") != META_VERSION:
        raise ProtectedImageError(f"protected-image metadata version {meta.get('version')} is not supported")
    missing = [k for k in ("kdf", "model_id", "mode", "height", "width") if k not in meta]
    if missing:
        raise ProtectedImageError(f"protected-image metadata lacks {missing}")
    return meta


def save_protected(path: str | os.PathLike, protected_u8: np.ndarray, meta: dict[str, Any]) -> None:
    """Atomically writes the 8-bit PNG with its metadata chunk."""
    if str(path).lower().endswith((".jpg", ".jpeg", ".webp")):
        raise ValueError(f"{path}: protected images must be PNG (lossy formats destroy the hidden face)")
    images.save_png(path, protected_u8, {META_KEY: json.dumps(meta, sort_keys=True)})


def load_protected(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (8-bit pixels, metadata) of a protected PNG; a clear error for anything else."""
    pixels = images.load_rgb(path, allow_convert=False)
    text = images.read_png_text(path)
    if META_KEY not in text:
        raise ProtectedImageError(f"{path}: not a proface-protected PNG (no '{META_KEY}' metadata chunk); "
                                  "was it re-saved or converted by another program?")
    try:
        meta = json.loads(text[META_KEY])
    except json.JSONDecodeError as e:
        raise ProtectedImageError(f"{path}: corrupt proface metadata ({e})") from None
    return pixels, validate_meta(meta)


from proface_jax.protocol import protect_jit as _protect_jit  # noqa: E402  (the shared jitted wrappers)
from proface_jax.protocol import recover_jit as _recover_jit  # noqa: E402

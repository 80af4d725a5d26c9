"""Protecting and recovering one photo: the layer between the flow and files.

    ck = load_checkpoint("randwr")
    protected_u8, meta = protect_photo(ck, face_u8, "pass phrase", obfuscator="blur")
    save_protected("out.png", protected_u8, meta)
    face_u8 = recover_photo(ck, *load_protected("out.png"), "pass phrase")

What a protected PNG carries, in an iTXt chunk named ``proface`` (JSON), is
everything recovery needs except the password: format version, the KDF with
its parameters and salt, the model id (first 16 hex digits of the checkpoint
payload's SHA-256), the mode, the obfuscator, the image size and, by default
for RandWR, an authentication tag. The format and its validation live in
`protected_format` (docs/format.md). The PNG is 8-bit: recovery always
starts from the rounded pixels, never from floats. Never store the
protection byproduct x̂: it leaks the original face.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from proface_jax import images, keys
from proface_jax import protected_format as fmt
from proface_jax.checkpoint import Checkpoint
from proface_jax.errors import ProfaceError
from proface_jax.protocol import protect_jit, recover_jit
from proface_jax.protected_format import META_FORMAT, META_KEY, META_VERSION, ProtectedImageError, TagMismatch  # noqa: F401

# Obfuscators usable on a single photo (swap needs a donor pool).
PHOTO_OBFUSCATORS = fmt.OBFUSCATORS


def check_photo(image_u8: np.ndarray, where: str = "image") -> None:
    a = np.asarray(image_u8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
        raise ProfaceError(f"{where}: expected 8-bit RGB pixels [H, W, 3], got {a.dtype} {tuple(a.shape)}")
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        raise ProfaceError(f"{where}: {h}×{w} pixels; the wavelet transform needs even height and width "
                           f"(crop one row/column, or pass --size to resize)")
    if h < fmt.MIN_SIDE or w < fmt.MIN_SIDE:
        raise ProfaceError(f"{where}: {h}×{w} pixels is too small (need at least {fmt.MIN_SIDE}×{fmt.MIN_SIDE})")
    if h > fmt.MAX_SIDE or w > fmt.MAX_SIDE:
        raise ProfaceError(f"{where}: {h}×{w} pixels; a side may be at most {fmt.MAX_SIDE}")


def obfuscate(image_u8: np.ndarray, obfuscator: str, seed: int = 0, donors: str | None = None) -> np.ndarray:
    """Pre-obfuscation y of one photo at the obfuscator's fixed (eval) setting, as [-1, 1] float32."""
    from proface_jax import obfuscators

    if obfuscator not in PHOTO_OBFUSCATORS:
        raise ProfaceError(f"obfuscator {obfuscator!r} is not usable on a single photo; choose one of {PHOTO_OBFUSCATORS}")
    options = {}
    if obfuscator == "swap":
        if not donors:
            raise ProfaceError("the 'swap' obfuscator needs a donor folder of other faces (--donors DIR)")
        options["donors"] = donors
    obf = obfuscators.make(obfuscator, preset="paper112", mode="eval", **options)
    x = images.to_unit(image_u8)[None]
    return np.asarray(obf(jax.random.key(seed), x), np.float32)


def protect_photo(ck: Checkpoint, image_u8: np.ndarray, password: str | bytes, obfuscator: str = "blur",
                  kdf: str | keys.KDF = "strong", seed: int = 0, donors: str | None = None,
                  tag: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (protected 8-bit pixels, metadata for the PNG). `kdf='strong'` draws a fresh salt.

    `tag` (default: on for RandWR, off for ObfsWR) adds an authentication tag so
    that recovery can refuse a wrong password or a modified file. It does not
    make guessing cheaper (each guess still pays the KDF), but for ObfsWR it
    would tell a wrong password apart from the obfuscated face it should give.
    """
    check_photo(image_u8)
    h, w = image_u8.shape[:2]
    kdf = keys.strong_kdf() if kdf == "strong" else keys.resolve_kdf(kdf)
    sm = keys.secret_map(password, h, w, kdf)
    x = images.to_unit(image_u8)[None]
    y = obfuscate(image_u8, obfuscator, seed, donors)
    protected, _byproduct = protect_jit(ck.params, x, y, sm.K, ck.config)  # byproduct dropped: it leaks x
    pixels = images.from_unit(np.asarray(protected[0]))
    meta = {"format": META_FORMAT, "version": META_VERSION, "kdf": kdf.to_json(), "model_id": ck.model_id,
            "mode": ck.mode, "obfuscator": obfuscator, "height": h, "width": w}
    if fmt.wants_tag(ck.mode, tag):
        meta["tag"] = fmt.compute_tag(sm.mac_key, meta, pixels)
    return pixels, fmt.validate_meta(meta, (h, w))


def recover_photo(ck: Checkpoint, protected_u8: np.ndarray, meta: dict[str, Any], password: str | bytes,
                  check_model: bool = True, verify: bool = True) -> np.ndarray:
    """-> recovered 8-bit pixels. With a wrong password the result is noise (RandWR) or y (ObfsWR).

    A file with a tag is verified first (`verify=False` skips that, e.g. to see
    what a wrong password gives): a mismatch raises `TagMismatch`. A file whose
    faces were protected in place goes to `faces.recover_faces`.
    """
    if isinstance(meta, dict) and "faces" in meta:
        from proface_jax import faces

        return faces.recover_faces(ck, protected_u8, meta, password, check_model=check_model, verify=verify)
    check_photo(protected_u8, "protected image")
    h, w = protected_u8.shape[:2]
    fmt.validate_meta(meta, (h, w))
    if check_model and meta["model_id"] != ck.model_id:
        raise ProtectedImageError(f"image was protected with model {meta['model_id']}, but the checkpoint "
                                  f"{ck.path} is model {ck.model_id} ({ck.mode}); pass the matching --checkpoint")
    kdf = keys.KDF.from_json(meta["kdf"])
    sm = keys.secret_map(password, h, w, kdf, normalize=meta["version"] >= 2)
    if verify and "tag" in meta:
        fmt.verify_tag(sm.mac_key, meta, protected_u8)
    recovered, _ = recover_jit(ck.params, images.to_unit(protected_u8)[None], sm.K, ck.config)
    return images.from_unit(np.asarray(recovered[0]))


def validate_meta(meta: Any, pixel_shape: tuple[int, int] | None = None) -> dict[str, Any]:
    return fmt.validate_meta(meta, pixel_shape)


def save_protected(path: str | os.PathLike, protected_u8: np.ndarray, meta: dict[str, Any]) -> None:
    """Atomically writes the 8-bit PNG with its metadata chunk."""
    fmt.write(path, protected_u8, meta)


def load_protected(path: str | os.PathLike, max_pixels: int = images.MAX_PIXELS) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (8-bit pixels, validated metadata) of a protected PNG; a one-line `ProfaceError` for anything else."""
    return fmt.read(path, max_pixels)

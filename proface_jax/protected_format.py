"""The protected-file format: a PNG whose `proface` text chunk is hostile until validated.

A protected PNG is made to be shared, so `read` treats it as a stranger's
input: the PNG header (8-bit RGB, size within the pixel limit) is checked
from its first bytes, the metadata chunk is size-capped, parsed strictly
(no duplicate keys, no NaN) and validated against `SCHEMA` (JSON Schema
2020-12, the public description of the format; docs/format.md prints it) and
the checks a schema cannot say (salt length, KDF cost, size = pixels) —
all before any pixel is decoded and before anything in it is used.

Nothing in the file names a path: the model is resolved by the user
(`--checkpoint`) or by mode among the shipped models, and its id must equal
the file's `model_id`.

Version 2 (written now) adds NFC password normalisation, optional `faces`
(each face of a photo protected in place, `proface_jax.faces`; without it the
whole image is protected) and an optional `tag`: HMAC-SHA256 over the
canonical metadata and the pixels, keyed by 32 bytes that the password's KDF
derives beside the secret map. It lets
recovery say "wrong password or modified file" instead of writing noise;
it is off by default for ObfsWR, whose wrong-password output is meant to look
like an ordinary obfuscated face. Version 1 files (no tag, raw password
bytes) still load.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from pathlib import Path
from typing import Any

import jsonschema

from proface_jax import images, keys
from proface_jax.errors import ProfaceError, one_line

META_KEY = "proface"
META_FORMAT = "proface-jax-protected"
META_VERSION = 2
READ_VERSIONS = (1, 2)
MAX_META_BYTES = 64 * 1024  # 256 faces at ~80 bytes each fit with room to spare
MAX_FACES = 256
MODES = ("randwr", "obfswr")
OBFUSCATORS = ("blur", "pixelate", "median", "mask", "swap")
MIN_SIDE, MAX_SIDE = 16, 2**15
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_B64 = {"type": "string", "pattern": "^[A-Za-z0-9+/]*={0,2}$"}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "proface-jax-protected.schema.json",
    "title": "proface-jax protected-image metadata (iTXt chunk 'proface' of an 8-bit RGB PNG)",
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "version", "kdf", "model_id", "mode", "obfuscator", "height", "width"],
    "properties": {
        "format": {"const": META_FORMAT},
        "version": {"enum": list(READ_VERSIONS)},
        "model_id": {"type": "string", "pattern": "^[0-9a-f]{16}$",
                     "description": "first 16 hex digits of the checkpoint payload's SHA-256"},
        "mode": {"enum": list(MODES)},
        "obfuscator": {"enum": list(OBFUSCATORS)},
        "height": {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE,
                   "description": "pixels; even unless the file has faces"},
        "width": {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE},
        "faces": {"type": "array", "minItems": 1, "maxItems": MAX_FACES,
                  "description": "version 2: square crops protected in place, each with its own salt",
                  "items": {"type": "object", "additionalProperties": False, "required": ["x", "y", "size", "salt"],
                            "properties": {"x": {"type": "integer", "minimum": 0, "maximum": MAX_SIDE},
                                           "y": {"type": "integer", "minimum": 0, "maximum": MAX_SIDE},
                                           "size": {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE,
                                                    "multipleOf": 2},
                                           "salt": {**_B64, "minLength": 24, "maxLength": 88}}}},
        "tag": {**_B64, "minLength": 44, "maxLength": 44,
                "description": "base64 HMAC-SHA256 (version 2 only)"},
        "kdf": {
            "type": "object",
            "required": ["algorithm", "salt"],
            "additionalProperties": False,
            "properties": {
                "algorithm": {"enum": ["scrypt", "pbkdf2-sha512"]},
                "salt": {**_B64, "minLength": 4, "maxLength": 88},
                "profile": {"enum": ["strong", "paper", "custom"]},
                "n": {"type": "integer", "minimum": 2, "maximum": keys.LIMITS["scrypt_n"]},
                "r": {"type": "integer", "minimum": 1, "maximum": keys.LIMITS["scrypt_r"]},
                "p": {"type": "integer", "minimum": 1, "maximum": keys.LIMITS["scrypt_p"]},
                "iterations": {"type": "integer", "minimum": 1, "maximum": keys.LIMITS["pbkdf2_iterations"]},
            },
            "allOf": [  # if/then rather than oneOf: an error then names the field at fault
                {"if": {"properties": {"algorithm": {"const": "scrypt"}}},
                 "then": {"required": ["n", "r", "p"], "properties": {"iterations": False}}},
                {"if": {"properties": {"algorithm": {"const": "pbkdf2-sha512"}}},
                 "then": {"required": ["iterations"], "properties": {"n": False, "r": False, "p": False}}},
            ],
        },
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class ProtectedImageError(ProfaceError):
    """A file that is not a proface-protected PNG, or whose metadata is unusable."""


class TagMismatch(ProtectedImageError):
    """The authentication tag does not verify: a wrong password, or the file was modified."""


# ---- metadata: parse, validate ----

def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ProtectedImageError(f"proface metadata repeats the key {one_line(k, 40)!r}")
        d[k] = v
    return d


def _no_constants(name):
    raise ProtectedImageError(f"proface metadata holds {name}, which JSON does not allow")


def parse_meta(text: str | bytes, max_bytes: int = MAX_META_BYTES) -> Any:
    """Strict JSON: size-capped, no duplicate keys, no NaN/Infinity."""
    if len(text) > max_bytes:
        raise ProtectedImageError(f"proface metadata is {len(text):,} bytes; at most {max_bytes:,} allowed")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except ProtectedImageError:
        raise
    except (ValueError, RecursionError) as e:
        raise ProtectedImageError(f"corrupt proface metadata (not JSON: {one_line(e, 120)})") from None


def validate_meta(meta: Any, pixel_shape: tuple[int, int] | None = None) -> dict[str, Any]:
    """Schema, then the checks a schema cannot state; returns `meta` untouched when it is valid."""
    if not isinstance(meta, dict) or meta.get("format") != META_FORMAT:
        raise ProtectedImageError("not a proface-protected image (no proface metadata object)")
    if meta.get("version") not in READ_VERSIONS:
        raise ProtectedImageError(f"protected-image format version {one_line(meta.get('version'), 40)} is not "
                                  f"supported (this proface-jax reads versions {list(READ_VERSIONS)})")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(meta))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ProtectedImageError(f"invalid proface metadata at {where}: {one_line(error.message, 160)}")
    if meta["version"] == 1 and ("tag" in meta or "faces" in meta):
        raise ProtectedImageError("invalid proface metadata: a version-1 file has no tag and no faces")
    keys.KDF.from_json(meta["kdf"])  # salt length and cost bounds (raises KDFError, a ProfaceError)
    if pixel_shape is not None and (meta["height"], meta["width"]) != tuple(pixel_shape):
        h, w = pixel_shape
        raise ProtectedImageError(f"protected image is {h}×{w} but its metadata says "
                                  f"{meta['height']}×{meta['width']}: it was resized or cropped after protection")
    if "faces" in meta:
        _check_faces(meta["faces"], meta["height"], meta["width"])
    elif meta["height"] % 2 or meta["width"] % 2:
        raise ProtectedImageError(f"invalid proface metadata: a whole-image file is {meta['height']}×{meta['width']}; "
                                  "its sides must be even")
    return meta


def check_crops(crops, height: int, width: int) -> None:
    """Square crops (x, y, side): every one inside the image, no two overlapping."""
    for i, (x, y, side) in enumerate(crops):
        if x + side > width or y + side > height:
            raise ProtectedImageError(f"invalid proface metadata at faces/{i}: crop {x},{y} of side "
                                      f"{side} lies outside the {width}×{height} image")
    boxes = sorted((x, y, side, i) for i, (x, y, side) in enumerate(crops))
    for a in range(len(boxes)):
        xa, ya, sa, ia = boxes[a]
        for b in range(a + 1, len(boxes)):
            xb, yb, sb, ib = boxes[b]
            if xb >= xa + sa:
                break  # sorted by x: no later crop reaches back into this one
            if ya < yb + sb and yb < ya + sa:
                raise ProtectedImageError(f"invalid proface metadata: face crops {ia} and {ib} overlap")


def _check_faces(faces, height: int, width: int) -> None:
    """`check_crops`, and each salt 16–64 bytes."""
    check_crops([(f["x"], f["y"], f["size"]) for f in faces], height, width)
    lo, hi = keys.LIMITS["salt_bytes"]
    for i, f in enumerate(faces):
        try:
            n = len(base64.b64decode(f["salt"], validate=True))
        except ValueError:
            raise ProtectedImageError(f"invalid proface metadata at faces/{i}/salt: not valid base64") from None
        if not lo <= n <= hi:
            raise ProtectedImageError(f"invalid proface metadata at faces/{i}/salt: {n} bytes; allowed {lo}–{hi}")


def wants_tag(mode: str, tag: bool | None) -> bool:
    """The tag default: on for RandWR, off for ObfsWR (a tag would tell a guesser the password was wrong)."""
    return mode == "randwr" if tag is None else bool(tag)


# ---- the authentication tag ----

def _tag_message(meta: dict[str, Any], pixels_u8) -> bytes:
    body = {k: v for k, v in meta.items() if k != "tag"}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    shape = struct.pack(">III", *pixels_u8.shape)
    return b"proface-jax tag v2\x00" + struct.pack(">I", len(canon)) + canon + shape + pixels_u8.tobytes()


def compute_tag(mac_key: bytes, meta: dict[str, Any], pixels_u8) -> str:
    if len(mac_key) != keys.MAC_KEY_BYTES:
        raise ProfaceError("the secret map carries no tag key (derive it with keys.secret_map)")
    return base64.b64encode(hmac.new(mac_key, _tag_message(meta, pixels_u8), hashlib.sha256).digest()).decode()


def verify_tag(mac_key: bytes, meta: dict[str, Any], pixels_u8) -> None:
    if not hmac.compare_digest(compute_tag(mac_key, meta, pixels_u8), meta["tag"]):
        raise TagMismatch("wrong password, or the protected file was modified (authentication tag mismatch); "
                          "nothing recovered")


# ---- the PNG ----

def _png_header(data: bytes, path) -> tuple[int, int]:
    """(height, width) from IHDR, requiring 8-bit RGB: a 16-bit PNG would be silently truncated by PIL."""
    if data[:8] != PNG_SIGNATURE:
        raise ProtectedImageError(f"{path}: not a PNG file; protected images are PNG "
                                  "(was it converted or re-saved by another program?)")
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ProtectedImageError(f"{path}: corrupt PNG (no IHDR header)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if depth != 8 or colour != 2:
        raise ProtectedImageError(f"{path}: PNG is {depth}-bit colour type {colour}; a protected image is "
                                  "8-bit RGB (type 2) as `proface protect` writes it — was it converted?")
    return height, width


def read(path: str | os.PathLike, max_pixels: int = images.MAX_PIXELS):
    """-> (uint8 [H, W, 3], validated metadata). Checks the header and metadata before decoding pixels."""
    path = Path(path)
    with images.open_checked(path, max_pixels) as im:
        if im.format != "PNG":
            raise ProtectedImageError(f"{path}: not a PNG file ({im.format}); protected images are PNG")
        with open(path, "rb") as f:
            head = f.read(33)
        shape = _png_header(head, path)
        text = im.info.get(META_KEY)  # chunks before the pixel data, read by open()
        if text is None:
            images.decode(im, path)  # bounded: the size is within the limit; chunks after IDAT
            text = (getattr(im, "text", None) or {}).get(META_KEY)
        if not isinstance(text, str):
            raise ProtectedImageError(f"{path}: not a proface-protected PNG (no '{META_KEY}' metadata chunk); "
                                      "was it re-saved or converted by another program?")
        meta = validate_meta(parse_meta(text), shape)
        images.decode(im, path)
        pixels = images.rgb8_of(im)  # 8-bit RGB: checked from IHDR above
    return pixels, meta


def png_bytes(pixels_u8, meta: dict[str, Any]) -> bytes:
    """The PNG file's bytes; the metadata is validated against the pixels first."""
    validate_meta(meta, pixels_u8.shape[:2])
    return images.png_bytes(pixels_u8, {META_KEY: json.dumps(meta, sort_keys=True)})


def write(path: str | os.PathLike, pixels_u8, meta: dict[str, Any]) -> None:
    """Atomically writes the 8-bit PNG with its (validated) metadata chunk."""
    if not str(path).lower().endswith(".png"):
        raise ProtectedImageError(f"{path}: protected images must be PNG (.png); lossy formats destroy the hidden face")
    images.atomic_write_bytes(path, png_bytes(pixels_u8, meta))


def schema_json() -> str:
    return json.dumps(SCHEMA, indent=2)


__all__ = ["META_KEY", "META_FORMAT", "META_VERSION", "SCHEMA", "ProtectedImageError", "TagMismatch",
           "parse_meta", "validate_meta", "compute_tag", "verify_tag", "read", "write", "png_bytes"]

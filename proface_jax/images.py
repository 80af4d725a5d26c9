"""Image files and value ranges, written down once.

Convention for the whole project: images inside the model are NHWC float32 in
[-1, 1]; files on disk are 8-bit RGB. `to_unit`/`from_unit` move between
[-1, 1] and 8-bit integers the same way everywhere (round-half-even after
clamping), so that "scored from the 8-bit PNG" means one thing.
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError


class ImageError(ValueError):
    """A file that is not a usable RGB image (missing, corrupt, wrong mode)."""


def load_rgb(path: str | os.PathLike, *, allow_convert: bool = True) -> np.ndarray:
    """Reads an image file as uint8 [H, W, 3].

    Grayscale, palette and RGBA files are converted to RGB only when
    `allow_convert` (alpha is dropped); otherwise anything but RGB is refused.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a directory, not an image file")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode != "RGB":
                if not allow_convert or mode not in ("L", "LA", "P", "RGBA", "CMYK", "I;16", "I"):
                    raise ImageError(f"{path}: image mode {mode!r} is not RGB")
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or an unsupported/corrupt one)") from None
    except (OSError, SyntaxError) as e:  # PIL raises these on truncated data
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None


def read_png_text(path: str | os.PathLike) -> dict[str, str]:
    """Text chunks (tEXt/iTXt) of a PNG file; {} for other formats."""
    try:
        with Image.open(path) as im:
            im.load()
            return dict(getattr(im, "text", {}) or {})
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file") from None
    except (OSError, SyntaxError) as e:
        raise ImageError(f"{path}: corrupt or truncated image ({e})") from None


def to_unit(images_u8: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    a = np.asarray(images_u8)
    if a.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {a.dtype}")
    return a.astype(np.float32) / 127.5 - 1.0


def from_unit(images: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> uint8, clamped then rounded: what a PNG file stores."""
    a = np.asarray(images, dtype=np.float32)
    return np.round((np.clip(a, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def quantize(images):
    """Rounds [-1, 1] floats to the nearest 8-bit level, staying in [-1, 1] (numpy or jax)."""
    import jax.numpy as jnp

    xp = jnp if not isinstance(images, np.ndarray) else np
    return xp.round((xp.clip(images, -1.0, 1.0) + 1.0) * 127.5) / 127.5 - 1.0


def center_square(image_u8: np.ndarray) -> np.ndarray:
    """The largest centred square of an [H, W, C] image."""
    h, w = image_u8.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image_u8[top:top + s, left:left + s]


def resize(image_u8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resizes uint8 [H, W, 3] to (height, width) with a bicubic filter."""
    h, w = size
    return np.asarray(Image.fromarray(image_u8).resize((w, h), Image.BICUBIC), dtype=np.uint8)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def png_bytes(image_u8: np.ndarray, text: Mapping[str, str] | None = None) -> bytes:
    """Encodes uint8 [H, W, 3] (or [H, W]) as PNG, with optional text chunks (iTXt, UTF-8)."""
    a = np.asarray(image_u8)
    if a.dtype != np.uint8:
        raise TypeError(f"PNG pixels must be uint8, got {a.dtype}")
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_itxt(k, v)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_png(path: str | os.PathLike, image_u8: np.ndarray, text: Mapping[str, str] | None = None) -> None:
    """Atomically writes an 8-bit PNG (with optional text chunks)."""
    atomic_write_bytes(path, png_bytes(image_u8, text))


def grid(rows: list[list[np.ndarray]], pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tiles equally sized uint8 [H, W, 3] images into one picture, row by row."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), fill, np.uint8)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            if im.shape[:2] != (h, w):
                raise ValueError(f"grid cell ({i},{j}) is {im.shape[:2]}, expected {(h, w)}")
            y0, x0 = pad + i * (h + pad), pad + j * (w + pad)
            out[y0:y0 + h, x0:x0 + w] = im[..., :3]
    return out

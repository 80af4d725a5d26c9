"""Image files and value ranges, written down once.

Convention for the whole project: images inside the model are NHWC float32 in
[-1, 1]; files on disk are 8-bit RGB. `to_unit`/`from_unit` move between
[-1, 1] and 8-bit integers the same way everywhere (round-half-even after
clamping), so that "scored from the 8-bit PNG" means one thing.
"""
from __future__ import annotations

import io
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

from proface_jax.errors import ProfaceError, one_line


MAX_PIXELS = 40_000_000  # default decode limit (40 MP); checked from the header, before decoding
# Modes converted to 8-bit RGB for a photo to protect (alpha dropped, 16-bit scaled down).
CONVERTIBLE_MODES = ("L", "LA", "P", "PA", "RGBA", "RGBX", "CMYK", "YCbCr", "I;16", "I;16B", "I;16L", "1")


class ImageError(ProfaceError):
    """A file that is not a usable RGB image (missing, corrupt, too large, wrong mode)."""


def open_checked(path: Path, max_pixels: int):
    """PIL image of `path` with its header read and its size checked; pixels not decoded yet."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{path}: is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or an unsupported/corrupt one)") from None
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: image declares too many pixels (decompression bomb?); "
                         f"the limit is {max_pixels:,} pixels (--max-pixels)") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({one_line(e.strerror or e)})") from None
    except Exception as e:  # noqa: BLE001 - a decoder on untrusted bytes: any failure is a bad file
        raise ImageError(f"{path}: corrupt image header ({type(e).__name__}: {one_line(e, 120)})") from None
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ImageError(f"{path}: {w}×{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
                         "(raise it with --max-pixels if you trust this file)")
    return im


def decode(im, path: Path) -> None:
    try:
        im.load()
    except MemoryError:
        raise ImageError(f"{path}: out of memory decoding the image") from None
    except Exception as e:  # noqa: BLE001 - truncated/corrupt data raises OSError, SyntaxError, ValueError, zlib.error …
        raise ImageError(f"{path}: corrupt or truncated image ({type(e).__name__}: {one_line(e, 120)})") from None


def _to_rgb8(im) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L"):  # 16-bit grayscale: scale, do not clip, to 8 bits
        a = np.asarray(im, dtype=np.float64)
        a = np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=-1)
    if im.mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_rgb(path: str | os.PathLike, *, allow_convert: bool = True, max_pixels: int = MAX_PIXELS,
             notes: list[str] | None = None) -> np.ndarray:
    """Reads an image file as uint8 [H, W, 3], refusing more than `max_pixels` before decoding.

    Grayscale, palette, RGBA, CMYK and 16-bit files are converted to 8-bit RGB
    only when `allow_convert` (alpha dropped; a note saying so is appended to
    `notes`); otherwise anything but 8-bit RGB is refused.
    """
    path = Path(path)
    with open_checked(path, max_pixels) as im:
        mode = im.mode  # checked before decoding: a refused mode costs no decode
        if mode != "RGB" and (not allow_convert or mode not in CONVERTIBLE_MODES):
            raise ImageError(f"{path}: image mode {mode!r} is not 8-bit RGB")
        decode(im, path)
        if mode != "RGB" and notes is not None:
            notes.append(f"{path}: converted image mode {mode!r} to 8-bit RGB" + (" (alpha dropped)" if "A" in mode else ""))
        return rgb8_of(im)


def rgb8_of(im) -> np.ndarray:
    """uint8 [H, W, 3] of a decoded PIL image whose mode is RGB or one of `CONVERTIBLE_MODES`."""
    if im.mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    return _to_rgb8(im)


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


class WriteError(ProfaceError):
    """An output file that cannot be written (missing directory, permissions, full disk)."""


def new_file_mode(path: Path) -> int:
    """An existing file keeps its permissions; a new one gets 0o666 less the umask, as `open` would."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the whole new one, never a part.

    The data and then the directory entry are fsynced, so the rename survives a
    crash; the file gets the permissions a plain write would give (mkstemp's
    0600 is not for files meant to be shared). Failures raise `WriteError`.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = new_file_mode(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some filesystems do not open directories; the rename itself is done
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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

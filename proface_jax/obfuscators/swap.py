"""Classical face swap (stands in for the FS/SS rows): a donor's inner face, colour-matched and
Poisson-blended (OpenCV seamlessClone) onto the target inside a face-shaped mask.

Faces are aligned crops (eyes, nose and mouth at fixed fractions of the image), so the
donor is aligned to the target by resizing it to the target's size; no landmarks needed.
numpy/OpenCV: not jittable, call it in the input pipeline.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from proface_jax.obfuscators import geometry
from proface_jax.obfuscators.base import Obfuscator, from_uint8_batch, numpy_rng, to_uint8_batch

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# A donor this close to the target (mean absolute 8-bit difference) is the same photo: skip it.
SAME_FACE_MAD = 2.0


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the 'swap' obfuscator needs OpenCV: pip install opencv-python-headless") from e
    return cv2


class DonorPool:
    """Donor faces from a folder of images or an array ([N, H, W, 3] uint8, or float in [-1, 1])."""

    def __init__(self, donors):
        self._paths: list[Path] | None = None
        self._array: np.ndarray | None = None
        self._cache: OrderedDict = OrderedDict()
        if donors is None:
            raise ValueError("swap needs a donor pool: make('swap', donors=FOLDER or array [N, H, W, 3]); "
                             "keep the donors apart from the faces you protect")
        if isinstance(donors, (str, os.PathLike)):
            folder = Path(donors)
            if not folder.is_dir():
                raise ValueError(f"donor folder {folder} does not exist or is not a directory")
            self._paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._paths:
                raise ValueError(f"donor folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        else:
            a = np.asarray(donors)
            if a.ndim != 4 or a.shape[-1] != 3:
                raise ValueError(f"donor array must be [N, H, W, 3], got shape {a.shape}")
            if a.shape[0] == 0:
                raise ValueError("donor pool is empty (0 donor faces)")
            if a.dtype != np.uint8:
                a = np.round((np.clip(a.astype(np.float32), -1, 1) + 1) * 127.5).astype(np.uint8)
            self._array = a

    def __len__(self) -> int:
        return len(self._paths) if self._paths is not None else len(self._array)

    def face(self, index: int, height: int, width: int) -> np.ndarray:
        """Donor `index` as uint8 [height, width, 3]."""
        key = (index, height, width)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        from proface_jax import images

        face = images.load_rgb(self._paths[index]) if self._paths is not None else self._array[index]
        if face.shape[:2] != (height, width):
            face = images.resize(face, (height, width))
        self._cache[key] = face
        if len(self._cache) > 512:
            self._cache.popitem(last=False)
        return face


def match_colour(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer: gives `source` the Lab mean/std of `target`, both measured inside `mask`."""
    cv2 = _cv2()
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    m = mask > 0
    s_mean, s_std = src[m].mean(0), src[m].std(0) + 1e-3
    t_mean, t_std = tgt[m].mean(0), tgt[m].std(0) + 1e-3
    out = (src - s_mean) * (t_std / s_std) + t_mean
    return cv2.cvtColor(np.clip(np.round(out), 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def swap_face(target: np.ndarray, donor: np.ndarray, mask_scale: float = 1.0) -> np.ndarray:
    """Donor's inner face onto `target` (both uint8 [H, W, 3], aligned crops of one size)."""
    cv2 = _cv2()
    h, w = target.shape[:2]
    mask = (geometry.face_ellipse_mask(h, w, mask_scale) > 0.5).astype(np.uint8) * 255
    # seamlessClone needs the mask strictly inside the destination.
    mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0
    donor = match_colour(donor, target, mask)
    x, y, bw, bh = cv2.boundingRect(mask)
    centre = (x + bw // 2, y + bh // 2)  # OpenCV places the mask's box centred here: no shift
    out = cv2.seamlessClone(donor[..., ::-1].copy(), target[..., ::-1].copy(), mask, centre, cv2.NORMAL_CLONE)
    return out[..., ::-1].copy()


class FaceSwap(Obfuscator):
    """Classical face swap with a donor drawn from `donors` per image (from `rng`).

    eval: face mask at its fixed size (ellipse centred at (0.50, 0.55), semi-axes 0.31 W × 0.37 H).
    train: the mask's size is scaled by U(0.92, 1.08) per image. Donors equal to the target
    (same photo) are skipped. Not jittable: OpenCV, call it in the input pipeline.
    """

    name = "swap"
    jittable = False
    TRAIN_SCALE = (0.92, 1.08)

    def __init__(self, preset: str, mode: str, donors=None):
        super().__init__(preset, mode)
        _cv2()
        self.donors = DonorPool(donors)

    def setting(self, height, width):
        s = {"donors": len(self.donors), "face_axes": geometry.FACE_AXES}
        return s if self.mode == "eval" else {**s, "mask_scale": self.TRAIN_SCALE}

    def draw(self, rng, batch: int):
        """Per image: (donor index, mask scale), from `rng`."""
        g = numpy_rng(rng)
        idx = g.integers(0, len(self.donors), batch)
        scale = g.uniform(*self.TRAIN_SCALE, batch) if self.mode == "train" else np.ones(batch)
        return [(int(i), float(s)) for i, s in zip(idx, scale)]

    def _donor_for(self, target: np.ndarray, index: int) -> np.ndarray:
        h, w = target.shape[:2]
        for k in range(len(self.donors)):
            donor = self.donors.face((index + k) % len(self.donors), h, w)
            if np.abs(donor.astype(np.int16) - target).mean() > SAME_FACE_MAD:
                return donor
        raise ValueError("swap: every donor in the pool is the protected face itself; use a separate donor pool")

    def __call__(self, rng, images, *, names=None):
        x = to_uint8_batch(images, self.name)
        out = [swap_face(t, self._donor_for(t, i), s) for t, (i, s) in zip(x, self.draw(rng, len(x)))]
        return from_uint8_batch(np.stack(out) if out else x)

"""Masking (MS): a cartoon face sticker alpha-composited over the inner face (numpy; input pipeline)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from proface_jax.obfuscators import geometry
from proface_jax.obfuscators.base import Obfuscator, from_uint8_batch, numpy_rng, to_uint8_batch
from proface_jax.obfuscators.stickers import StickerFolder, StickerGenerator, prepare_sticker


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = make()
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class StickerMask(Obfuscator):
    """Pastes one sticker per image (chosen from `rng`) over the inner face.

    stickers: a folder of RGBA PNGs (CartoonSet format), or None for the procedural
    generator (`sticker_seed`, `sticker_count` distinct stickers).
    eval: sticker box fixed (side 0.95·min(H, W), centred at (0.50, 0.53) of the crop).
    train: the box side is scaled by U(0.9, 1.1) and its centre shifted by U(-0.04, 0.04)
    of the size in x and y, per image. Sizes scale with the image, so both presets agree.
    Not jittable: numpy/PIL, call it in the input pipeline.
    """

    name = "mask"
    jittable = False
    TRAIN_SCALE = (0.9, 1.1)
    TRAIN_SHIFT = 0.04

    def __init__(self, preset: str, mode: str, stickers=None, sticker_seed: int = 0, sticker_count: int = 1000):
        super().__init__(preset, mode)
        self.source = StickerGenerator(sticker_seed, sticker_count) if stickers is None else StickerFolder(stickers)
        # Prepared stickers are kept as uint8 (45 KB each at 112 px) so a whole family fits.
        self._raw = _LRU(32)
        self._prepared = _LRU(4096)

    def setting(self, height, width):
        if self.mode == "eval":
            return {"side": geometry.STICKER_SIDE, "stickers": len(self.source)}
        return {"side": geometry.STICKER_SIDE, "scale": self.TRAIN_SCALE, "shift": self.TRAIN_SHIFT,
                "stickers": len(self.source)}

    def sticker(self, index: int, side: int) -> np.ndarray:
        """Prepared sticker `index` at `side` pixels: float32 [side, side, 4] in [0, 1]."""
        raw = lambda: self._raw.get_or(index, lambda: self.source.load(index))
        u8 = self._prepared.get_or(
            (index, side), lambda: np.round(prepare_sticker(raw(), side) * 255).astype(np.uint8))
        return u8.astype(np.float32) / 255.0

    def draw(self, rng, batch: int):
        """Per image: (sticker index, box scale, shift x, shift y), from `rng`."""
        g = numpy_rng(rng)
        idx = g.integers(0, len(self.source), batch)
        if self.mode == "eval":
            return [(int(i), 1.0, 0.0, 0.0) for i in idx]
        scale = g.uniform(*self.TRAIN_SCALE, batch)
        shift = g.uniform(-self.TRAIN_SHIFT, self.TRAIN_SHIFT, (batch, 2))
        return [(int(i), float(s), float(dx), float(dy)) for i, s, (dx, dy) in zip(idx, scale, shift)]

    def composite(self, image_u8: np.ndarray, index: int, scale=1.0, dx=0.0, dy=0.0) -> np.ndarray:
        h, w = image_u8.shape[:2]
        m = min(h, w)
        side = max(2, int(round(geometry.STICKER_SIDE * m * scale)))
        st = self.sticker(index, side)
        cx = (geometry.STICKER_CENTRE[0] + dx) * w
        cy = (geometry.STICKER_CENTRE[1] + dy) * h
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        # Clip the sticker box to the image (it may stick out at the bottom or sides).
        ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        out = image_u8.astype(np.float32)
        if ix1 <= ix0 or iy1 <= iy0:
            return image_u8
        part = st[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        a = part[..., 3:4]
        out[iy0:iy1, ix0:ix1] = a * part[..., :3] * 255.0 + (1.0 - a) * out[iy0:iy1, ix0:ix1]
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    def __call__(self, rng, images, *, names=None):
        x = to_uint8_batch(images, self.name)
        out = np.stack([self.composite(im, *p) for im, p in zip(x, self.draw(rng, len(x)))]) if len(x) else x
        return from_uint8_batch(out)

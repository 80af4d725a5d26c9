"""Cartoon face stickers (RGBA): a folder loader in CartoonSet's format and a procedural generator.

CartoonSet (the paper's stickers) cannot be downloaded here, so `generate_sticker`
draws varied flat-colour cartoon faces (face shape, skin tone, ears, hair style and
colour, eyes, brows, nose, mouth, blush, glasses, facial hair) from its own seed:
`generate_sticker(seed, index)` is a pure function of (seed, index).

Both sources give uint8 RGBA [S, S, 4] with a transparent background, which
`prepare_sticker` crops to the alpha box, pads to a square and resizes.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

SKIN_TONES = [
    (255, 224, 196), (247, 208, 170), (236, 188, 150), (224, 172, 125), (198, 140, 95),
    (170, 112, 72), (141, 85, 54), (105, 64, 40), (255, 214, 170), (233, 196, 160),
]
HAIR_COLOURS = [
    (25, 20, 20), (60, 40, 28), (98, 62, 36), (150, 100, 50), (220, 180, 100), (240, 220, 150),
    (170, 60, 30), (200, 200, 205), (245, 245, 245), (60, 90, 200), (210, 80, 150), (110, 60, 160),
    (40, 140, 90),
]
IRIS_COLOURS = [(60, 40, 25), (90, 60, 30), (40, 90, 160), (60, 130, 80), (110, 110, 120), (20, 20, 20)]
FRAME_COLOURS = [(20, 20, 20), (120, 30, 30), (30, 60, 140), (150, 110, 40), (200, 200, 200), (200, 60, 120)]


def _darker(c, f=0.7):
    return tuple(int(v * f) for v in c[:3])


class _Canvas:
    """Draws in unit coordinates on a supersampled RGBA canvas."""

    def __init__(self, size: int):
        self.n = size
        self.im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.d = ImageDraw.Draw(self.im)

    def p(self, x, y):
        return (x * self.n, y * self.n)

    def box(self, cx, cy, rx, ry):
        return [(cx - rx) * self.n, (cy - ry) * self.n, (cx + rx) * self.n, (cy + ry) * self.n]

    def w(self, t):
        return max(1, int(round(t * self.n)))

    def ellipse(self, cx, cy, rx, ry, fill=None, outline=None, width=0.0):
        self.d.ellipse(self.box(cx, cy, rx, ry), fill=fill, outline=outline, width=self.w(width) if outline else 0)

    def polygon(self, pts, fill=None, outline=None, width=0.0):
        pts = [self.p(x, y) for x, y in pts]
        self.d.polygon(pts, fill=fill)
        if outline:
            self.d.line(pts + [pts[0]], fill=outline, width=self.w(width), joint="curve")

    def line(self, pts, fill, width):
        self.d.line([self.p(x, y) for x, y in pts], fill=fill, width=self.w(width), joint="curve")

    def arc(self, cx, cy, rx, ry, start, end, fill, width):
        self.d.arc(self.box(cx, cy, rx, ry), start, end, fill=fill, width=self.w(width))

    def chord(self, cx, cy, rx, ry, start, end, fill, outline=None, width=0.0):
        self.d.chord(self.box(cx, cy, rx, ry), start, end, fill=fill, outline=outline,
                     width=self.w(width) if outline else 0)

    def rounded(self, cx, cy, rx, ry, radius, fill=None, outline=None, width=0.0):
        self.d.rounded_rectangle(self.box(cx, cy, rx, ry), radius=radius * self.n, fill=fill, outline=outline,
                                 width=self.w(width) if outline else 0)


def _face_outline(kind, cx, cy, rx, ry, n=64):
    """Points of a face contour: 'oval', 'round', 'long', 'square' (rounded jaw) or 'heart' (pointed chin)."""
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = math.cos(t), math.sin(t)  # y > 0 is the lower half (image coordinates)
        if kind == "square":
            e = 4.0 if y > 0 else 2.2  # superellipse: boxier jaw
            x = math.copysign(abs(x) ** (2 / e), x)
            y = math.copysign(abs(y) ** (2 / e), y)
        elif kind == "heart" and y > 0:
            x *= 1.0 - 0.35 * y ** 2  # narrows towards the chin
        elif kind == "round":
            x *= 1.04
        pts.append((cx + rx * x, cy + ry * y))
    return pts


def generate_sticker(seed: int, index: int, size: int = 256) -> np.ndarray:
    """Cartoon face number `index` of the family `seed`: uint8 RGBA [size, size, 4], transparent background."""
    f = _Sticker(np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, 0x57C4]), size)
    # Back to front; every part draws its random choices in turn, so the order fixes the face.
    for part in (f.back_hair, f.ears, f.face, f.facial_hair, f.eyes, f.brows, f.nose, f.mouth, f.blush,
                 f.front_hair, f.glasses):
        part()
    out = f.c.im.resize((size, size), Image.LANCZOS)
    return np.asarray(out, dtype=np.uint8).copy()


class _Sticker:
    """One cartoon face: the head's random proportions, then one method per part."""

    def __init__(self, r: np.random.Generator, size: int):
        self.r = r
        self.c = _Canvas(size * 3)  # supersampling for smooth edges
        self.skin = self.pick(SKIN_TONES)
        if r.random() < 0.06:  # the odd fantasy skin, as cartoon sets have
            self.skin = self.pick([(170, 220, 140), (160, 200, 240), (240, 190, 230)])
        self.hair = self.pick(HAIR_COLOURS)
        self.line = _darker(self.skin, 0.45)
        self.lw = self.uni(0.006, 0.011)
        self.cx, self.cy = 0.5, self.uni(0.55, 0.58)
        self.rx, self.ry = self.uni(0.26, 0.31), self.uni(0.30, 0.35)
        self.shape = self.pick(["oval", "round", "long", "square", "heart"])
        if self.shape == "long":
            self.rx *= 0.92
            self.ry *= 1.06
        if self.shape == "round":
            self.ry *= 0.94
        self.hair_style = self.pick(["bald", "short", "long", "bob", "spiky", "bun", "curly", "mohawk", "side", "afro",
                                     "cap"])
        self.top = self.cy - self.ry

    def pick(self, seq):
        return seq[int(self.r.integers(len(seq)))]

    def uni(self, a, b) -> float:
        return float(self.r.uniform(a, b))

    def back_hair(self):
        """Behind the head: long hair, bun, afro."""
        c, hair, lw, cx, cy, rx, ry = self.c, self.hair, self.lw, self.cx, self.cy, self.rx, self.ry
        if self.hair_style in ("long", "bob"):
            drop = self.uni(0.34, 0.42) if self.hair_style == "long" else self.uni(0.15, 0.22)
            c.rounded(cx, cy + drop / 2 - 0.04, rx * 1.25, ry * 0.75 + drop / 2, 0.14, fill=hair, outline=_darker(hair),
                      width=lw)
        if self.hair_style == "afro":
            for k in range(18):
                t = 2 * math.pi * k / 18
                c.ellipse(cx + rx * 1.15 * math.cos(t), cy - 0.06 + ry * 1.05 * math.sin(t) * 0.95, 0.09, 0.09, fill=hair)
            c.ellipse(cx, cy - 0.06, rx * 1.2, ry * 1.05, fill=hair)
        if self.hair_style == "bun":
            c.ellipse(cx, self.top - 0.06, 0.09, 0.08, fill=hair, outline=_darker(hair), width=lw)

    def ears(self):
        ear_y = self.cy + self.uni(-0.03, 0.03)
        ear_r = self.uni(0.045, 0.06)
        for side in (-1, 1):
            ex = self.cx + side * self.rx * 0.97
            self.c.ellipse(ex, ear_y, ear_r, ear_r * 1.35, fill=self.skin, outline=self.line, width=self.lw)
            self.c.ellipse(ex + side * 0.008, ear_y, ear_r * 0.45, ear_r * 0.7, fill=_darker(self.skin, 0.85))

    def face(self):
        self.c.polygon(_face_outline(self.shape, self.cx, self.cy, self.rx, self.ry), fill=self.skin, outline=self.line,
                       width=self.lw)

    def facial_hair(self):
        """A beard, under the features."""
        cx, cy = self.cx, self.cy
        self.beard = self.r.random() < 0.18
        if self.beard:
            pts = [p for p in _face_outline(self.shape, cx, cy, self.rx, self.ry) if p[1] > cy + 0.02]
            pts.sort(key=lambda p: p[0])
            inner = [(cx + (x - cx) * 0.55, cy + 0.11 + (y - cy - 0.11) * 0.35) for x, y in reversed(pts)]
            self.c.polygon(pts + inner, fill=self.hair)

    def eyes(self):
        c, lw = self.c, self.lw
        self.eye_dx = eye_dx = self.rx * self.uni(0.36, 0.46)
        self.eye_y = eye_y = self.cy + self.uni(-0.06, -0.01)
        eye_style = self.pick(["dot", "round", "almond", "wide", "closed", "lashes"])
        self.eye_r = eye_r = self.uni(0.035, 0.05)
        iris = self.pick(IRIS_COLOURS)
        for side in (-1, 1):
            ex = self.cx + side * eye_dx
            if eye_style == "dot":
                c.ellipse(ex, eye_y, eye_r * 0.45, eye_r * 0.55, fill=(25, 20, 20))
                c.ellipse(ex - eye_r * 0.15, eye_y - eye_r * 0.2, eye_r * 0.12, eye_r * 0.12, fill=(255, 255, 255))
            elif eye_style == "closed":
                c.arc(ex, eye_y, eye_r, eye_r * 0.7, 200, 340, fill=(30, 20, 20), width=lw * 1.2)
            else:
                ry_e = {"round": 1.0, "almond": 0.6, "wide": 0.85, "lashes": 0.8}[eye_style] * eye_r
                rx_e = eye_r * (1.25 if eye_style == "wide" else 1.0)
                c.ellipse(ex, eye_y, rx_e, ry_e, fill=(255, 255, 255), outline=(40, 30, 30), width=lw * 0.8)
                look = self.uni(-0.3, 0.3) * rx_e
                c.ellipse(ex + look, eye_y, ry_e * 0.65, ry_e * 0.8, fill=iris)
                c.ellipse(ex + look, eye_y, ry_e * 0.32, ry_e * 0.4, fill=(15, 10, 10))
                c.ellipse(ex + look - ry_e * 0.22, eye_y - ry_e * 0.3, ry_e * 0.14, ry_e * 0.14, fill=(255, 255, 255))
                if eye_style == "lashes":
                    self._lashes(ex, eye_y, rx_e, ry_e, side)

    def _lashes(self, ex, eye_y, rx_e, ry_e, side):
        for k in range(3):
            a = math.radians(-120 + 30 * k) if side < 0 else math.radians(-60 - 30 * k)
            x0, y0 = ex + rx_e * math.cos(a), eye_y + ry_e * math.sin(a)
            self.c.line([(x0, y0), (x0 + 0.02 * math.cos(a), y0 + 0.02 * math.sin(a))], fill=(20, 20, 20),
                        width=self.lw * 0.7)

    def brows(self):
        hair = self.hair
        brow_style = self.pick(["arc", "line", "thick", "angry", "raised"])
        brow_y = self.eye_y - self.eye_r - self.uni(0.025, 0.05)
        brow_col = _darker(hair, 0.75) if hair not in ((245, 245, 245), (200, 200, 205)) else (150, 150, 150)
        bw = self.lw * (2.4 if brow_style == "thick" else 1.4)
        for side in (-1, 1):
            bx = self.cx + side * self.eye_dx
            hw = self.eye_r * 1.2
            if brow_style in ("arc", "raised"):
                lift = 0.02 if brow_style == "raised" else 0.0
                self.c.arc(bx, brow_y + 0.02 - lift, hw, 0.03, 200, 340, fill=brow_col, width=bw)
            else:
                tilt = {"line": 0.0, "thick": 0.004, "angry": 0.022}[brow_style]
                inner_x, outer_x = bx - side * hw, bx + side * hw
                self.c.line([(inner_x, brow_y + tilt), (outer_x, brow_y - tilt)], fill=brow_col, width=bw)

    def nose(self):
        c, cx, lw = self.c, self.cx, self.lw
        nose_style = self.pick(["none", "arc", "dot", "l", "button"])
        ny = self.cy + self.uni(0.06, 0.09)
        nose_col = _darker(self.skin, 0.7)
        if nose_style == "arc":
            c.arc(cx, ny, 0.025, 0.018, 20, 160, fill=nose_col, width=lw)
        elif nose_style == "dot":
            c.ellipse(cx, ny, 0.012, 0.009, fill=nose_col)
        elif nose_style == "l":
            c.line([(cx + 0.005, ny - 0.06), (cx - 0.02, ny), (cx + 0.015, ny + 0.004)], fill=nose_col, width=lw)
        elif nose_style == "button":
            c.ellipse(cx, ny, 0.03, 0.022, fill=_darker(self.skin, 0.9), outline=nose_col, width=lw * 0.7)

    def mouth(self):
        """A mustache (always with a beard), then the mouth."""
        c, cx, lw = self.c, self.cx, self.lw
        my = self.cy + self.uni(0.17, 0.21)
        if self.beard or self.r.random() < 0.1:
            c.chord(cx, my - 0.035, self.rx * 0.45, 0.03, 180, 360, fill=_darker(self.hair, 0.9))
        mouth_style = self.pick(["smile", "open", "flat", "o", "smirk", "grin"])
        mw = self.rx * self.uni(0.3, 0.5)
        lip = (150, 50, 60)
        if mouth_style == "smile":
            c.arc(cx, my - 0.03, mw, 0.04, 20, 160, fill=lip, width=lw * 1.3)
        elif mouth_style == "open":
            c.chord(cx, my - 0.02, mw, 0.045, 0, 180, fill=(110, 30, 40), outline=(80, 20, 30), width=lw)
            c.chord(cx, my - 0.02, mw * 0.85, 0.02, 0, 180, fill=(255, 255, 255))
        elif mouth_style == "flat":
            c.line([(cx - mw * 0.8, my), (cx + mw * 0.8, my)], fill=lip, width=lw * 1.3)
        elif mouth_style == "o":
            c.ellipse(cx, my, mw * 0.35, 0.025, fill=(110, 30, 40), outline=(80, 20, 30), width=lw * 0.7)
        elif mouth_style == "smirk":
            c.line([(cx - mw * 0.7, my + 0.005), (cx + mw * 0.4, my), (cx + mw * 0.8, my - 0.02)], fill=lip,
                   width=lw * 1.3)
        else:  # grin: wide with teeth
            c.chord(cx, my - 0.03, mw * 1.2, 0.05, 0, 180, fill=(255, 255, 255), outline=(80, 20, 30), width=lw)
            c.line([(cx - mw * 1.1, my - 0.008), (cx + mw * 1.1, my - 0.008)], fill=(200, 200, 200), width=lw * 0.5)

    def blush(self):
        if self.r.random() < 0.35:
            layer = _Canvas(self.c.n)
            for side in (-1, 1):
                layer.ellipse(self.cx + side * self.eye_dx * 1.15, self.eye_y + 0.085, 0.04, 0.022,
                              fill=(240, 110, 120, 110))
            self.c.im.alpha_composite(layer.im)
            self.c.d = ImageDraw.Draw(self.c.im)

    def front_hair(self):
        c, hair, lw, cx, rx, ry, top = self.c, self.hair, self.lw, self.cx, self.rx, self.ry, self.top
        style = self.hair_style
        if style in ("short", "long", "bob", "side", "curly", "afro"):
            c.chord(cx, top + ry * 0.42, rx * 1.06, ry * 0.62, 180, 360, fill=hair, outline=_darker(hair), width=lw)
            if style == "side":
                c.polygon([(cx - rx * 1.0, top + 0.12), (cx + rx * 0.6, top - 0.03), (cx + rx * 1.02, top + 0.1),
                           (cx + rx * 0.2, top + 0.05)], fill=hair)
            if style == "curly":
                for k in range(9):
                    t = math.pi + math.pi * k / 8
                    c.ellipse(cx + rx * 1.0 * math.cos(t), top + ry * 0.42 + ry * 0.62 * math.sin(t), 0.05, 0.05,
                              fill=hair, outline=_darker(hair), width=lw * 0.6)
        elif style == "spiky":
            spikes = int(self.r.integers(5, 9))
            pts = []
            for k in range(spikes + 1):
                x = cx - rx * 1.05 + 2 * rx * 1.05 * k / spikes
                pts.append((x, top + 0.1))
                if k < spikes:
                    pts.append((x + rx * 1.05 / spikes, top - self.uni(0.05, 0.1)))
            c.polygon([(cx + rx * 1.05, top + 0.16)] + pts[::-1] + [(cx - rx * 1.05, top + 0.16)], fill=hair,
                      outline=_darker(hair), width=lw)
        elif style == "mohawk":
            c.polygon([(cx - 0.05, top + 0.06), (cx, top - 0.12), (cx + 0.05, top + 0.06)], fill=hair,
                      outline=_darker(hair), width=lw)
        elif style == "bun":
            c.chord(cx, top + ry * 0.4, rx * 1.04, ry * 0.55, 180, 360, fill=hair, outline=_darker(hair), width=lw)
        elif style == "cap":
            cap = self.pick(FRAME_COLOURS[1:])
            c.chord(cx, top + ry * 0.35, rx * 1.1, ry * 0.6, 180, 360, fill=cap, outline=_darker(cap), width=lw)
            c.rounded(cx + rx * 0.35, top + ry * 0.35, rx * 0.85, 0.02, 0.02, fill=_darker(cap, 0.8))

    def glasses(self):
        if self.r.random() < 0.32:
            c, lw, cx, eye_dx, eye_y = self.c, self.lw, self.cx, self.eye_dx, self.eye_y
            frame = self.pick(FRAME_COLOURS)
            kind = self.pick(["round", "square", "sun"])
            gr = self.eye_r * 1.7
            fill = (20, 20, 30) if kind == "sun" else None
            for side in (-1, 1):
                gx = cx + side * eye_dx
                if kind == "round":
                    c.ellipse(gx, eye_y, gr, gr, fill=fill, outline=frame, width=lw)
                else:
                    c.rounded(gx, eye_y, gr * 1.1, gr * 0.8, 0.015, fill=fill, outline=frame, width=lw)
            c.line([(cx - eye_dx + gr * 0.95, eye_y - 0.005), (cx + eye_dx - gr * 0.95, eye_y - 0.005)], fill=frame,
                   width=lw)


# ----------------------------------------------------------------------------------
def prepare_sticker(rgba: np.ndarray, side: int) -> np.ndarray:
    """Crops an RGBA sticker to its alpha box, pads it to a centred square, resizes to side×side.

    Returns float32 [side, side, 4] in [0, 1] (colour, alpha), alpha not premultiplied.
    """
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"sticker must be RGBA [H, W, 4], got shape {a.shape}")
    ys, xs = np.nonzero(a[..., 3] > 0)
    if ys.size == 0:
        raise ValueError("sticker is fully transparent (empty alpha channel)")
    a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    h, w = a.shape[:2]
    n = max(h, w)
    sq = np.zeros((n, n, 4), np.uint8)
    sq[(n - h) // 2:(n - h) // 2 + h, (n - w) // 2:(n - w) // 2 + w] = a
    im = Image.fromarray(sq, "RGBA").resize((side, side), Image.LANCZOS)  # PIL resamples RGBA premultiplied
    return np.asarray(im, np.float32) / 255.0


class StickerFolder:
    """RGBA sticker PNGs in a folder (CartoonSet's format), loaded lazily by index."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"sticker folder {self.folder} does not exist or is not a directory")
        self.paths = sorted(p for p in self.folder.iterdir() if p.suffix.lower() == ".png")
        if not self.paths:
            raise ValueError(f"sticker folder {self.folder} holds no .png stickers")
        self.load(0)  # fail early on a folder of unusable files

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> np.ndarray:
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                im.load()
                if "A" not in im.getbands() and not (im.mode == "P" and "transparency" in im.info):
                    raise ValueError(f"sticker {path} has no alpha channel (mode {im.mode}); stickers must be RGBA PNGs")
                return np.asarray(im.convert("RGBA"), np.uint8)
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise ValueError(f"sticker {path} is not a readable PNG ({e})") from None


class StickerGenerator:
    """`count` procedural stickers of the family `seed` (pure: sticker i is always the same)."""

    def __init__(self, seed: int = 0, count: int = 1000, size: int = 256):
        if count < 1:
            raise ValueError(f"sticker generator needs count >= 1, got {count}")
        self.seed, self.count, self.size = int(seed), int(count), int(size)

    def __len__(self) -> int:
        return self.count

    def load(self, index: int) -> np.ndarray:
        return generate_sticker(self.seed, index, self.size)

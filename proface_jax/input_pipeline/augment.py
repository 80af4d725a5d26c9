"""Re-cropping faces unlike the training crops: random scale, shift, rotation and colour, seeded.

One transform serves two uses:

* the evaluation's `--jitter` (`jitter_faces`): every test face re-cropped once, face i from
  ``np.random.default_rng([seed, 23, i])``, so a jittered run is reproducible and the same face
  gets the same jitter whichever checkpoints are evaluated;
* training augmentation (`config.augment`, `Augment`): each image of each batch re-cropped with
  a draw from ``default_rng([seed, 29, step, index])`` -- a pure function of (seed, step, the
  image's dataset index), so a resumed run, and a run split over any number of processes, sees
  the same augmented batches.

Geometry (`Jitter`): the output's sampling grid is the input's scaled by 1/scale about the centre
(scale > 1 zooms in, the face fills more of the crop; scale < 1 zooms out), shifted by (dx, dy)
as fractions of the side and rotated by `angle` degrees; pixels from outside the crop are the
crop mirrored (numpy 'symmetric' padding by half a side), so no black borders betray the
transform. Colour: brightness (× b), contrast about the image mean (× c), saturation about the
luma (× s), and a per-channel gain (× g_r, g_g, g_b). Resampling: PIL bicubic.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class JitterRange:
    """The ranges draws are uniform in (scale log-uniform)."""

    scale: tuple[float, float] = (0.8, 1.25)
    shift: float = 0.10  # ± fraction of the side, each axis
    angle: float = 10.0  # ± degrees
    brightness: float = 0.15  # × U(1 - b, 1 + b)
    contrast: float = 0.15
    saturation: float = 0.20
    channel_gain: float = 0.05


EVAL_JITTER = JitterRange()


@dataclasses.dataclass(frozen=True)
class Jitter:
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    angle: float = 0.0
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)


def draw(rng: np.random.Generator, r: JitterRange = EVAL_JITTER) -> Jitter:
    lo, hi = math.log(r.scale[0]), math.log(r.scale[1])
    u = lambda a: float(rng.uniform(1 - a, 1 + a))
    return Jitter(scale=float(math.exp(rng.uniform(lo, hi))), dx=float(rng.uniform(-r.shift, r.shift)),
                  dy=float(rng.uniform(-r.shift, r.shift)), angle=float(rng.uniform(-r.angle, r.angle)),
                  brightness=u(r.brightness), contrast=u(r.contrast), saturation=u(r.saturation),
                  gain=tuple(u(r.channel_gain) for _ in range(3)))


def apply(img: np.ndarray, j: Jitter) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [H, W, 3], re-cropped and re-coloured by `j`."""
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"jitter wants uint8 [H, W, 3], got {img.dtype} {img.shape}")
    h, w = img.shape[:2]
    ph, pw = h // 2, w // 2
    big = np.pad(img, ((ph, ph), (pw, pw), (0, 0)), mode="symmetric")
    # output pixel (u, v) about the centre -> input point: centre + R(angle) (u, v) / scale + shift
    a = math.radians(j.angle)
    ca, sa = math.cos(a) / j.scale, math.sin(a) / j.scale
    cx, cy = pw + w / 2 + j.dx * w, ph + h / 2 + j.dy * h
    ox, oy = w / 2, h / 2
    # PIL's affine maps output (x, y) to input (a x + b y + c, d x + e y + f)
    coeffs = (ca, -sa, cx - ca * ox + sa * oy, sa, ca, cy - sa * ox - ca * oy)
    out = Image.fromarray(big).transform((w, h), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC)
    f = np.asarray(out, np.float32) / 255.0
    f = f * j.brightness
    f = (f - f.mean()) * j.contrast + f.mean()
    lum = (f @ LUMA)[..., None]
    f = (f - lum) * j.saturation + lum
    f = f * np.asarray(j.gain, np.float32)
    return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)


def jitter_faces(x_u8: np.ndarray, seed: int, r: JitterRange = EVAL_JITTER) -> tuple[np.ndarray, list[Jitter]]:
    """Every face re-cropped once (face i from default_rng([seed, 23, i])); also returns the draws."""
    out = np.empty_like(x_u8)
    draws = []
    for i, img in enumerate(x_u8):
        j = draw(np.random.default_rng([int(seed), 23, i]), r)
        out[i] = apply(img, j)
        draws.append(j)
    return out, draws


class Augment:
    """Training augmentation: float [B, H, W, 3] in [-1, 1] (or uint8) -> the same, each image
    re-cropped with probability `prob` by a draw of default_rng([seed, 29, step, index[i]]).

    `index`: the images' dataset indices (default: their positions 0..B-1). Keying the draw on
    the dataset index, not on the position in the array, gives each image the same draw
    whichever process of a multi-process run decodes it (`input_pipeline.process_shard`)."""

    def __init__(self, r: JitterRange, prob: float = 1.0, seed: int = 0):
        self.r, self.prob, self.seed = r, float(prob), int(seed)

    def __call__(self, batch: np.ndarray, step: int, index=None) -> np.ndarray:
        batch = np.asarray(batch)
        index = range(len(batch)) if index is None else [int(k) for k in index]
        if len(index) != len(batch):
            raise ValueError(f"{len(index)} indices for a batch of {len(batch)} images")
        as_float = batch.dtype != np.uint8
        u8 = np.clip(np.rint((batch + 1.0) * 127.5), 0, 255).astype(np.uint8) if as_float else batch
        out = u8.copy()
        for i, k in enumerate(index):
            g = np.random.default_rng([self.seed, 29, int(step), k])
            if g.uniform() < self.prob:
                out[i] = apply(u8[i], draw(g, self.r))
        if not as_float:
            return out
        res = out.astype(np.float32) / 127.5 - 1.0
        keep = np.all(out == u8, axis=(1, 2, 3))  # untouched images keep their exact float values
        res[keep] = batch[keep]
        return res


def from_config(c, seed: int) -> Augment | None:
    """`Augment` from a config's `augment` block (None when absent or disabled)."""
    a = getattr(c, "augment", None)
    if a is None or not bool(a.enabled):
        return None
    r = JitterRange(scale=(float(a.scale_min), float(a.scale_max)), shift=float(a.shift), angle=float(a.angle),
                    brightness=float(a.brightness), contrast=float(a.contrast), saturation=float(a.saturation),
                    channel_gain=float(a.channel_gain))
    return Augment(r, float(a.prob), seed)


class Augmented:
    """A source whose batches the batch iterator passes through `augment(images, step, indices)` (the
    faces themselves are unchanged; `BatchIterator` calls `augment_batch` on each batch)."""

    def __init__(self, source, augment: Augment):
        self.source, self.augment_batch = source, augment

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int):
        return self.source[index]

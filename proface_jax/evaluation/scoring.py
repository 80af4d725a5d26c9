"""Scoring for the evaluation: PSNR / SSIM / LPIPS as `proface_jax.metrics.score`, with each
image's VGG pass done once, and the batching and averaging every section uses."""
from __future__ import annotations

import collections
from typing import Any, NamedTuple

import jax
import numpy as np

from proface_jax import images, metrics
from proface_jax.evaluation import attacks
from proface_jax.lpips import distance as lpips_distance

METRICS = ("psnr", "ssim", "lpips")
# Identical images would have PSNR = ∞: capped so that means stay finite.
PSNR_CAP = 100.0


def pad_to(a: np.ndarray, batch: int) -> np.ndarray:
    """Pads the first axis to `batch` by repeating the last entry (one compiled shape everywhere)."""
    k = len(a)
    if k == batch:
        return a
    return np.concatenate([a, np.repeat(a[-1:], batch - k, axis=0)])


def chunks(n: int, batch: int):
    for s in range(0, n, batch):
        yield s, min(n, s + batch)


class Prepared(NamedTuple):
    img: jax.Array  # quantised to 8-bit levels or clamped, in [-1, 1]
    taps: Any  # unit-normalised LPIPS-VGG taps, or None without LPIPS


_lpips_from_taps = jax.jit(lpips_distance.from_taps)


class Scorer:
    """PSNR / SSIM / LPIPS as `proface_jax.metrics.score`, with each image's VGG pass done once.

    `prep(img, from_8bit)` quantises (8-bit) or clamps (float) and runs the LPIPS trunk once;
    `compare(a, b)` then costs no VGG pass, so an image scored against several references (and
    used as an attack probe: `features`) is featurised once. tests/test_evaluate.py checks it
    against `metrics.score`.
    """

    def __init__(self, lpips_params=None):
        self.lpips_params = lpips_params

    @property
    def kinds(self) -> tuple[str, ...]:
        return attacks.MATCHERS if self.lpips_params is not None else ("thumbnail",)

    def prep(self, img, from_8bit: bool) -> Prepared:
        a = metrics.as_model_range(img)
        a = metrics.quantize8(a) if from_8bit else metrics.clamp(a)
        taps = attacks.lpips_taps(self.lpips_params, a) if self.lpips_params is not None else None
        return Prepared(a, taps)

    def compare(self, a: Prepared, b: Prepared) -> dict[str, np.ndarray]:
        out = {"psnr": np.minimum(np.asarray(metrics.psnr(a.img, b.img), np.float64), PSNR_CAP),
               "ssim": np.asarray(metrics.ssim(a.img, b.img), np.float64)}
        if a.taps is not None and b.taps is not None:
            out["lpips"] = np.asarray(_lpips_from_taps(self.lpips_params["lin"], a.taps, b.taps), np.float64)
        return out

    def features(self, a: Prepared) -> dict[str, np.ndarray]:
        """Attack features of a prepared image (thumbnail; deep from the same VGG pass)."""
        out = {"thumbnail": np.asarray(attacks.thumbnail_features(a.img))}
        if a.taps is not None:
            out["deep"] = np.asarray(_pool_taps(a.taps))
        return out

    def score(self, a, b, from_8bit: bool) -> dict[str, np.ndarray]:
        return self.compare(self.prep(a, from_8bit), self.prep(b, from_8bit))


_pool_taps = jax.jit(attacks.pool_taps)


def score_all(scorer: Scorer, a: np.ndarray, b: np.ndarray, batch: int, from_8bit: bool = True,
              features: bool = False):
    """Per-image scores of whole sets in padded batches [, and the attack features of `a`]."""
    per, feats = collections.defaultdict(list), collections.defaultdict(list)
    for s, e in chunks(len(a), batch):
        A = scorer.prep(pad_to(a[s:e], batch), from_8bit)
        for m, v in scorer.compare(A, scorer.prep(pad_to(b[s:e], batch), from_8bit)).items():
            per[m].append(v[: e - s])
        if features:
            for kind, f in scorer.features(A).items():
                feats[kind].append(f[: e - s])
    sc = {m: np.concatenate(v) for m, v in per.items()}
    return (sc, {k: np.concatenate(v) for k, v in feats.items()}) if features else sc


def features_all(scorer: Scorer, a: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    feats = collections.defaultdict(list)
    for s, e in chunks(len(a), batch):
        for kind, f in scorer.features(scorer.prep(pad_to(a[s:e], batch), True)).items():
            feats[kind].append(f[: e - s])
    return {k: np.concatenate(v) for k, v in feats.items()}


def mean_scores(per: dict[str, list]) -> dict[str, float]:
    return {m: float(np.mean(np.concatenate(v))) for m, v in per.items() if v}


def average(dicts: list[dict]) -> dict:
    """Mean, key by key, of dicts of numbers (nested); keys missing somewhere are averaged where present."""
    out: dict = {}
    keys_ = []
    for d in dicts:
        keys_ += [k for k in d if k not in keys_]
    for k in keys_:
        vals = [d[k] for d in dicts if k in d]
        if all(isinstance(v, dict) for v in vals):
            out[k] = average(vals)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out[k] = float(np.mean(vals))
    return out


def summary(per: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(np.mean(v)) for m, v in per.items()}


def u8(a) -> np.ndarray:
    return images.from_unit(np.asarray(a))

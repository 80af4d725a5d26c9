"""Evaluating PRO-Face S checkpoints: the paper's Tables I–III, security, attacks, robustness.

    python -m experiments.evaluate --checkpoint PATH [--checkpoint PATH2 ...] --data SOURCE \
        --out DIR [--n 1000] [--size 112] [--seed 0] [--quick] [--no-lpips] [--template-dir DIR]

Writes DIR/results.json (every number), DIR/report.md (tables laid out like the paper's, with
its averaged LFW/CelebA rows, spec §9, and its per-obfuscator rows beside ours) and the PNG
figures the report links. Several checkpoints are evaluated side by side on the same faces,
obfuscations and keys, labelled by file name (the shortest unique path suffix) and mode.

Protocol
--------
* Faces: a fixed-seed sample of n faces of the source's test split (`input_pipeline.test_sample`;
  all if fewer), centre-cropped and resized to size×size.
* Pre-obfuscation: each obfuscator in its eval setting (`--preset`, default paper112): blur,
  pixelate, median, mask, swap (donors: the validation split of the same source; never test
  faces), and template (precomputed outputs) only with `--template-dir`.
* Keys: a fresh seeded uniform ±1 map per face and obfuscator (right key), and an independent
  one (wrong key), as in training; the security section derives maps from passwords with the
  `paper` KDF (PBKDF2, spec §3).
* Two scorings, both reported and labelled: "8-bit" (what a user has: ŷ is quantised to the
  8-bit PNG levels before recovery, every output is quantised before scoring) and "float"
  (ŷ fed to recovery as a float, outputs scored as clamped floats). Metrics: PSNR, SSIM,
  LPIPS-VGG per `proface_jax.metrics` (clamped, never renormalised). Identical images would
  have PSNR = ∞; per-image PSNR is capped at 100 dB so that means stay finite.
* Averages over obfuscators are means of the per-obfuscator means (the paper's "Avg.").

Sections (each prints its wall time): 1. Tables I–III; 2. security (passwords one bit / one
character away, spoofing with y, byproducts); 3. re-identification attacks (`experiments.attacks`:
16×16 thumbnail correlation, LPIPS-VGG deep features; top-1/top-5 vs chance); 4. a keyless
attacker (U-Net trained on (ŷ, x) pairs of the train split) against a random-key recovery,
with a y -> x network as the no-protection baseline; 5. robustness of recovery to JPEG,
resizing and ±1-level noise; 6. figures (Fig.-5- and Fig.-9-style grids, robustness, attacker).

`--quick` shrinks everything (8 faces, a few attack steps) for a CPU smoke run of a few minutes.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import functools
import io
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments import attacks, input_pipeline
from proface_jax import checkpoint as ckpt_lib
from proface_jax import flow, images, keys, metrics, obfuscators

METRICS = ("psnr", "ssim", "lpips")
PSNR_CAP = 100.0
DEFAULT_OBFUSCATORS = ("blur", "pixelate", "median", "mask", "swap")
PAPER_OBF = {"blur": "GB", "pixelate": "PL", "median": "MB", "mask": "MS", "swap": "FS", "template": "SS"}
PATHS = ("8bit", "float")
PATH_LABEL = {"8bit": "from 8-bit PNG", "float": "float"}

# Quick and full defaults of the size knobs (an explicit flag wins over either).
FULL = dict(n=1000, batch=16, security_n=100, neighbours=4, attack_train=1000, attack_steps=2000,
            attack_width=32, robust_n=None, donor_limit=500, keep=4)
QUICK = dict(n=8, batch=8, security_n=4, neighbours=2, attack_train=32, attack_steps=20,
             attack_width=8, robust_n=8, donor_limit=16, keep=3)


# --------------------------------------------------------------------------- the paper's numbers


def _p(s: str) -> dict:
    lfw, celeba = s.split("|")
    return {"LFW": [float(v) for v in lfw.split()], "CelebA": [float(v) for v in celeba.split()]}


# PAPER[table][mode][row] = {"LFW": [PSNR, SSIM, LPIPS], "CelebA": [...]}: Tables I–III of the paper
# (averaged rows as spec §9). In Table III, RandWR rows are ẍ vs x and ObfsWR rows ẍ vs y.
PAPER = {
    "privacy": {
        "randwr": {"Avg.": _p("44.92 0.990 0.0001 | 43.81 0.989 0.0001"),
                   "GB": _p("46.64 0.991 0.0 | 45.25 0.987 0.0001"), "PL": _p("44.1 0.992 0.0001 | 43.23 0.99 0.0001"),
                   "MB": _p("44.81 0.991 0.0001 | 43.85 0.988 0.0001"), "FS": _p("47.87 0.996 0.0 | 46.4 0.996 0.0"),
                   "SS": _p("47.97 0.997 0.0 | 46.31 0.996 0.0"), "MS": _p("38.11 0.975 0.0002 | 37.8 0.973 0.0002")},
        "obfswr": {"Avg.": _p("39.14 0.975 0.0005 | 38.20 0.971 0.0006"),
                   "GB": _p("42.1 0.974 0.0003 | 41.14 0.968 0.0004"), "PL": _p("38.92 0.979 0.0006 | 38.15 0.975 0.0007"),
                   "MB": _p("40.3 0.976 0.0005 | 39.47 0.97 0.0006"), "FS": _p("40.99 0.986 0.0003 | 39.72 0.984 0.0004"),
                   "SS": _p("40.83 0.986 0.0003 | 39.27 0.985 0.0004"), "MS": _p("31.69 0.947 0.001 | 31.43 0.943 0.0011")},
    },
    "recovery": {
        "randwr": {"Avg.": _p("46.87 0.998 0.0044 | 44.76 0.997 0.0043"),
                   "GB": _p("49.18 0.998 0.0009 | 46.37 0.997 0.0014"), "PL": _p("46.91 0.997 0.0021 | 44.9 0.996 0.0024"),
                   "MB": _p("44.36 0.998 0.0079 | 42.98 0.996 0.0067"), "FS": _p("49.49 0.998 0.0009 | 46.77 0.997 0.0013"),
                   "SS": _p("49.05 0.998 0.001 | 46.27 0.997 0.0015"), "MS": _p("42.2 0.987 0.0139 | 41.26 0.986 0.0127")},
        "obfswr": {"Avg.": _p("37.95 0.985 0.0170 | 36.76 0.981 0.0176"),
                   "GB": _p("37.7 0.984 0.0167 | 36.06 0.977 0.0191"), "PL": _p("38.82 0.985 0.0149 | 37.52 0.982 0.016"),
                   "MB": _p("37.5 0.984 0.0191 | 35.95 0.978 0.0215"), "FS": _p("38.13 0.986 0.017 | 37.33 0.984 0.0163"),
                   "SS": _p("38.13 0.988 0.018 | 37.08 0.985 0.0177"), "MS": _p("37.41 0.98 0.0159 | 36.64 0.978 0.0152")},
    },
    "wrong": {
        "randwr": {"Avg.": _p("10.45 0.183 0.9454 | 9.86 0.164 0.9616"),
                   "GB": _p("10.44 0.179 0.9494 | 9.86 0.16 0.9680"), "PL": _p("10.46 0.183 0.9454 | 9.89 0.165 0.9603"),
                   "MB": _p("10.45 0.179 0.9489 | 9.86 0.161 0.9650"), "FS": _p("10.47 0.182 0.9465 | 9.87 0.163 0.9617"),
                   "SS": _p("10.47 0.182 0.9467 | 9.86 0.163 0.9628"), "MS": _p("10.39 0.192 0.9355 | 9.8 0.171 0.952")},
        "obfswr": {"Avg.": _p("28.97 0.968 0.0147 | 30.03 0.965 0.0122"),
                   "GB": _p("24.57 0.966 0.0281 | 27.03 0.969 0.0212"), "PL": _p("28.57 0.963 0.0102 | 29.73 0.959 0.0085"),
                   "MB": _p("25.39 0.96 0.021 | 27.65 0.960 0.0168"), "FS": _p("33.64 0.977 0.0095 | 34.10 0.970 0.0082"),
                   "SS": _p("34.55 0.985 0.0097 | 34.82 0.982 0.0088"), "MS": _p("27.12 0.955 0.0098 | 26.83 0.949 0.01")},
    },
}


# --------------------------------------------------------------------------- small helpers


class Sections:
    """Times each section, prints it, and keeps the numbers for the report."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str):
        return _Section(self, name)


class _Section:
    def __init__(self, owner: Sections, name: str):
        self.owner, self.name = owner, name

    def __enter__(self):
        print(f"[evaluate] {self.name} ...", flush=True)
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        dt = time.perf_counter() - self.t
        self.owner.seconds[self.name] = dt
        print(f"[evaluate] {self.name}: {dt:.1f} s", flush=True)


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


@jax.jit
def _lpips_from_taps(lin, ta, tb):
    """LPIPS from unit-normalised taps: the sum in `proface_jax.lpips.distance.lpips`, term by term."""
    total = jnp.zeros((ta[0].shape[0],), jnp.float32)
    for fa, fb, w in zip(ta, tb, lin):
        total = total + jnp.mean(jnp.sum(jnp.square(fa - fb) * w, axis=-1), axis=(1, 2))
    return total


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


def unique_labels(paths: list[str], modes: list[str]) -> list[str]:
    """Shortest path suffixes (file name first) that tell distinct files apart, with the mode:
    'randwr_s1/best.pfj (randwr)'. The same file twice gets '#2'."""
    parts = []
    for p in paths:
        r = Path(p).resolve()
        parts.append(r.relative_to(r.anchor).parts or (str(p),))
    distinct = len(set(parts))
    depth = 1
    while depth < max(len(pp) for pp in parts) and len({pp[-depth:] for pp in parts}) < distinct:
        depth += 1
    out, seen = [], collections.Counter()
    for pp, m in zip(parts, modes):
        label = f"{'/'.join(pp[-depth:])} ({m})"
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out


def to_json(o):
    if isinstance(o, dict):
        return {str(k): to_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_json(v) for v in o]
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return to_json(o.tolist())
    return o


# --------------------------------------------------------------------------- data


def load_faces(spec: str, split: str, n: int, seed: int, size: int):
    """(uint8 [m, size, size, 3], names) for a fixed-seed sample of n faces of `split` (all if fewer)."""
    src = input_pipeline.open_source(spec, split)
    idx = input_pipeline.test_sample(src, n, seed)
    cached = input_pipeline.cache_in_memory(input_pipeline.Subset(src, idx), size, num_workers=2)
    return cached.images, cached.names


def resolve_data(spec: str) -> str:
    if spec.startswith("folder:"):
        return "folder:" + str(Path(spec[len("folder:"):]).expanduser().resolve())
    return spec


@functools.lru_cache(maxsize=None)
def _jitted_obfuscator(name: str, preset: str):
    return jax.jit(obfuscators.make(name, preset=preset, mode="eval").__call__)


def obfuscate(obf, name: str, preset: str, rng, x: np.ndarray, names: list[str], batch: int) -> np.ndarray:
    """Pre-obfuscated faces (float32 [-1, 1]); numpy obfuscators see the whole set at once so that
    their per-image draws (sticker, donor) do not depend on the batch size."""
    if obf.jittable:
        fn = _jitted_obfuscator(name, preset)
        out = np.empty_like(x)
        for s, e in chunks(len(x), batch):
            out[s:e] = np.asarray(fn(rng, jnp.asarray(pad_to(x[s:e], batch))))[: e - s]
        return out
    return np.asarray(obf(rng, x, names=[Path(n).name for n in names]), np.float32)


def build_obfuscators(names: list[str], preset: str, donors, template_dir) -> dict:
    out = {}
    for name in names:
        opts = {}
        if name == "swap":
            if donors is None or len(donors) == 0:
                print("[evaluate] swap skipped: no donor faces", flush=True)
                continue
            opts["donors"] = donors
        if name == "template":
            if not template_dir:
                continue
            opts["folder"] = template_dir
        out[name] = obfuscators.make(name, preset=preset, mode="eval", **opts)
    return out


def random_maps(seed: int, tag: int, n: int, size: int) -> np.ndarray:
    """n seeded uniform ±1 maps [n, size, size] (int8)."""
    g = np.random.default_rng([int(seed), 17, int(tag)])
    return (g.integers(0, 2, (n, size, size), dtype=np.int8) * 2 - 1).astype(np.int8)


def key_of(maps: np.ndarray) -> jnp.ndarray:
    return keys.key_from_map(np.asarray(maps, np.float32))


# --------------------------------------------------------------------------- the model


def _forward_all(params, x, y, K, K_wrong, cfg):
    protected, byproduct = flow.protect(params, x, y, K, cfg)
    stored = metrics.quantize8(protected)
    rec8, rec_by8 = flow.recover(params, stored, K, cfg)
    wrong8, wrong_by8 = flow.recover(params, stored, K_wrong, cfg)
    recf, _ = flow.recover(params, protected, K, cfg)
    wrongf, _ = flow.recover(params, protected, K_wrong, cfg)
    return {"protected": protected, "stored": stored, "byproduct": byproduct, "rec8": rec8, "rec_by8": rec_by8,
            "wrong8": wrong8, "wrong_by8": wrong_by8, "recf": recf, "wrongf": wrongf}


class Model:
    """A checkpoint with its jitted forward passes (one compile per batch shape)."""

    def __init__(self, ck: ckpt_lib.Checkpoint, label: str):
        self.ck, self.label, self.mode, self.cfg = ck, label, ck.mode, ck.config
        self.params = jax.tree_util.tree_map(jnp.asarray, ck.params)
        cfg = ck.config
        self._forward = jax.jit(functools.partial(_forward_all, cfg=cfg))
        self._protect = jax.jit(lambda p, x, y, K: flow.protect(p, x, y, K, cfg))
        self._recover = jax.jit(lambda p, a, K: flow.recover(p, a, K, cfg))

    def forward(self, x, y, K, K_wrong):
        return jax.device_get(self._forward(self.params, x, y, K, K_wrong))

    def protect(self, x, y, K):
        return jax.device_get(self._protect(self.params, x, y, K))

    def recover(self, a, K):
        return jax.device_get(self._recover(self.params, a, K))

    def protect_all(self, x, y, maps, batch) -> tuple[np.ndarray, np.ndarray]:
        """(stored ŷ as uint8, byproduct x̂ float) for a whole set, in padded batches."""
        stored = np.empty(x.shape, np.uint8)
        by = np.empty(x.shape, np.float32)
        for s, e in chunks(len(x), batch):
            p, b = self.protect(pad_to(x[s:e], batch), pad_to(y[s:e], batch), key_of(pad_to(maps[s:e], batch)))
            stored[s:e] = images.from_unit(np.asarray(p)[: e - s])
            by[s:e] = np.asarray(b)[: e - s]
        return stored, by

    def recover_all(self, a: np.ndarray, maps, batch) -> tuple[np.ndarray, np.ndarray]:
        rec, by = np.empty(a.shape, np.float32), np.empty(a.shape, np.float32)
        for s, e in chunks(len(a), batch):
            r, b = self.recover(pad_to(a[s:e], batch), key_of(pad_to(maps[s:e], batch)))
            rec[s:e], by[s:e] = np.asarray(r)[: e - s], np.asarray(b)[: e - s]
        return rec, by


def summary(per: dict[str, np.ndarray]) -> dict[str, float]:
    return {m: float(np.mean(v)) for m, v in per.items()}


def u8(a) -> np.ndarray:
    return images.from_unit(np.asarray(a))


# --------------------------------------------------------------------------- section 1


# group -> (image key of the forward pass, reference, from_8bit)
TABLE_GROUPS = {
    ("privacy", "8bit"): ("stored", "y", True), ("privacy", "float"): ("protected", "y", False),
    ("recovery", "8bit"): ("rec8", "x", True), ("recovery", "float"): ("recf", "x", False),
    ("wrong_vs_x", "8bit"): ("wrong8", "x", True), ("wrong_vs_y", "8bit"): ("wrong8", "y", True),
    ("wrong_vs_x", "float"): ("wrongf", "x", False), ("wrong_vs_y", "float"): ("wrongf", "y", False),
    ("byproduct_protect", "8bit"): ("byproduct", "x", True),
    ("byproduct_recover", "8bit"): ("rec_by8", "x", True),
    ("byproduct_wrong", "8bit"): ("wrong_by8", "x", True),
}
# probe name -> image key (attacked against the gallery of originals)
PROBES = {"wrong_recovery": "wrong8", "protected": "stored", "byproduct_protect": "byproduct",
          "byproduct_recover": "rec_by8", "byproduct_wrong": "wrong_by8"}
PROBE_LABEL = {
    "wrong_recovery": "ẍ wrong-key recovery", "protected": "ŷ protected", "pre_obfuscated": "y pre-obfuscated (baseline)",
    "byproduct_protect": "x̂ protection byproduct", "byproduct_recover": "y̌ recovery byproduct",
    "byproduct_wrong": "wrong-key recovery byproduct", "attacker": "keyless attacker's estimate from ŷ",
    "attacker_baseline": "y → x network's estimate from y", "one_bit": "recovery, password 1 bit away",
    "one_char": "recovery, password 1 char away", "other_password": "recovery, unrelated password",
    "spoof": "spoofing: recover(y), right password",
}


def main_pass(model: Model, x, y, maps_r, maps_w, scorer: Scorer, batch: int, keep: int):
    """Protect + recover (right and wrong key, 8-bit and float) for one obfuscator: scores,
    attack features of the probes, the stored ŷ (uint8) and sample images."""
    per = {g: collections.defaultdict(list) for g in TABLE_GROUPS}
    feats = {p: collections.defaultdict(list) for p in PROBES}
    stored = np.empty(x.shape, np.uint8)
    samples = {}
    for s, e in chunks(len(x), batch):
        k = e - s
        xb, yb = pad_to(x[s:e], batch), pad_to(y[s:e], batch)
        o = model.forward(xb, yb, key_of(pad_to(maps_r[s:e], batch)), key_of(pad_to(maps_w[s:e], batch)))
        o = {key: np.asarray(v) for key, v in o.items()}
        o["x"], o["y"] = xb, yb
        cache: dict = {}

        def P(key, eight):
            eight = eight or key == "x"  # x is on the 8-bit grid: both scorings see the same image
            if (key, eight) not in cache:
                cache[key, eight] = scorer.prep(o[key], eight)
            return cache[key, eight]

        for g, (key, ref, eight) in TABLE_GROUPS.items():
            for m, v in scorer.compare(P(key, eight), P(ref, eight)).items():
                per[g][m].append(v[:k])
        for p, key in PROBES.items():
            for kind, f in scorer.features(P(key, True)).items():
                feats[p][kind].append(f[:k])
        stored[s:e] = u8(o["stored"][:k])
        if s == 0:
            samples = {key: u8(o[key][:keep]) for key in ("stored", "rec8", "wrong8", "byproduct", "rec_by8",
                                                          "wrong_by8")}
    scores = {g: mean_scores(v) for g, v in per.items()}
    feats = {p: {kind: np.concatenate(v) for kind, v in d.items()} for p, d in feats.items()}
    return scores, feats, stored, samples


def tables_for(scores_by_obf: dict) -> dict:
    """{path: {obf|'avg': {group: {metric: mean}}}} from {obf: {(group, path): {metric: mean}}}."""
    out = {}
    for path in PATHS:
        d = {}
        for obf, sc in scores_by_obf.items():
            d[obf] = {g: v for (g, p), v in sc.items() if p == path}
        d["avg"] = average(list(d.values()))
        out[path] = d
    return out


# --------------------------------------------------------------------------- section 2


ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def password_neighbours(rng: np.random.Generator, password: str, k: int):
    """k passwords one bit away (a flipped bit of the UTF-8 bytes) and k one character away."""
    raw = password.encode("utf-8")
    one_bit, one_char = [], []
    for _ in range(k):
        b = bytearray(raw)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        one_bit.append(bytes(b))
        i = int(rng.integers(len(password)))
        c = password[i]
        while c == password[i]:
            c = ALPHABET[int(rng.integers(len(ALPHABET)))]
        one_char.append(password[:i] + c + password[i + 1:])
    return one_bit, one_char


def fails(mode: str, psnr_x: np.ndarray, psnr_y: np.ndarray, threshold: float) -> np.ndarray:
    """Whether a recovery attempt failed (the privacy goal): RandWR: PSNR to x below the threshold;
    ObfsWR: closer to y than to x (PSNR to y above PSNR to x)."""
    if mode == "randwr":
        return psnr_x < threshold
    return psnr_y > psnr_x


def fail_rule(mode: str, threshold: float) -> str:
    return (f"PSNR(x̌′, x) < {threshold:g} dB" if mode == "randwr"
            else "closer to y than to x: PSNR(x̌′, y) > PSNR(x̌′, x)")


def security_pass(model: Model, x, ys, obf_of, scorer: Scorer, gallery, args) -> tuple[dict, dict]:
    """Passwords near the right one, unrelated passwords, and spoofing, on the first m faces."""
    m, size, k, batch, keep = len(ys), args.size, args.neighbours, args.batch, args.keep
    rng = np.random.default_rng([args.seed, 99])
    new_password = lambda: "".join(ALPHABET[int(i)] for i in rng.integers(0, len(ALPHABET), 12))
    passwords = [new_password() for _ in range(m)]
    variants: dict[str, list[list]] = {"right": [[p] for p in passwords], "one_bit": [], "one_char": [],
                                       "other_password": []}
    for p in passwords:
        ob, oc = password_neighbours(rng, p, k)
        variants["one_bit"].append(ob)
        variants["one_char"].append(oc)
        variants["other_password"].append([new_password() for _ in range(k)])
    smap = lambda pw: keys.secret_map(pw, size, size, kdf="paper").map.astype(np.int8)
    maps = {g: np.stack([np.stack([smap(pw) for pw in per_face]) for per_face in v], axis=1)  # [attempt, m, H, W]
            for g, v in variants.items()}
    xs = x[:m]
    stored_u8, by = model.protect_all(xs, ys, maps["right"][0], batch)
    stored = images.to_unit(stored_u8)
    spoof_src = images.to_unit(u8(ys))  # a spoofer feeds the 8-bit pre-obfuscated image
    attempts = [(g, j, maps[g][j], stored) for g in maps for j in range(maps[g].shape[0])]
    attempts.append(("spoof", 0, maps["right"][0], spoof_src))
    acc = {(g, j): collections.defaultdict(list) for g, j, _, _ in attempts}
    pics = {"x": u8(xs[:keep]), "y": u8(ys[:keep]), "stored": stored_u8[:keep], "byproduct": u8(by[:keep])}
    for s, e in chunks(m, batch):
        kk = e - s
        X = scorer.prep(pad_to(xs[s:e], batch), True)
        Yp = scorer.prep(pad_to(ys[s:e], batch), True)
        for g, j, mp, src in attempts:
            rec, rby = model.recover(pad_to(src[s:e], batch), key_of(pad_to(mp[s:e], batch)))
            A = scorer.prep(rec, True)
            a = acc[g, j]
            for metric, v in scorer.compare(A, X).items():
                a[f"{metric}_x"].append(v[:kk])
            a["psnr_y"].append(scorer.compare(A, Yp)["psnr"][:kk])
            for kind, f in scorer.features(A).items():
                a[kind].append(f[:kk])
            if s == 0 and j == 0:
                pics[g] = u8(np.asarray(rec)[:keep])
                if g in ("right", "other_password"):
                    pics[f"rec_by_{g}"] = u8(np.asarray(rby)[:keep])
    out = {}
    for g in list(maps) + ["spoof"]:
        js = sorted(j for gg, j in acc if gg == g)
        stack = lambda key: np.stack([np.concatenate(acc[g, j][key]) for j in js])  # [attempt, m]
        px, py, sx = stack("psnr_x"), stack("psnr_y"), stack("ssim_x")
        failed = fails(model.mode, px, py, args.fail_psnr)
        w = np.unravel_index(np.argmax(px if model.mode == "randwr" else px - py), px.shape)
        right = maps["right"][0]
        agree = np.mean([np.mean((maps[g][j] if g != "spoof" else right) == right) for j in js])
        d = {"attempts": int(px.size), "faces": m, "per_face": len(js),
             "fail_fraction": float(failed.mean()), "fail_rule": fail_rule(model.mode, args.fail_psnr),
             "psnr_x_mean": float(px.mean()), "psnr_x_max": float(px.max()),
             "ssim_x_mean": float(sx.mean()), "ssim_x_max": float(sx.max()),
             "psnr_y_mean": float(py.mean()), "map_bits_agreeing": float(agree),
             "worst": {"face": int(w[1]), "attempt": int(w[0]), "obfuscator": obf_of[int(w[1])],
                       "psnr_x": float(px[w]), "psnr_y": float(py[w]), "ssim_x": float(sx[w]),
                       "failed": bool(failed[w])}}
        if acc[g, js[0]]["lpips_x"]:
            lx = stack("lpips_x")
            d.update(lpips_x_mean=float(lx.mean()), lpips_x_min=float(lx.min()))
            d["worst"]["lpips_x"] = float(lx[w])
        faces_idx = np.tile(np.arange(m), len(js))
        d["reid"] = {kind: attacks.match(kind, np.concatenate([np.concatenate(acc[g, j][kind]) for j in js]),
                                         gallery[kind], faces_idx) for kind in scorer.kinds}
        out[g] = d
    return out, pics


# --------------------------------------------------------------------------- section 5


PERTURBATIONS = {
    "none": "8-bit PNG, unchanged",
    "jpeg95": "JPEG quality 95",
    "jpeg90": "JPEG quality 90",
    "jpeg75": "JPEG quality 75",
    "resize0.9": "resize to 90% and back (bicubic)",
    "resize1.1": "resize to 110% and back (bicubic)",
    "noise1": "uniform noise in {−1, 0, +1} levels",
}


def perturb(u8_images: np.ndarray, kind: str, seed: int) -> np.ndarray:
    from PIL import Image

    if kind == "none":
        return u8_images.copy()
    if kind.startswith("jpeg"):
        q = int(kind[4:])
        out = []
        for im in u8_images:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=q)
            buf.seek(0)
            out.append(np.asarray(Image.open(buf).convert("RGB"), np.uint8))
        return np.stack(out)
    if kind.startswith("resize"):
        f = float(kind[6:])
        h, w = u8_images.shape[1:3]
        hh, ww = max(2, int(round(h * f))), max(2, int(round(w * f)))
        return np.stack([images.resize(images.resize(im, (hh, ww)), (h, w)) for im in u8_images])
    if kind == "noise1":
        g = np.random.default_rng([seed, 5])
        noise = g.integers(-1, 2, u8_images.shape)
        return np.clip(u8_images.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown perturbation {kind!r}")


# --------------------------------------------------------------------------- figures


def _font(size: int = 11):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def labelled_grid(rows: list[list[np.ndarray]], col_labels: list[str], row_labels: list[str] | None = None,
                  min_cell: int = 96, pad: int = 3) -> np.ndarray:
    """uint8 image: cells (upscaled by an integer factor to at least min_cell px) under text headers."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[:2]
    f = max(1, math.ceil(min_cell / h))
    ch, cw = h * f, w * f
    font = _font()
    lines = max(lab.count("\n") + 1 for lab in col_labels)
    head = 13 * lines + 4
    left = 0 if not row_labels else 8 + 7 * max(len(r) for r in row_labels)
    ncol = max(len(r) for r in rows)
    W = left + ncol * (cw + pad) + pad
    H = head + len(rows) * (ch + pad) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, lab in enumerate(col_labels):
        draw.multiline_text((left + pad + j * (cw + pad) + 2, 2), lab, fill=(0, 0, 0), font=font, spacing=1)
    for i, row in enumerate(rows):
        y0 = head + pad + i * (ch + pad)
        if row_labels:
            draw.text((4, y0 + ch // 2 - 6), row_labels[i], fill=(0, 0, 0), font=font)
        for j, im in enumerate(row):
            big = np.repeat(np.repeat(np.asarray(im, np.uint8), f, axis=0), f, axis=1)
            canvas.paste(Image.fromarray(big), (left + pad + j * (cw + pad), y0))
    return np.asarray(canvas)


# --------------------------------------------------------------------------- report


def fmt(v, metric: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return {"psnr": f"{v:.2f}", "ssim": f"{v:.3f}", "lpips": f"{v:.4f}"}.get(metric, f"{v:.3f}")


def _cells(d: dict | None, lpips_on: bool) -> list[str]:
    return [fmt(None if d is None else d.get(m), m) if (m != "lpips" or lpips_on) else "off" for m in METRICS]


def _paper_cells(table: str, mode: str, row: str) -> list[str]:
    ref = PAPER[table][mode].get(row)
    out = []
    for ds in ("LFW", "CelebA"):
        out += [fmt(v, m) for v, m in zip(ref[ds], METRICS)] if ref else ["–"] * 3
    return out


def paper_table(R: dict, table: str, group_of, title: str, arrows: str, models, lpips_on) -> list[str]:
    """One of Tables I–III: rows = checkpoint × (Avg., obfuscators), columns = ours (8-bit, float) and the paper."""
    a = arrows.split()
    head = (f"| Method | 8-bit PSNR {a[0]} | SSIM {a[1]} | LPIPS {a[2]} | float PSNR {a[0]} | SSIM {a[1]} | LPIPS {a[2]} "
            f"| paper LFW PSNR | SSIM | LPIPS | paper CelebA PSNR | SSIM | LPIPS |")
    lines = [title, "", head, "|" + "---|" * 13]
    for label, mode in models:
        g = group_of(mode)
        t = R["tables"][label]
        for obf in ["avg"] + [o for o in t["8bit"] if o != "avg"]:
            row = "Avg." if obf == "avg" else PAPER_OBF.get(obf, obf)
            name = f"{label} — {mode_name(mode)} ({'Avg.' if obf == 'avg' else obfuscators.LABELS.get(obf, obf)})"
            cells = _cells(t["8bit"][obf].get(g), lpips_on) + _cells(t["float"][obf].get(g), lpips_on)
            cells += _paper_cells(table, mode, row)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def mode_name(mode: str) -> str:
    return {"randwr": "RandWR", "obfswr": "ObfsWR"}.get(mode, mode)


def write_report(R: dict, out: Path) -> str:
    meta = R["meta"]
    lpips_on = meta["lpips"]
    models = [(label, R["checkpoints"][label]["mode"]) for label in R["checkpoints"]]
    L: list[str] = []
    add = L.append
    add("# PRO-Face S evaluation")
    add("")
    add(f"Data: `{meta['data']}`, test split, **{meta['n_faces']} faces** (fixed sample, seed {meta['seed']}) at "
        f"{meta['size']}×{meta['size']}; obfuscators ({meta['preset']}, eval setting): "
        f"{', '.join(meta['obfuscators'])}; swap donors: {meta['donors']} faces of the validation split. "
        f"Device: {meta['device']}. {'Quick run (`--quick`): small samples, few attack steps. ' if meta['quick'] else ''}"
        f"LPIPS: {'on' if lpips_on else 'off (`--no-lpips`)'}. Written {meta['date']}.")
    add("")
    add("| checkpoint | mode | path | model id | blocks N | parameters | notes |")
    add("|---|---|---|---|---|---|---|")
    for label, c in R["checkpoints"].items():
        note = "untrained" if c["meta"].get("untrained") else ", ".join(
            f"{k}={v}" for k, v in c["meta"].items() if isinstance(v, (int, float, str)) and len(str(v)) < 30)[:120]
        add(f"| {label} | {mode_name(c['mode'])} | `{c['path']}` | {c['model_id']} | {c['config']['num_blocks']} | "
            f"{c['parameters']:,} | {note} |")
    add("")
    add("Scoring: **8-bit** = the protected image ŷ is stored as an 8-bit PNG before recovery and every output is "
        "quantised to 8 bits before scoring (what a user gets); **float** = ŷ fed to recovery as floats, outputs "
        "scored as clamped floats. Images are clamped to the valid range, never renormalised; LPIPS-VGG sees [-1, 1]. "
        f"Per-image PSNR is capped at {PSNR_CAP:g} dB (identical images). Keys: a fresh seeded ±1 map per face "
        "(right key) and an independent one (wrong key). Avg. = mean over obfuscators. The paper's rows (LFW, CelebA, "
        "Tables I–III) are quoted beside ours; our swap row is a classical face swap and is compared with the paper's "
        "FaceShifter (FS) row, template with SimSwap (SS). The paper's numbers were measured on other data at "
        "112×112; ours on UTKFace.")
    add("")

    # ---- 1
    add("## 1. Tables I–III: protection, correct recovery, wrong recovery")
    add("")
    L += paper_table(R, "privacy", lambda m: "privacy",
                     "### Table I analogue — relative privacy: protected ŷ vs pre-obfuscated y", "↑ ↑ ↓", models, lpips_on)
    add("")
    L += paper_table(R, "recovery", lambda m: "recovery",
                     "### Table II analogue — correct recovery: x̌ (right key) vs original x", "↑ ↑ ↓", models, lpips_on)
    add("")
    rand = [mm for mm in models if mm[1] == "randwr"]
    obfs = [mm for mm in models if mm[1] == "obfswr"]
    if rand:
        L += paper_table(R, "wrong", lambda m: "wrong_vs_x",
                         "### Table III analogue (RandWR) — wrong recovery ẍ (wrong key) vs original x: lower is better",
                         "↓ ↓ ↑", rand, lpips_on)
        add("")
    if obfs:
        L += paper_table(R, "wrong", lambda m: "wrong_vs_y",
                         "### Table III analogue (ObfsWR) — wrong recovery ẍ (wrong key) vs pre-obfuscated y: higher is better",
                         "↑ ↑ ↓", obfs, lpips_on)
        add("")
    add("The other reference, for every model (8-bit, Avg.): how close the wrong recovery ẍ is to x and to y.")
    add("")
    add("| Method | ẍ vs x PSNR | SSIM | LPIPS | ẍ vs y PSNR | SSIM | LPIPS |")
    add("|---|---|---|---|---|---|---|")
    for label, mode in models:
        a = R["tables"][label]["8bit"]["avg"]
        add(f"| {label} | " + " | ".join(_cells(a.get("wrong_vs_x"), lpips_on) + _cells(a.get("wrong_vs_y"), lpips_on)) + " |")
    add("")

    # ---- 2
    add("## 2. Security analysis")
    add("")
    add(f"### 2a. Malicious recovery attempts (passwords → maps with the `paper` KDF)")
    add("")
    s0 = next(iter(R["security"].values()))
    add(f"{s0['right']['faces']} faces (obfuscators in turn), each protected with its own random 12-character "
        f"password; {s0['one_bit']['per_face']} passwords one bit away (a flipped bit of the UTF-8 bytes), "
        f"{s0['one_char']['per_face']} one character away and {s0['other_password']['per_face']} unrelated ones per "
        "face, and the spoofing attack (recover fed the 8-bit pre-obfuscated y instead of ŷ, right password). "
        f"An attempt **fails** (the privacy goal) when: RandWR — PSNR to x < {meta['fail_psnr']:g} dB; ObfsWR — it is "
        "closer to y than to x (PSNR to y > PSNR to x). For the right password, the fail fraction should be 0. "
        "Worst = the attempt closest to x (RandWR: highest PSNR to x; ObfsWR: highest PSNR to x minus PSNR to y). "
        "Scores from 8-bit images. Re-id: thumbnail top-1 of the attempts against all "
        f"{meta['n_faces']} test originals (chance {1 / meta['n_faces']:.3f}).")
    add("")
    add("| Model | attempt | tries | failed | PSNR→x mean / max | SSIM→x mean / max | LPIPS→x mean / min | "
        "PSNR→y mean | map bits = right | re-id top-1 | worst case |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, mode in models:
        for g in ("right", "one_bit", "one_char", "other_password", "spoof"):
            d = R["security"][label][g]
            w = d["worst"]
            lp = (f"{fmt(d.get('lpips_x_mean'), 'lpips')} / {fmt(d.get('lpips_x_min'), 'lpips')}" if lpips_on else "off")
            name = {"right": "right password", "one_bit": "1 bit away", "one_char": "1 char away",
                    "other_password": "unrelated password", "spoof": "spoofing: recover(y)"}[g]
            add(f"| {label} | {name} | {d['attempts']} | {d['fail_fraction']:.1%} | "
                f"{fmt(d['psnr_x_mean'], 'psnr')} / {fmt(d['psnr_x_max'], 'psnr')} | "
                f"{fmt(d['ssim_x_mean'], 'ssim')} / {fmt(d['ssim_x_max'], 'ssim')} | {lp} | "
                f"{fmt(d['psnr_y_mean'], 'psnr')} | {d['map_bits_agreeing']:.3f} | "
                f"{d['reid']['thumbnail']['top1']:.3f} | face {w['face']} ({w['obfuscator']}): "
                f"{fmt(w['psnr_x'], 'psnr')} dB to x, {fmt(w['psnr_y'], 'psnr')} dB to y |")
    add("")
    add("### 2b. Byproducts: how much of x they reveal")
    add("")
    add("x̂ = protection byproduct (discarded by design), y̌ = recovery byproduct (right key), and the byproduct of a "
        "wrong-key recovery; each scored against the original x (8-bit, Avg. over obfuscators) and attacked with the "
        f"re-identification matchers (gallery {meta['n_faces']}, chance top-1 {1 / meta['n_faces']:.3f}). "
        "For reference: the pre-obfuscated y vs x.")
    add("")
    add("| Model | byproduct | PSNR→x | SSIM→x | LPIPS→x | thumbnail top-1 | deep top-1 |")
    add("|---|---|---|---|---|---|---|")
    for label, mode in models:
        for b in ("byproduct_protect", "byproduct_recover", "byproduct_wrong", "pre_obfuscated"):
            sc = R["security"][label]["byproducts"][b]
            at = R["attacks"][label]["avg"].get(b, {})
            add(f"| {label} | {PROBE_LABEL[b]} | " + " | ".join(_cells(sc, lpips_on)) + " | "
                f"{fmt(at.get('thumbnail', {}).get('top1'), 'ssim')} | {fmt(at.get('deep', {}).get('top1'), 'ssim')} |")
    add("")
    add(f"Pictures: [Fig. 9 analogue]({R['figures']['fig9']}).")
    add("")

    # ---- 3
    add("## 3. Re-identification attacks")
    add("")
    n = meta["n_faces"]
    add(f"Each probe is matched to its own original among the gallery of all {n} test originals. "
        "Thumbnail: 16×16 grayscale, clamped, mean-removed, |correlation|. Deep: LPIPS-VGG16 activations, unit-normalised "
        "per position, averaged over positions, per-layer L2-normalised, cosine similarity"
        f"{'' if lpips_on else ' (off: needs the LPIPS weights)'}. Ties count against the attacker. "
        f"Chance: top-1 {1 / n:.3f}, top-5 {min(1, 5 / n):.3f}. Averages over obfuscators; y (pre-obfuscated) is the "
        "baseline the paper assumes privacy-free: an ObfsWR wrong recovery should re-identify no better than y.")
    add("")
    add("| Model | probe | thumbnail top-1 | top-5 | deep top-1 | top-5 |")
    add("|---|---|---|---|---|---|")
    for label, mode in models:
        av = R["attacks"][label]["avg"]
        for p in av:
            t, dp = av[p].get("thumbnail", {}), av[p].get("deep", {})
            add(f"| {label} | {PROBE_LABEL.get(p, p)} | {fmt(t.get('top1'), 'ssim')} | {fmt(t.get('top5'), 'ssim')} | "
                f"{fmt(dp.get('top1'), 'ssim')} | {fmt(dp.get('top5'), 'ssim')} |")
    add("")
    obf_names = meta["obfuscators"]
    add("Per obfuscator (thumbnail top-1 / deep top-1):")
    add("")
    add("| Model | probe | " + " | ".join(obfuscators.LABELS.get(o, o) for o in obf_names) + " |")
    add("|---|---|" + "---|" * len(obf_names))
    for label, mode in models:
        A = R["attacks"][label]
        for p in A["avg"]:
            cells = []
            for o in obf_names:
                d = A["per_obfuscator"].get(o, {}).get(p, {})
                cells.append(f"{fmt(d.get('thumbnail', {}).get('top1'), 'ssim')} / {fmt(d.get('deep', {}).get('top1'), 'ssim')}")
            add(f"| {label} | {PROBE_LABEL.get(p, p)} | " + " | ".join(cells) + " |")
    add("")
    for label, mode in models:
        av = R["attacks"][label]["avg"]
        if mode == "obfswr" and "pre_obfuscated" in av:
            for kind in av["wrong_recovery"]:
                a, b = av["wrong_recovery"][kind]["top1"], av["pre_obfuscated"][kind]["top1"]
                verdict = "no better than y" if a <= b + 2 * math.sqrt(max(b * (1 - b), 1 / n) / n) else "BETTER than y (leak)"
                add(f"- {label}, {kind}: ẍ top-1 {a:.3f} vs y top-1 {b:.3f} → {verdict} (2σ binomial tolerance).")
    add("")

    # ---- 4
    K = R["keyless"]
    add("## 4. Keyless attacker")
    add("")
    add(f"An attacker with the model and {K['train_pairs']} pairs (x, 8-bit ŷ) from the train split (obfuscators in "
        f"turn, random keys) but no password trains a small U-Net (width {K['width']}, {K['steps']} Adam steps, batch "
        f"{K['batch']}, L1) to map ŷ → x; evaluated on the {n} test faces (8-bit, Avg. over obfuscators). Compared "
        "with recovering with a random key (ẍ vs x), with ŷ itself, and with the same network trained on y → x "
        "(what the pre-obfuscation alone leaks).")
    add("")
    add("| Model | estimate of x | PSNR→x | SSIM→x | LPIPS→x | thumbnail top-1 | deep top-1 |")
    add("|---|---|---|---|---|---|---|")
    for label, mode in models:
        km = K["models"][label]
        for what, name in (("attacker", "attacker(ŷ)"), ("random_key", "recover(ŷ, random key)"),
                           ("identity", "ŷ itself"), ("baseline", "y→x network on y"), ("pre_obfuscated", "y itself")):
            d = km["avg"][what]
            add(f"| {label} | {name} | " + " | ".join(_cells(d, lpips_on)) + " | "
                f"{fmt(d.get('thumbnail_top1'), 'ssim')} | {fmt(d.get('deep_top1'), 'ssim')} |")
    add("")
    add(f"Pictures: [attacker outputs]({R['figures']['keyless']}).")
    add("")

    # ---- 5
    add("## 5. Robustness of recovery")
    add("")
    add(f"The stored 8-bit ŷ is altered, then recovered with the right key; x̌ vs x (8-bit, Avg. over obfuscators, "
        f"{R['robustness_faces']} faces). 'ŷ′ vs ŷ' says how much the alteration changed the protected image.")
    add("")
    add("| Model | alteration | ŷ′ vs ŷ PSNR | x̌ PSNR→x | SSIM→x | LPIPS→x |")
    add("|---|---|---|---|---|---|")
    for label, mode in models:
        for kind, desc in PERTURBATIONS.items():
            d = R["robustness"][label][kind]["avg"]
            add(f"| {label} | {desc} | {fmt(d.get('input_psnr'), 'psnr')} | " + " | ".join(_cells(d, lpips_on)) + " |")
    add("")
    add(f"Pictures: [recoveries after alterations]({R['figures']['robustness']}).")
    add("")

    # ---- 6
    add("## 6. Figures")
    add("")
    add("Fig. 5 analogue — per obfuscator: original x, pre-obfuscated y, then for each checkpoint protected ŷ, "
        "correct recovery x̌, wrong-key recovery ẍ:")
    add("")
    add(f"![Fig. 5 analogue]({R['figures']['fig5']})")
    add("")
    add("Fig. 9 analogue — malicious recovery attempts and byproducts (x, y; per checkpoint: ŷ, right password, "
        "1 bit away, 1 char away, unrelated password, recover(y), x̂, y̌, wrong-key byproduct):")
    add("")
    add(f"![Fig. 9 analogue]({R['figures']['fig9']})")
    add("")
    add(f"![Robustness]({R['figures']['robustness']})")
    add("")
    add(f"![Keyless attacker]({R['figures']['keyless']})")
    add("")
    add("## Timings")
    add("")
    add("| section | wall s |")
    add("|---|---|")
    for k, v in R["timings"].items():
        add(f"| {k} | {v:.1f} |")
    add("")
    text = "\n".join(L)
    (out / "report.md").write_text(text)
    return text


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m experiments.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", action="append", required=True, help="a .pfj file (repeat for side by side)")
    ap.add_argument("--label", action="append", help="a label per checkpoint (default: file name and mode)")
    ap.add_argument("--data", required=True, help="folder:PATH or tfds:NAME")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, help="test faces (default 1000; quick 8)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny samples and few attack steps")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--preset", default="paper112")
    ap.add_argument("--obfuscators", default=",".join(DEFAULT_OBFUSCATORS))
    ap.add_argument("--template-dir", help="precomputed obfuscations (adds 'template')")
    ap.add_argument("--donor-limit", type=int, help="swap donors from the validation split")
    ap.add_argument("--no-lpips", action="store_true", help="skip LPIPS and the deep-feature matcher")
    ap.add_argument("--security-n", type=int, help="faces in the password/spoofing analysis")
    ap.add_argument("--neighbours", type=int, help="passwords 1 bit / 1 char away (each) per face")
    ap.add_argument("--fail-psnr", type=float, default=20.0, help="RandWR: an attempt fails below this PSNR to x")
    ap.add_argument("--attack-train", type=int, help="(x, ŷ) pairs of the train split for the keyless attacker")
    ap.add_argument("--attack-steps", type=int)
    ap.add_argument("--attack-batch", type=int, default=16)
    ap.add_argument("--attack-width", type=int)
    ap.add_argument("--attack-lr", type=float, default=1e-3)
    ap.add_argument("--robust-n", type=int, help="faces per obfuscator in the robustness table (default: all)")
    ap.add_argument("--keep", type=int, help="faces shown per figure")
    args = ap.parse_args(argv)
    base = QUICK if args.quick else FULL
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.label and len(args.label) != len(args.checkpoint):
        ap.error("--label must be given once per --checkpoint")
    if args.size % 4 or args.size < 16:
        ap.error("--size must be a multiple of 4 and at least 16")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    T = Sections()
    t_all = time.perf_counter()
    data = resolve_data(args.data)
    size, batch = args.size, args.batch
    device = f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind} ({os.cpu_count()} CPU cores)"
    print(f"[evaluate] device {device}; jax {jax.__version__}", flush=True)

    with T("setup (faces, obfuscations, keys)"):
        lp = None
        if not args.no_lpips:
            from proface_jax.lpips import load_params
            lp = load_params()
        cks = []
        for p in args.checkpoint:
            try:
                cks.append(ckpt_lib.load_checkpoint(p))
            except ckpt_lib.CheckpointError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        labels = args.label or unique_labels([c.path for c in cks], [c.mode for c in cks])
        models = [Model(c, lab) for c, lab in zip(cks, labels)]
        x_u8, names = load_faces(data, "test", args.n, args.seed, size)
        x = images.to_unit(x_u8)
        n = len(x)
        try:
            donors, _ = load_faces(data, "validation", args.donor_limit, args.seed, size)
        except ValueError as e:
            print(f"[evaluate] no donors: {e}", flush=True)
            donors = None
        wanted = [s.strip() for s in args.obfuscators.split(",") if s.strip()]
        if args.template_dir and "template" not in wanted:
            wanted.append("template")
        obfs = build_obfuscators(wanted, args.preset, donors, args.template_dir)
        obf_names = list(obfs)
        Y, MAPS = {}, {}
        for i, name in enumerate(obf_names):
            Y[name] = obfuscate(obfs[name], name, args.preset, jax.random.fold_in(jax.random.key(args.seed), 1000 + i),
                                x, names, batch)
            MAPS[name] = (random_maps(args.seed, 2 * i, n, size), random_maps(args.seed, 2 * i + 1, n, size))
        scorer = Scorer(lp)
        gallery = features_all(scorer, x, batch)
        print(f"[evaluate] {n} test faces, {len(donors) if donors is not None else 0} donors, obfuscators "
              f"{obf_names}, checkpoints {labels}", flush=True)

    R: dict[str, Any] = {
        "meta": {"data": data, "split": "test", "n_faces": n, "n_requested": args.n, "size": size, "seed": args.seed,
                 "quick": args.quick, "preset": args.preset, "obfuscators": obf_names,
                 "donors": 0 if donors is None else int(len(donors)), "lpips": lp is not None,
                 "device": device, "jax": jax.__version__, "python": platform.python_version(),
                 "date": datetime.datetime.now().isoformat(timespec="seconds"), "batch": batch,
                 "psnr_cap_db": PSNR_CAP, "fail_psnr": args.fail_psnr, "argv": sys.argv[1:] if argv is None else list(argv),
                 "faces": [str(nm) for nm in names]},
        "paper": PAPER,
        "checkpoints": {m.label: {"path": m.ck.path, "mode": m.mode, "model_id": m.ck.model_id,
                                  "config": m.cfg.to_dict(), "meta": m.ck.meta,
                                  "parameters": flow.param_count(m.ck.params)} for m in models},
        "tables": {}, "security": {}, "attacks": {}, "keyless": {}, "robustness": {}, "figures": {},
    }
    STORED: dict[tuple[str, str], np.ndarray] = {}
    SAMPLES: dict[tuple[str, str], dict] = {}
    PROBE_FEATS: dict[tuple[str, str], dict] = {}
    BYPRODUCT_SCORES: dict[str, dict] = {}

    # ---------------------------------------------------------------- 1
    with T("1. Tables I-III"):
        for m in models:
            per_obf = {}
            for name in obf_names:
                sc, feats, stored, samples = main_pass(m, x, Y[name], *MAPS[name], scorer, batch, args.keep)
                per_obf[name] = sc
                STORED[m.label, name], SAMPLES[m.label, name], PROBE_FEATS[m.label, name] = stored, samples, feats
            R["tables"][m.label] = tables_for(per_obf)
            BYPRODUCT_SCORES[m.label] = per_obf
            a = R["tables"][m.label]["8bit"]["avg"]
            print(f"[evaluate]   {m.label}: privacy {a['privacy']['psnr']:.2f} dB, recovery {a['recovery']['psnr']:.2f} dB, "
                  f"wrong vs x {a['wrong_vs_x']['psnr']:.2f} dB, vs y {a['wrong_vs_y']['psnr']:.2f} dB (8-bit)", flush=True)

    # ---------------------------------------------------------------- 2
    y_vs_x, y_feats = {}, {}
    for name in obf_names:
        sc, y_feats[name] = score_all(scorer, Y[name], x, batch, features=True)
        y_vs_x[name] = summary(sc)
    SEC_PICS = {}
    with T("2. security"):
        msec = min(args.security_n, n)
        obf_of = [obf_names[i % len(obf_names)] for i in range(msec)]
        ys = np.stack([Y[obf_of[i]][i] for i in range(msec)])
        for m in models:
            sec, pics = security_pass(m, x, ys, obf_of, scorer, gallery, args)
            SEC_PICS[m.label] = pics
            t8 = R["tables"][m.label]["8bit"]
            sec["byproducts"] = {b: t8["avg"][b] for b in ("byproduct_protect", "byproduct_recover", "byproduct_wrong")}
            sec["byproducts"]["pre_obfuscated"] = average(list(y_vs_x.values()))
            sec["byproducts_per_obfuscator"] = {
                o: {b: t8[o][b] for b in ("byproduct_protect", "byproduct_recover", "byproduct_wrong")}
                for o in obf_names}
            R["security"][m.label] = sec
            print(f"[evaluate]   {m.label}: 1-bit fail {sec['one_bit']['fail_fraction']:.1%}, 1-char fail "
                  f"{sec['one_char']['fail_fraction']:.1%}, spoof fail {sec['spoof']['fail_fraction']:.1%}", flush=True)

    # ---------------------------------------------------------------- 3
    with T("3. re-identification attacks"):
        for m in models:
            per = {}
            for name in obf_names:
                d = {p: {kind: attacks.match(kind, f, gallery[kind]) for kind, f in fs.items()}
                     for p, fs in PROBE_FEATS[m.label, name].items()}
                d["pre_obfuscated"] = {kind: attacks.match(kind, f, gallery[kind]) for kind, f in y_feats[name].items()}
                per[name] = d
            R["attacks"][m.label] = {"per_obfuscator": per, "avg": average(list(per.values()))}
        R["attacks"]["chance"] = {"top1": 1 / n, "top5": min(1.0, 5 / n), "gallery": n}
        for m in models:
            av = R["attacks"][m.label]["avg"]
            print(f"[evaluate]   {m.label}: thumbnail top-1 ẍ {av['wrong_recovery']['thumbnail']['top1']:.3f}, "
                  f"y {av['pre_obfuscated']['thumbnail']['top1']:.3f}, chance {1 / n:.3f}", flush=True)

    # ---------------------------------------------------------------- 4
    ATT_PICS = {}
    with T("4. keyless attacker"):
        xt_u8, tnames = load_faces(data, "train", args.attack_train, args.seed + 1, size)
        xt = images.to_unit(xt_u8)
        nt = len(xt)
        yt = np.empty_like(xt)
        for i, name in enumerate(obf_names):
            idx = np.arange(i, nt, len(obf_names))
            if len(idx):
                yt[idx] = obfuscate(obfs[name], name, args.preset, jax.random.fold_in(jax.random.key(args.seed), 2000 + i),
                                    xt[idx], [tnames[j] for j in idx], batch)
        maps_t = random_maps(args.seed, 10_000, nt, size)
        K_info = {"train_pairs": nt, "steps": args.attack_steps, "batch": args.attack_batch, "width": args.attack_width,
                  "lr": args.attack_lr, "models": {}}

        def eval_estimates(est_by_obf: dict) -> dict:
            per = {}
            for name, est in est_by_obf.items():
                sc, f = score_all(scorer, est, x, batch, features=True)
                d = summary(sc)
                for kind, ff in f.items():
                    r = attacks.match(kind, ff, gallery[kind])
                    d[f"{kind}_top1"], d[f"{kind}_top5"] = r["top1"], r["top5"]
                per[name] = d
            return {"per_obfuscator": per, "avg": average(list(per.values()))}

        base_att = attacks.train_attacker(images.to_unit(u8(yt)), xt, args.attack_steps, args.attack_batch,
                                          args.attack_lr, args.attack_width, args.seed)
        baseline = eval_estimates({name: base_att.apply(images.to_unit(u8(Y[name])), batch) for name in obf_names})
        pre = {}
        for name in obf_names:
            d = dict(y_vs_x[name])
            for kind in scorer.kinds:
                r = attacks.match(kind, y_feats[name][kind], gallery[kind])
                d[f"{kind}_top1"], d[f"{kind}_top5"] = r["top1"], r["top5"]
            pre[name] = d
        K_info["baseline_y_to_x"] = {"seconds": base_att.seconds, "loss_curve": base_att.losses, **baseline}
        for m in models:
            stored_t, _ = m.protect_all(xt, yt, maps_t, batch)
            att = attacks.train_attacker(images.to_unit(stored_t), xt, args.attack_steps, args.attack_batch,
                                         args.attack_lr, args.attack_width, args.seed)
            ests = {name: att.apply(images.to_unit(STORED[m.label, name]), batch) for name in obf_names}
            res = eval_estimates(ests)
            per = {}
            for name in obf_names:
                t8 = R["tables"][m.label]["8bit"][name]
                A = R["attacks"][m.label]["per_obfuscator"][name]
                rk = dict(t8["wrong_vs_x"])
                idn = summary(score_all(scorer, images.to_unit(STORED[m.label, name]), x, batch))
                for kind in scorer.kinds:
                    rk[f"{kind}_top1"] = A["wrong_recovery"][kind]["top1"]
                    idn[f"{kind}_top1"] = A["protected"][kind]["top1"]
                per[name] = {"attacker": res["per_obfuscator"][name], "random_key": rk, "identity": idn,
                             "baseline": baseline["per_obfuscator"][name], "pre_obfuscated": pre[name]}
                R["attacks"][m.label]["per_obfuscator"][name]["attacker"] = {
                    kind: {"top1": res["per_obfuscator"][name][f"{kind}_top1"],
                           "top5": res["per_obfuscator"][name][f"{kind}_top5"]} for kind in scorer.kinds}
                R["attacks"][m.label]["per_obfuscator"][name]["attacker_baseline"] = {
                    kind: {"top1": baseline["per_obfuscator"][name][f"{kind}_top1"],
                           "top5": baseline["per_obfuscator"][name][f"{kind}_top5"]} for kind in scorer.kinds}
            R["attacks"][m.label]["avg"] = average(list(R["attacks"][m.label]["per_obfuscator"].values()))
            K_info["models"][m.label] = {"seconds": att.seconds, "loss_curve": att.losses, "per_obfuscator": per,
                                         "avg": average(list(per.values()))}
            ATT_PICS[m.label] = {name: u8(ests[name][: args.keep]) for name in obf_names}
            a = K_info["models"][m.label]["avg"]
            print(f"[evaluate]   {m.label}: attacker {a['attacker']['psnr']:.2f} dB to x vs random key "
                  f"{a['random_key']['psnr']:.2f} dB (y→x network {a['baseline']['psnr']:.2f} dB); "
                  f"trained {att.seconds:.1f} s", flush=True)
        ATT_PICS["_baseline"] = {name: u8(base_att.apply(images.to_unit(u8(Y[name][: args.keep])), batch))
                                 for name in obf_names}
        R["keyless"] = K_info

    # ---------------------------------------------------------------- 5
    ROB_PICS = {}
    with T("5. robustness"):
        r = min(args.robust_n or n, n)
        R["robustness_faces"] = r
        for m in models:
            acc = {kind: {} for kind in PERTURBATIONS}
            ROB_PICS[m.label] = {}
            for i, name in enumerate(obf_names):
                st = STORED[m.label, name][:r]
                perts = {kind: perturb(st, kind, args.seed + i) for kind in PERTURBATIONS}
                per = {kind: collections.defaultdict(list) for kind in PERTURBATIONS}
                for s, e in chunks(r, batch):
                    X = scorer.prep(pad_to(x[s:e], batch), True)
                    Kb = key_of(pad_to(MAPS[name][0][s:e], batch))
                    for kind, pert in perts.items():
                        rec, _ = m.recover(pad_to(images.to_unit(pert[s:e]), batch), Kb)
                        for metric, v in scorer.compare(scorer.prep(rec, True), X).items():
                            per[kind][metric].append(v[: e - s])
                        if i == 0 and s == 0:
                            ROB_PICS[m.label][kind] = (pert[0], u8(np.asarray(rec)[0]))
                for kind, pert in perts.items():
                    d = mean_scores(per[kind])
                    d["input_psnr"] = float(np.mean(np.minimum(
                        np.asarray(metrics.psnr(images.to_unit(pert), images.to_unit(st))), PSNR_CAP)))
                    acc[kind][name] = d
            res = {kind: {"per_obfuscator": acc[kind], "avg": average(list(acc[kind].values()))} for kind in acc}
            R["robustness"][m.label] = res
            print(f"[evaluate]   {m.label}: recovery PSNR " + ", ".join(
                f"{k} {res[k]['avg']['psnr']:.1f}" for k in PERTURBATIONS), flush=True)

    # ---------------------------------------------------------------- 6
    with T("6. figures"):
        keep_n = min(args.keep, n)
        rows, rlabels = [], []
        for r_i, name in enumerate(obf_names):
            j = r_i % keep_n
            row = [x_u8[j], u8(Y[name][j])]
            for m in models:
                s = SAMPLES[m.label, name]
                row += [s["stored"][j], s["rec8"][j], s["wrong8"][j]]
            rows.append(row)
            rlabels.append(obfuscators.LABELS.get(name, name).split(",")[0])
        cols = ["original\nx", "pre-obf.\ny"]
        for m in models:
            cols += [f"{m.label[:18]}\nprotected", "\nrecovered", "\nwrong key"]
        images.save_png(out / "fig5_samples.png", labelled_grid(rows, cols, rlabels))

        msec = min(args.security_n, n)
        rows = []
        for j in range(min(args.keep, msec)):
            row = None
            for m in models:
                P = SEC_PICS[m.label]
                if row is None:
                    row = [P["x"][j], P["y"][j]]
                row += [P["stored"][j], P["right"][j], P["one_bit"][j], P["one_char"][j], P["other_password"][j],
                        P["spoof"][j], P["byproduct"][j], P["rec_by_right"][j], P["rec_by_other_password"][j]]
            rows.append(row)
        cols = ["x", "y"]
        for m in models:
            cols += [f"{m.label[:18]}\nprotected", "\nright pwd", "\n1 bit off", "\n1 char off", "\nother pwd",
                     "\nrecover(y)", "\nbyprod x^", "\nbyprod y (ok)", "\nbyprod (wrong)"]
        images.save_png(out / "fig9_security.png", labelled_grid(rows, cols))

        rows, rlabels = [], []
        for m in models:
            row = [x_u8[0]]
            for kind in PERTURBATIONS:
                row += [ROB_PICS[m.label][kind][0], ROB_PICS[m.label][kind][1]]
            rows.append(row)
            rlabels.append(m.label[:22])
        cols = ["x"]
        for kind in PERTURBATIONS:
            cols += [f"{kind}\naltered", "\nrecovered"]
        images.save_png(out / "robustness.png", labelled_grid(rows, cols, rlabels))

        rows = []
        for name in obf_names:
            for j in range(min(2, keep_n)):
                row = [x_u8[j], u8(Y[name][j]), ATT_PICS["_baseline"][name][j]]
                for m in models:
                    row += [SAMPLES[m.label, name]["stored"][j], ATT_PICS[m.label][name][j],
                            SAMPLES[m.label, name]["wrong8"][j]]
                rows.append(row)
        cols = ["x", "y", "y->x net"]
        for m in models:
            cols += [f"{m.label[:18]}\nprotected", "\nattacker", "\nrandom key"]
        images.save_png(out / "keyless_attacker.png", labelled_grid(rows, cols))
        R["figures"] = {"fig5": "fig5_samples.png", "fig9": "fig9_security.png", "robustness": "robustness.png",
                        "keyless": "keyless_attacker.png"}

    T.seconds["total"] = time.perf_counter() - t_all
    R["timings"] = dict(T.seconds)
    (out / "results.json").write_text(json.dumps(to_json(R), indent=1, allow_nan=False))
    write_report(R, out)
    print(f"[evaluate] wrote {out / 'results.json'} and {out / 'report.md'} ({T.seconds['total']:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

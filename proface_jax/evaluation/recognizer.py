"""A real face recognizer for identity-level privacy: dlib's ResNet (99.38 % on LFW), and the
statistics that turn its matches into verdicts against the pre-obfuscated face y.

Model: `dlib.face_recognition_model_v1` (dlib_face_recognition_resnet_model_v1.dat) on faces
aligned by `dlib.shape_predictor` with 5 landmarks (shape_predictor_5_face_landmarks.dat); both
files come with the PyPI package ``face-recognition-models`` (extra ``[privacy]``; weights are
installed with the package, never downloaded at run time). The package is located without
importing it (its ``__init__`` needs ``pkg_resources``).

Face box: the crops are already aligned faces, so no detector runs (a detector would fail on
exactly the obfuscated images we must score, and a fallback would make the box depend on the
content). Every image gets the same fixed box `BOX`, the median box of dlib's HOG face detector
on 57 of 60 UTKFace test-size crops (112×112): left 0.05, top 0.06, right 0.86, bottom 0.86 of
the side. The 5 landmarks are then found inside it and dlib cuts its own 150×150 aligned chip.

Descriptors: 128-d, compared by Euclidean distance (smaller = more similar). dlib's own rule
"same person below 0.6" is not used; verification thresholds come from impostor pairs
(`threshold_at_far`).

Statistics (`identify`, `verify`, `compare_to_baseline`): closed-set top-k identification
against a gallery of originals (ties count against the attacker, as in `attacks`); verification
rate at a false-accept rate; Wilson 95 % intervals; an exact one-sided McNemar test of a probe's
per-face hits against y's hits on the same faces. Verdict: "leaks" when the probe's hits exceed
y's with p < `ALPHA`, else "no more than y".
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

PACKAGE = "face_recognition_models"
EXTRA = "privacy"
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARK_FILE = "shape_predictor_5_face_landmarks.dat"
BOX = (0.05, 0.06, 0.86, 0.86)  # left, top, right, bottom as fractions of the side
ALPHA = 0.05
Z95 = 1.959963984540054


class RecognizerMissing(RuntimeError):
    """The recognizer's weights (PyPI package face-recognition-models) are not installed."""


def model_dir() -> Path:
    """The folder holding the two .dat files, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        d = Path(loc) / "models"
        if (d / RECOGNITION_FILE).is_file() and (d / LANDMARK_FILE).is_file():
            return d
    raise RecognizerMissing(
        f"the face recognizer needs dlib's models from the PyPI package face-recognition-models: "
        f"pip install 'proface-jax[{EXTRA}]' (or pip install face-recognition-models)"
        + (f"; found the package at {locations} but not {RECOGNITION_FILE} and {LANDMARK_FILE} in it" if locations else ""))


def available() -> bool:
    try:
        model_dir()
        return True
    except RecognizerMissing:
        return False


class Recognizer:
    """dlib ResNet descriptors of face crops (see the module doc for the box and alignment)."""

    def __init__(self, folder: str | Path | None = None):
        import dlib

        d = Path(folder) if folder is not None else model_dir()
        self.landmarks = dlib.shape_predictor(str(d / LANDMARK_FILE))
        self.net = dlib.face_recognition_model_v1(str(d / RECOGNITION_FILE))
        self._dlib = dlib

    def box(self, h: int, w: int):
        l, t, r, b = BOX
        return self._dlib.rectangle(int(round(l * w)), int(round(t * h)), int(round(r * w)) - 1, int(round(b * h)) - 1)

    def descriptors(self, imgs, progress=None) -> np.ndarray:
        """uint8 [N, H, W, 3] (or float in [-1, 1], quantised to 8 bits first) -> float32 [N, 128]."""
        imgs = np.asarray(imgs)
        if imgs.dtype != np.uint8:
            imgs = np.clip(np.rint((imgs.astype(np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
        out = np.empty((len(imgs), 128), np.float32)
        for i, img in enumerate(imgs):
            img = np.ascontiguousarray(img)
            shape = self.landmarks(img, self.box(*img.shape[:2]))
            out[i] = np.asarray(self.net.compute_face_descriptor(img, shape), np.float32)
            if progress is not None:
                progress(1)
        return out


# --------------------------------------------------------------------------- matching


def distances(probe, gallery) -> np.ndarray:
    """[P, 128] × [G, 128] -> [P, G] Euclidean distances."""
    p, g = np.asarray(probe, np.float64), np.asarray(gallery, np.float64)
    d2 = (p * p).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * p @ g.T
    return np.sqrt(np.maximum(d2, 0.0))


def identify(probe, gallery, true_index=None, ks=(1, 5)) -> dict:
    """Per-probe top-k hits (bool arrays) and rates; rank = other gallery faces at least as close."""
    d = distances(probe, gallery)
    true_index = np.arange(len(d)) if true_index is None else np.asarray(true_index, np.int64)
    own = d[np.arange(len(d)), true_index]
    rank = (d <= own[:, None]).sum(axis=1) - 1
    out = {"probes": int(len(d)), "gallery": int(d.shape[1]), "hits": {}}
    for k in ks:
        h = rank < k
        out["hits"][f"top{k}"] = h
        out[f"top{k}"] = float(h.mean()) if len(h) else float("nan")
        out[f"chance_top{k}"] = float(min(1.0, k / d.shape[1]))
    return out


def impostor_distances(feats) -> np.ndarray:
    """Distances of all unordered pairs of distinct faces (each taken to be a distinct person)."""
    d = distances(feats, feats)
    i, j = np.triu_indices(len(d), 1)
    return d[i, j]


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The largest threshold t with (impostor distances < t) / n ≤ far: accept a pair when d < t."""
    s = np.sort(np.asarray(impostor, np.float64))
    k = int(math.floor(far * len(s)))  # at most k impostors accepted
    if k >= len(s):
        return float(s[-1]) + 1e-9
    return float(s[k])


def verify(probe, reference, threshold: float) -> np.ndarray:
    """Per pair (probe i, reference i): accepted as the same person (distance < threshold)."""
    p, r = np.asarray(probe, np.float64), np.asarray(reference, np.float64)
    return np.linalg.norm(p - r, axis=1) < threshold


# --------------------------------------------------------------------------- statistics


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, c - h), min(1.0, c + h))


def mcnemar_greater(a_hits, b_hits) -> dict:
    """Exact one-sided McNemar test that a's per-face hit rate exceeds b's (paired on the same faces):
    b10 = a hits where b misses, b01 = the reverse; p = P(Binomial(b10 + b01, ½) ≥ b10)."""
    a, b = np.asarray(a_hits, bool), np.asarray(b_hits, bool)
    if a.shape != b.shape:
        raise ValueError(f"paired hits must have one shape, got {a.shape}, {b.shape}")
    b10, b01 = int((a & ~b).sum()), int((~a & b).sum())
    n = b10 + b01
    p = sum(math.comb(n, i) for i in range(b10, n + 1)) / 2.0 ** n if n else 1.0
    return {"a_only": b10, "b_only": b01, "p": float(p)}


def verdict(probe_hits, base_hits, alpha: float = ALPHA) -> str:
    """'leaks' when the probe identifies significantly more faces than the baseline y, else 'no more than y'."""
    t = mcnemar_greater(probe_hits, base_hits)
    return "leaks" if t["p"] < alpha else "no more than y"


def rate(hits) -> dict:
    """Rate with its Wilson 95 % interval."""
    h = np.asarray(hits, bool)
    lo, hi = wilson(int(h.sum()), int(h.size))
    return {"rate": float(h.mean()) if h.size else float("nan"), "ci95": [lo, hi], "n": int(h.size)}


def compare_to_baseline(probe_hits: dict, base_hits: dict) -> dict:
    """For each measure (top1, top5, verify): the probe's rate and CI, y's, McNemar against y, verdict."""
    out = {}
    for k, h in probe_hits.items():
        t = mcnemar_greater(h, base_hits[k])
        out[k] = {**rate(h), "baseline": rate(base_hits[k]), "mcnemar": t,
                  "verdict": "leaks" if t["p"] < ALPHA else "no more than y"}
    return out

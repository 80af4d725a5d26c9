"""Find the faces in a whole photo: boxes to protect in place.

    boxes = detect_faces(image_u8)            # [(x, y, w, h), ...] ints, pixels

Four detectors, all offline (no model is downloaded at run time):

  haar       OpenCV's Viola-Jones cascade haarcascade_frontalface_default.xml
             (ships with opencv-python-headless, a core dependency).
  dlib_hog   dlib's HOG + linear SVM frontal detector (built into `dlib-bin`).
  dlib_cnn   dlib's CNN (MMOD) detector, mmod_human_face_detector.dat from
             `face-recognition-models` (no dependencies; its __init__ imports
             setuptools' pkg_resources, so the file is located without importing it).
  blazeface  MediaPipe's BlazeFace full-range model (ships in the `mediapipe`
             wheel; mediapipe 0.10.14 pins protobuf<5 and opencv-contrib-python,
             which clash with this project's dependencies: use a separate venv).

Which box each detector returns, and how it is normalised
----------------------------------------------------------
Every box is mapped to the square an aligned UTKFace crop shows — the face
from the top of the forehead to the chin, ears at the edges: the framing the
model is trained on, so a box can be cut out, resized and protected as is.
A raw box (x, y, w, h) becomes the square centred at its centre plus
(dx·w, dy·h), with side scale·sqrt(w·h). Measured on 300 UTKFace *validation*
faces (80 for dlib_cnn), upright, 120-240 px, in a grey canvas (medians;
`python -m benchmarks.bench_face_detectors --calibrate`; the benchmark then
scores on the *test* split):

  detector   raw box (all square)                            dx      dy     scale
  haar       about the crop's size, 8 % of a side too high   0.008   0.081  0.976
  dlib_hog   eyebrows to chin: 12 % smaller, centred         0.004   0.007  1.135
  dlib_cnn   13 % smaller, 9 % too high, 4 % to the left     0.039   0.091  1.146
  blazeface  about the crop's size, 3 % too high             0.005   0.027  1.012

(dx, dy > 0: the crop's centre is right of / below the raw box's centre.)
Half the faces' scales lie within about ±5-7 % of the median (interquartile
range haar 0.925-1.024, dlib_hog 1.063-1.227, blazeface 0.977-1.044).

Small faces: Haar scans 24 px windows; the dlib detectors see faces down to
their window (HOG 80 px, CNN 40 px) and need the image enlarged for smaller
ones: it is scaled by window / (smallest raw face that `min_size` asks for),
at most 4x, which costs less than dlib's own 2x upsampling steps. BlazeFace
(full-range) sees the whole image at 192x192, so it misses small faces in
big photos.

After normalisation: overlapping duplicates are merged (greedy NMS by score:
a box goes if IoU > 0.3 with a kept one, or if 70 % of the smaller box lies
in it), boxes are clipped to the image (so a face at an edge gives a
non-square box), boxes whose clipped width or height is under `min_size`
are dropped, and the rest are sorted left-to-right, then top-to-bottom.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np

from proface_jax.errors import ProfaceError

DETECTORS: tuple[str, ...] = ("haar", "dlib_hog", "dlib_cnn", "blazeface", "dlib_hog+haar")
# dlib's HOG detector (needs `dlib-bin`). benchmarks/bench_face_detectors.py, seed 0, min_size 40:
# 60 composites / 232 UTKFace test faces: haar 89.7 % found, 0.47 false positives per photo;
# dlib_hog 92.2 %, 0.03; blazeface 60.8 %, 0 (misses faces under 80 px). Same speed class as
# Haar (~1.1 s/MP on a shared 2-core machine). dlib_cnn found all 75 faces of the first 20
# photos with no false positive but costs ~29 s/MP: the thorough choice, not the default.
#
# The default runs both dlib_hog and haar and merges their boxes (dlib_hog's first): a missed face
# stays unprotected, a false box only protects a patch of background (reversibly). Same 60 photos
# (/tmp/union.py in the session that chose it, detectors as above): found 96.5 % (≥ 80 px: 96.6 %),
# 0.35 false positives per photo, against dlib_hog 91.3 % / 92.5 % / 0.03 and haar 89.2 % / 89.1 % / 0.32.
DEFAULT_DETECTOR: str = "dlib_hog+haar"

# What to install for each detector (named in the ProfaceError when it is missing).
_INSTALL = {
    "haar": "pip install opencv-python-headless==4.10.0.84",
    "dlib_hog": "pip install dlib-bin",
    "dlib_cnn": "pip install dlib-bin face-recognition-models",
    "blazeface": "pip install mediapipe==0.10.14 (in its own environment: it pins protobuf<5)",
}

# Raw box -> aligned-crop square: (dx, dy, scale), see the module docstring.
_NORMALISE: dict[str, tuple[float, float, float]] = {
    "haar": (0.008, 0.081, 0.976),
    "dlib_hog": (0.004, 0.007, 1.135),
    "dlib_cnn": (0.039, 0.091, 1.146),
    "blazeface": (0.005, 0.027, 1.012),
}

# Smallest raw face each detector sees without upsampling (its scanning window, px).
_WINDOW = {"haar": 24, "dlib_hog": 80, "dlib_cnn": 40, "blazeface": 0}

_MODELS: dict[str, Any] = {}  # lazily loaded detectors, by name


# --------------------------------------------------------------------------- availability


def _module(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or fails to load (ABI, missing shared library)
        return None


def _model_file(name: str) -> Path | None:
    """The model file a detector needs, located without importing its package."""
    if name == "haar":
        cv2 = _module("cv2")
        if cv2 is None:
            return None
        return Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if name == "dlib_cnn":
        # face_recognition_models/__init__ imports pkg_resources (setuptools): find the file directly.
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / "models" / "mmod_human_face_detector.dat"
    if name == "blazeface":
        spec = importlib.util.find_spec("mediapipe")
        if spec is None or not spec.submodule_search_locations:
            return None
        root = Path(list(spec.submodule_search_locations)[0])
        return root / "modules" / "face_detection" / "face_detection_full_range_sparse.tflite"
    return None


def _package(name: str) -> str:
    return {"haar": "cv2", "dlib_hog": "dlib", "dlib_cnn": "dlib", "blazeface": "mediapipe"}[name]


def _parts(name: str) -> list[str]:
    return name.split("+")


def available(name: str) -> bool:
    """Whether detector `name` can run here: its package imports and its model file is present."""
    if "+" in name and name in DETECTORS:
        return all(available(p) for p in _parts(name))
    if name not in DETECTORS:
        return False
    if name in _MODELS:
        return True
    if _module(_package(name)) is None:
        return False
    f = _model_file(name)
    return name == "dlib_hog" or (f is not None and f.is_file())


def _check_name(detector: str) -> None:
    if detector not in DETECTORS:
        raise ProfaceError(f"unknown face detector {detector!r}; known: {', '.join(DETECTORS)}")
    for part in _parts(detector):
        if not available(part):
            raise ProfaceError(f"face detector {part!r} is not available here: {_INSTALL[part]}")


def _load(name: str):
    if name not in _MODELS:
        _check_name(name)
        if name == "haar":
            import cv2

            m = cv2.CascadeClassifier(str(_model_file("haar")))
            if m.empty():
                raise ProfaceError(f"face detector 'haar': cannot read {_model_file('haar')}; {_INSTALL['haar']}")
        elif name == "dlib_hog":
            import dlib

            m = dlib.get_frontal_face_detector()
        elif name == "dlib_cnn":
            import dlib

            m = dlib.cnn_face_detection_model_v1(str(_model_file("dlib_cnn")))
        else:
            from mediapipe.python.solutions import face_detection

            # model_selection=1: the full-range model (faces up to ~5 m away), not the selfie one.
            m = face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        _MODELS[name] = m
    return _MODELS[name]


# --------------------------------------------------------------------------- raw detectors
# Each returns float [N, 5]: x, y, w, h, score, in the detector's own framing.


def _enlarged(image: np.ndarray, raw_min: float, window: int) -> tuple[np.ndarray, float]:
    """The image scaled up just enough that a raw face of side `raw_min` fills the detector's window.

    dlib's own `upsample_num_times` doubles the image (4x the pixels per step); scaling by
    window / raw_min (capped at 4) sees the same faces for less work. Returns (image, factor).
    """
    f = min(4.0, window / raw_min) if raw_min > 0 else 1.0
    if f <= 1.0:
        return np.ascontiguousarray(image), 1.0
    import cv2

    h, w = image.shape[:2]
    size = (int(math.ceil(w * f)), int(math.ceil(h * f)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), f


def _raw_haar(image: np.ndarray, raw_min: float) -> np.ndarray:
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    side = max(_WINDOW["haar"], int(math.floor(raw_min)))
    rects, _levels, weights = _load("haar").detectMultiScale3(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side), outputRejectLevels=True)
    if len(rects) == 0:
        return np.zeros((0, 5))
    return np.concatenate([np.asarray(rects, float).reshape(-1, 4), np.asarray(weights, float).reshape(-1, 1)], 1)


def _raw_dlib_hog(image: np.ndarray, raw_min: float) -> np.ndarray:
    big, f = _enlarged(image, raw_min, _WINDOW["dlib_hog"])
    rects, scores, _ = _load("dlib_hog").run(big, 0, 0.0)
    out = np.array([[r.left(), r.top(), r.width(), r.height(), s] for r, s in zip(rects, scores)], float).reshape(-1, 5)
    out[:, :4] /= f
    return out


def _raw_dlib_cnn(image: np.ndarray, raw_min: float) -> np.ndarray:
    big, f = _enlarged(image, raw_min, _WINDOW["dlib_cnn"])
    dets = _load("dlib_cnn")(big, 0)
    out = np.array([[d.rect.left(), d.rect.top(), d.rect.width(), d.rect.height(), d.confidence] for d in dets],
                   float).reshape(-1, 5)
    out[:, :4] /= f
    return out


def _raw_blazeface(image: np.ndarray, raw_min: float) -> np.ndarray:
    h, w = image.shape[:2]
    res = _load("blazeface").process(np.ascontiguousarray(image))
    out = []
    for d in res.detections or []:
        b = d.location_data.relative_bounding_box
        out.append([b.xmin * w, b.ymin * h, b.width * w, b.height * h, d.score[0]])
    return np.array(out, float).reshape(-1, 5)


_RAW = {"haar": _raw_haar, "dlib_hog": _raw_dlib_hog, "dlib_cnn": _raw_dlib_cnn, "blazeface": _raw_blazeface}


def raw_boxes(image_u8: np.ndarray, detector: str, raw_min: float = 0.0) -> np.ndarray:
    """The detector's own boxes, float [N, 5] (x, y, w, h, score), unnormalised, unmerged (for calibration)."""
    _check_name(detector)
    if "+" in detector:
        raise ProfaceError(f"raw_boxes takes one detector, not the combination {detector!r}")
    return _RAW[detector](_check_image(image_u8), raw_min)


# --------------------------------------------------------------------------- post-processing


def _check_image(image_u8: np.ndarray) -> np.ndarray:
    a = np.asarray(image_u8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ProfaceError(f"detect_faces: expected a uint8 [H, W, 3] RGB image, got {a.dtype} {a.shape}")
    return a


def normalise(raw: np.ndarray, detector: str) -> np.ndarray:
    """Raw [N, 5] boxes -> aligned-crop squares [N, 5] (float, unclipped), scores kept."""
    dx, dy, scale = _NORMALISE[detector]
    x, y, w, h, s = (raw[:, i] for i in range(5))
    cx, cy = x + w / 2 + dx * w, y + h / 2 + dy * h
    side = scale * np.sqrt(np.maximum(w * h, 0.0))
    return np.stack([cx - side / 2, cy - side / 2, side, side, s], 1)


def _overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and intersection-over-smaller-area of box a [4] against boxes b [M, 4]."""
    x1, y1 = np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1])
    x2, y2 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2]), np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a, area_b = a[2] * a[3], b[:, 2] * b[:, 3]
    union = area_a + area_b - inter
    return inter / np.maximum(union, 1e-9), inter / np.maximum(np.minimum(area_a, area_b), 1e-9)


def nms(boxes: np.ndarray, iou: float = 0.3, contained: float = 0.7) -> np.ndarray:
    """Greedy NMS on [N, 5] (x, y, w, h, score): highest score first; ties broken by position (deterministic)."""
    if len(boxes) == 0:
        return boxes
    order = np.lexsort((boxes[:, 1], boxes[:, 0], -boxes[:, 4]))
    keep: list[int] = []
    for i in order:
        if keep:
            o_iou, o_small = _overlap(boxes[i, :4], boxes[keep, :4])
            if np.any(o_iou > iou) or np.any(o_small > contained):
                continue
        keep.append(int(i))
    return boxes[keep]


def detect_faces(image_u8: np.ndarray, detector: str = DEFAULT_DETECTOR,
                 min_size: int = 40) -> list[tuple[int, int, int, int]]:
    """Faces in an RGB uint8 [H, W, 3] photo as (x, y, w, h) int boxes, aligned-crop framing.

    Boxes are clipped to the image, merged (NMS), those under `min_size` px
    dropped, and sorted left-to-right then top-to-bottom. An unknown or
    uninstalled detector raises ProfaceError naming what to pip install.
    """
    _check_name(detector)
    image = _check_image(image_u8)
    H, W = image.shape[:2]
    parts = _parts(detector)
    found = []
    for rank, part in enumerate(parts):  # "a+b": both detectors; where they overlap, a's box is kept
        raw = _RAW[part](image, 0.9 * min_size / _NORMALISE[part][2])
        boxes = normalise(raw, part)
        boxes[:, 4] += 1e6 * (len(parts) - 1 - rank)
        found.append(boxes)
    boxes = nms(np.concatenate(found, 0))
    out = []
    for x, y, w, h, _s in boxes:
        x1, y1 = max(0, int(round(x))), max(0, int(round(y)))
        x2, y2 = min(W, int(round(x + w))), min(H, int(round(y + h)))
        if x2 - x1 >= min_size and y2 - y1 >= min_size:
            out.append((x1, y1, x2 - x1, y2 - y1))
    return sorted(out)

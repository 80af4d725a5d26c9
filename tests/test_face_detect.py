"""Face detection in whole photos (proface_jax.face_detect): finds real test faces, nothing on texture, box contract."""
from __future__ import annotations

import numpy as np
import pytest

from proface_jax.input_pipeline import split_of
from proface_jax import face_detect, images
from proface_jax.errors import ProfaceError


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A face-free textured background: smooth colour noise + diagonal stripes + grain."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(40, 220, (6, 9, 3)).astype(np.float32)
    bg = images.resize(small.astype(np.uint8), (h, w)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    bg += 25 * np.sin((xx + 0.6 * yy) / 7.0)[..., None]
    bg += rng.normal(0, 6, (h, w, 3))
    return np.clip(bg, 0, 255).astype(np.uint8)


def _test_faces(utkface_dir, n: int) -> list[np.ndarray]:
    files = sorted(p for p in utkface_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    test = [p for p in files if split_of(p.name) == "test"]
    rng = np.random.default_rng(25)
    return [images.load_rgb(test[i]) for i in rng.choice(len(test), size=n, replace=False)]


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def composite(utkface_dir):
    """Three real test-split faces (90, 130, 170 px) on a textured 400x720 background, and their squares."""
    canvas = _texture(400, 720)
    truth = []
    for face, (x, y, s) in zip(_test_faces(utkface_dir, 3), [(40, 250, 90), (230, 60, 130), (480, 170, 170)]):
        canvas[y:y + s, x:x + s] = images.resize(face, (s, s))
        truth.append((x, y, s, s))
    return canvas, truth


def test_default_detector_is_available():
    assert face_detect.DEFAULT_DETECTOR in face_detect.DETECTORS
    assert face_detect.available(face_detect.DEFAULT_DETECTOR)


@pytest.mark.parametrize("detector", ["haar", "dlib_hog"])
def test_finds_each_real_face_and_nothing_else(composite, detector):
    if not face_detect.available(detector):
        pytest.skip(f"{detector} not installed")
    canvas, truth = composite
    boxes = face_detect.detect_faces(canvas, detector)
    for t in truth:
        best = max((_iou(t, b) for b in boxes), default=0.0)
        assert best >= 0.6, (detector, t, boxes)  # the benchmark counts >= 0.4; these upright faces do better
    assert len(boxes) == len(truth), boxes


def test_nothing_on_a_face_free_texture():
    for seed in range(3):
        assert face_detect.detect_faces(_texture(480, 640, seed)) == []


def test_boxes_are_clipped_sorted_ints_and_min_size_drops(composite):
    canvas, truth = composite
    # Cut the photo just above the 170 px face's chin: its box reaches the bottom edge and is clipped there.
    x, y, s, _ = truth[2]
    cut = canvas[: y + int(0.95 * s)]
    boxes = face_detect.detect_faces(cut)
    H, W = cut.shape[:2]
    assert boxes and boxes == sorted(boxes)
    for b in boxes:
        assert all(type(v) is int for v in b)
        bx, by, bw, bh = b
        assert 0 <= bx and 0 <= by and bw > 0 and bh > 0 and bx + bw <= W and by + bh <= H
    assert any(by + bh == H and _iou(b, truth[2]) >= 0.4 for b in boxes for bx, by, bw, bh in [b]), boxes
    # min_size drops the small faces (the 90 px one gives a box of about 100 px).
    every = face_detect.detect_faces(canvas)
    big = face_detect.detect_faces(canvas, min_size=120)
    assert big and all(w >= 120 and h >= 120 for _, _, w, h in big)
    assert len(big) == len(every) - 1


def test_post_processing_contract(monkeypatch):
    """Raw boxes off the edges, duplicates and tiny ones -> clipped, merged, filtered, sorted ints."""
    raw = np.array([
        [250.0, 150.0, 80.0, 80.0, 1.0],     # right/bottom edge: clipped to the 300x200 image
        [-20.4, 90.0, 60.0, 60.0, 2.0],      # left edge: clipped
        [-18.0, 92.0, 58.0, 58.0, 1.5],      # duplicate of the one above: merged away
        [100.0, 10.0, 30.0, 30.0, 9.0],      # smaller than min_size: dropped
        [100.0, 60.0, 70.0, 70.0, 3.0],      # inside
    ])
    monkeypatch.setitem(face_detect._RAW, "haar", lambda image, raw_min: raw.copy())
    monkeypatch.setitem(face_detect._NORMALISE, "haar", (0.0, 0.0, 1.0))
    boxes = face_detect.detect_faces(np.zeros((200, 300, 3), np.uint8), "haar", min_size=40)
    assert boxes == [(0, 90, 40, 60), (100, 60, 70, 70), (250, 150, 50, 50)]
    # The corner box is 50x50 once clipped: dropped at min_size 51.
    assert face_detect.detect_faces(np.zeros((200, 300, 3), np.uint8), "haar", min_size=51) == [(100, 60, 70, 70)]
    assert all(type(v) is int for b in boxes for v in b)


def test_deterministic(composite):
    canvas, _ = composite
    assert face_detect.detect_faces(canvas) == face_detect.detect_faces(canvas.copy())


def test_nms_merges_duplicates_keeps_separate_faces():
    boxes = np.array([[10, 10, 100, 100, 1.0], [14, 12, 98, 98, 2.0], [30, 30, 40, 40, 3.0],
                      [300, 10, 100, 100, 0.5]], float)
    kept = face_detect.nms(boxes)
    assert sorted(map(tuple, kept[:, :2].tolist())) == [(30.0, 30.0), (300.0, 10.0)]


def test_unknown_or_missing_detector_is_a_proface_error(monkeypatch):
    img = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ProfaceError, match="unknown face detector"):
        face_detect.detect_faces(img, "yolo")
    assert not face_detect.available("yolo")
    # A detector whose package does not import: one line naming what to pip install.
    monkeypatch.setattr(face_detect, "_MODELS", {})
    monkeypatch.setattr(face_detect, "_module", lambda name: None)
    assert not face_detect.available("dlib_hog")
    with pytest.raises(ProfaceError, match="pip install dlib-bin") as e:
        face_detect.detect_faces(img, "dlib_hog")
    assert "\n" not in str(e.value)


def test_bad_image_is_a_proface_error():
    with pytest.raises(ProfaceError, match="uint8"):
        face_detect.detect_faces(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ProfaceError, match="uint8"):
        face_detect.detect_faces(np.zeros((64, 64), np.uint8))

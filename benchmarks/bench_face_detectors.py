"""Which face detector finds the faces in a whole photo: detection rate, false positives, speed.

    python -m benchmarks.bench_face_detectors [--photos 60] [--seed 0] [--out results.json]
                                              [--detectors haar,dlib_hog,...] [--calibrate]

Photos: seeded composites (numpy Generator(seed)) of 2-6 UTKFace TEST-split faces
(proface_jax.input_pipeline.split_of(file name) == "test") on a 720-960 x 540-720 canvas,
each face resized to 60-300 px, rotated by up to +-15 degrees (a square with a 3 px
feathered edge) and placed with no overlap (rotated extents 8 px apart), on a textured
background: procedural (smooth noise, stripes, gradient + noise) or a crop of a face-free
scikit-image sample (coffee, chelsea the cat, rocket, brick, grass, gravel, coins, Hubble
deep field, immunohistochemistry, page, text, clock, moon). A face's ground truth is the
square its 200x200 aligned crop covers once pasted (side = pasted size, unrotated).

Found: a detected box (after the detector's normalisation to that aligned-crop framing,
see proface_jax/face_detect.py) with IoU >= --iou (0.4) with the face's square, matched
one-to-one greedily by IoU; unmatched detections are false positives. Also reported:
false positives on the whole face-free background images (the cat among them) and what
each detector finds on skimage.data.astronaut() (one face). Time: wall time of
detect_faces per megapixel over all composites (after one warm-up call), on this machine.

Composites are made in order from one Generator, so --photos 8 gives the first 8 photos of
--photos 60 (the slow dlib_cnn was measured on such a prefix). BlazeFace cannot share this
project's environment (mediapipe 0.10.14 pins protobuf<5); it was measured from a separate venv
(mediapipe installed --no-deps, plus numpy<2.3, protobuf<5, absl-py, attrs, flatbuffers,
opencv-python-headless, matplotlib, scikit-image, pillow) with PYTHONPATH at a folder holding
experiments/, benchmarks/ and a proface_jax/ with an empty __init__.py beside face_detect.py,
errors.py and images.py (so that jax is not imported).

--calibrate instead measures each detector's raw box against the aligned-crop square on
--calib-faces VALIDATION-split faces (upright, 120-240 px, centred in a grey canvas 1.6x their size) and prints the medians that
face_detect._NORMALISE holds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from proface_jax.input_pipeline import split_of
from proface_jax import face_detect, images

DEFAULT_UTKFACE = Path(os.environ.get("PROFACE_UTKFACE", Path(__file__).resolve().parents[2] / "shared" / "datasets" / "utkface"))
SAMPLES = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "coins", "hubble_deep_field",
           "immunohistochemistry", "page", "text", "clock", "moon")
PROCEDURAL = ("noise", "stripes", "gradient")


def face_files(root: Path, split: str) -> list[Path]:
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p for p in files if split_of(p.name) == split]


def sample_image(name: str) -> np.ndarray:
    a = np.asarray(getattr(skimage.data, name)())
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def background(rng: np.random.Generator, kind: str, h: int, w: int) -> np.ndarray:
    if kind == "noise":
        small = rng.uniform(0, 255, (rng.integers(4, 24), rng.integers(4, 24), 3)).astype(np.float32)
        bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 8, (h, w, 3))
    elif kind == "stripes":
        period, ang = rng.uniform(8, 80), rng.uniform(0, np.pi)
        yy, xx = np.mgrid[:h, :w]
        t = np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)[..., None]
        c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        bg = c1 + (c2 - c1) * (t + 1) / 2 + rng.normal(0, 6, (h, w, 3))
    elif kind == "gradient":
        yy, xx = np.mgrid[:h, :w] / max(h, w)
        c0, cx, cy = rng.uniform(0, 255, 3), rng.uniform(-200, 200, 3), rng.uniform(-200, 200, 3)
        bg = c0 + xx[..., None] * cx + yy[..., None] * cy + rng.normal(0, 10, (h, w, 3))
    else:  # a random crop of a sample image, scaled to cover the canvas
        src = sample_image(kind)
        sh, sw = src.shape[:2]
        z = max(h / sh, w / sw) * rng.uniform(1.0, 1.5)
        src = cv2.resize(src, (math.ceil(sw * z), math.ceil(sh * z)), interpolation=cv2.INTER_LINEAR)
        y0, x0 = rng.integers(0, src.shape[0] - h + 1), rng.integers(0, src.shape[1] - w + 1)
        bg = src[y0:y0 + h, x0:x0 + w].astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, face: np.ndarray, cx: float, cy: float, size: int, angle: float) -> None:
    """Alpha-blends `face` resized to `size` and rotated by `angle` degrees, centred at (cx, cy)."""
    f = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if size < face.shape[0] else cv2.INTER_CUBIC)
    mask = np.zeros((size, size), np.float32)
    mask[2:-2, 2:-2] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)
    H, W = canvas.shape[:2]
    M = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
    M[:, 2] += (cx - size / 2, cy - size / 2)
    fw = cv2.warpAffine(f, M, (W, H), flags=cv2.INTER_LINEAR)
    mw = cv2.warpAffine(mask, M, (W, H), flags=cv2.INTER_LINEAR)[..., None]
    canvas[:] = np.clip(canvas * (1 - mw) + fw * mw + 0.5, 0, 255).astype(np.uint8)


def composite(rng: np.random.Generator, files: list[Path], kind: str) -> tuple[np.ndarray, list[list[int]]]:
    h, w = int(rng.integers(540, 721)), int(rng.integers(720, 961))
    canvas = background(rng, kind, h, w)
    want, placed, boxes = int(rng.integers(2, 7)), [], []
    for _ in range(200):
        if len(boxes) == want:
            break
        s = int(round(math.exp(rng.uniform(math.log(60), math.log(300)))))
        ang = float(rng.uniform(-15, 15))
        ext = s * (abs(math.cos(math.radians(ang))) + abs(math.sin(math.radians(ang))))
        if ext + 4 > min(h, w):
            continue
        cx, cy = rng.uniform(ext / 2 + 2, w - ext / 2 - 2), rng.uniform(ext / 2 + 2, h - ext / 2 - 2)
        r = (cx - ext / 2 - 4, cy - ext / 2 - 4, cx + ext / 2 + 4, cy + ext / 2 + 4)
        if any(r[0] < q[2] and q[0] < r[2] and r[1] < q[3] and q[1] < r[3] for q in placed):
            continue
        face = images.load_rgb(files[int(rng.integers(len(files)))])
        paste(canvas, face, cx, cy, s, ang)
        placed.append(r)
        boxes.append([cx - s / 2, cy - s / 2, s, s, ang])
    return canvas, boxes


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def match(gt: list, det: list, thr: float) -> tuple[list[bool], int]:
    """Greedy one-to-one matching by IoU: which ground-truth faces are found, and how many detections are left."""
    pairs = sorted(((iou(g, d), i, j) for i, g in enumerate(gt) for j, d in enumerate(det)), reverse=True)
    found, used = [False] * len(gt), set()
    for v, i, j in pairs:
        if v >= thr and not found[i] and j not in used:
            found[i] = True
            used.add(j)
    return found, len(det) - len(used)


def calibrate(root: Path, detectors: list[str], n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    files = face_files(root, "validation")
    pick = rng.choice(len(files), size=min(n, len(files)), replace=False)
    out = {}
    for det in [d for d in detectors if "+" not in d]:  # combinations reuse their parts' numbers
        rows, missed = [], 0
        for k in pick:
            s = int(rng.integers(120, 241))
            c = int(1.6 * s) // 2
            canvas = np.full((2 * c, 2 * c, 3), 128, np.uint8)
            paste(canvas, images.load_rgb(files[k]), c, c, s, 0.0)
            raw = face_detect.raw_boxes(canvas, det, raw_min=0.6 * s)
            if len(raw) == 0:
                missed += 1
                continue
            centre = np.abs(raw[:, 0] + raw[:, 2] / 2 - c) + np.abs(raw[:, 1] + raw[:, 3] / 2 - c)
            x, y, w, h, _ = raw[int(np.argmin(centre))]
            rows.append(((c - (x + w / 2)) / w, (c - (y + h / 2)) / h, s / math.sqrt(w * h), h / w))
        r = np.array(rows)
        med = np.median(r, 0) if len(r) else [float("nan")] * 4
        out[det] = {"faces": int(len(pick)), "missed": missed, "dx": round(float(med[0]), 3),
                    "dy": round(float(med[1]), 3), "scale": round(float(med[2]), 3),
                    "raw_aspect_h_over_w": round(float(med[3]), 3),
                    "scale_iqr": [round(float(q), 3) for q in (np.percentile(r[:, 2], [25, 75]) if len(r) else [])]}
        print(det, out[det], flush=True)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iou", type=float, default=0.4)
    ap.add_argument("--min-size", type=int, default=40)
    ap.add_argument("--detectors", default=",".join(face_detect.DETECTORS))
    ap.add_argument("--utkface", type=Path, default=DEFAULT_UTKFACE)
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--calib-faces", type=int, default=300)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    wanted = [d for d in args.detectors.split(",") if d]
    dets = [d for d in wanted if face_detect.available(d)]
    skipped = [d for d in wanted if d not in dets]
    if skipped:
        print(f"not available here (skipped): {', '.join(skipped)}")
    if args.calibrate:
        res = calibrate(args.utkface, dets, args.calib_faces, args.seed)
        if args.out:
            args.out.write_text(json.dumps(res, indent=2))
        return

    rng = np.random.default_rng(args.seed)
    files = face_files(args.utkface, "test")
    kinds = PROCEDURAL + SAMPLES
    photos = [composite(rng, files, kinds[i % len(kinds)]) for i in range(args.photos)]
    n_faces = sum(len(b) for _, b in photos)
    mpix = sum(p.shape[0] * p.shape[1] for p, _ in photos) / 1e6
    astro = np.ascontiguousarray(skimage.data.astronaut())
    print(f"{args.photos} photos, {n_faces} test faces, {mpix:.1f} MP, seed {args.seed}; detectors {dets}", flush=True)

    results = {"photos": args.photos, "faces": n_faces, "megapixels": round(mpix, 2), "seed": args.seed,
               "iou": args.iou, "min_size": args.min_size, "machine": f"{platform.machine()} {os.cpu_count()} cpus",
               "detectors": {}}
    for det in dets:
        face_detect.detect_faces(astro, det, args.min_size)  # load + warm up
        found_all, sizes, angles, fps, t = [], [], [], [], 0.0
        fp_by_kind: dict[str, int] = {}
        for i, (img, gt) in enumerate(photos):
            t0 = time.perf_counter()
            boxes = face_detect.detect_faces(img, det, args.min_size)
            t += time.perf_counter() - t0
            found, fp = match([g[:4] for g in gt], boxes, args.iou)
            found_all += found
            sizes += [g[2] for g in gt]
            angles += [g[4] for g in gt]
            fps.append(fp)
            k = kinds[i % len(kinds)]
            fp_by_kind[k] = fp_by_kind.get(k, 0) + fp
        found_all, sizes, angles = np.array(found_all), np.array(sizes), np.abs(np.array(angles))
        bg_fp = {k: len(face_detect.detect_faces(sample_image(k), det, args.min_size)) for k in SAMPLES}
        astro_boxes = face_detect.detect_faces(astro, det, args.min_size)
        r = {
            "found": float(found_all.mean()),
            "found_ge80": float(found_all[sizes >= 80].mean()),
            "found_lt80": float(found_all[sizes < 80].mean()) if np.any(sizes < 80) else None,
            "found_tilt_ge10": float(found_all[angles >= 10].mean()),
            "fp_per_photo": float(np.mean(fps)),
            "fp_by_background": fp_by_kind,
            "fp_whole_samples": bg_fp,
            "astronaut_boxes": [list(b) for b in astro_boxes],
            "s_per_mp": t / mpix,
        }
        results["detectors"][det] = r
        print(det, json.dumps(r), flush=True)

    print()
    print(f"| detector | found (all {n_faces}) | found ≥80 px | found <80 px | found tilt ≥10° | FP / photo "
          f"| FP on {len(SAMPLES)} face-free samples (cat) | astronaut | s / MP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for det, r in results["detectors"].items():
        lt = "–" if r["found_lt80"] is None else f"{100 * r['found_lt80']:.1f} %"
        print(f"| {det} | {100 * r['found']:.1f} % | {100 * r['found_ge80']:.1f} % | {lt} "
              f"| {100 * r['found_tilt_ge10']:.1f} % | {r['fp_per_photo']:.2f} "
              f"| {sum(r['fp_whole_samples'].values())} ({r['fp_whole_samples']['chelsea']}) "
              f"| {len(r['astronaut_boxes'])} box | {r['s_per_mp']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

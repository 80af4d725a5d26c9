"""Whole photos end to end: detect, protect every face in place, recover — on composites of real faces.

    python benchmarks/bench_photo_faces.py [--photos 20] [--seed 0] [--checkpoint randwr] [--out results.json] \
        [--figure docs/group_photo.png --figure-photo 10]

The composites are bench_face_detectors.py's (2–6 UTKFace *test* faces per photo, 60–300 px,
rotated ±15°, on textured backgrounds). For each photo: `faces.protect_faces` with the default
detector, the protected photo stored as 8-bit PNG and read back, `faces.recover_faces`. Reported:
- faces ≥ 80 px (and all) that were protected: a crop covers ≥ 95 % of the face's core, the central
  70 % of the pasted square (an aligned crop's margin of hair and background is the rest); also how
  many crops cover ≥ 90 % of the whole square;
- photos whose pixels outside the crops are bit-identical after protection and after recovery;
- recovery PSNR per face (inside the face's square), mean and minimum, and per photo;
- seconds per photo (after the first, which compiles).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_face_detectors import DEFAULT_UTKFACE, PROCEDURAL, SAMPLES, composite, face_files  # noqa: E402

from proface_jax import checkpoint, faces, images, keys, metrics, photo  # noqa: E402


CORE = 0.7  # the central part of an aligned face crop that holds the face itself


def covered(gt, crops, part: float = 1.0) -> float:
    """Largest fraction of the face's square (or of its central `part`) inside one crop."""
    s = gt[2] * part
    x, y = gt[0] + (gt[2] - s) / 2, gt[1] + (gt[2] - s) / 2
    best = 0.0
    for c in crops:
        ix = max(0.0, min(x + s, c.x + c.size) - max(x, c.x))
        iy = max(0.0, min(y + s, c.y + c.size) - max(y, c.y))
        best = max(best, ix * iy / (s * s))
    return best


def face_region(gt, shape):
    h, w = shape[:2]
    x0, y0 = max(0, int(gt[0])), max(0, int(gt[1]))
    x1, y1 = min(w, int(gt[0] + gt[2])), min(h, int(gt[1] + gt[3]))
    return slice(y0, y1), slice(x0, x1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default="randwr")
    ap.add_argument("--data", default=str(DEFAULT_UTKFACE))
    ap.add_argument("--out", help="write the figures as JSON here")
    ap.add_argument("--figure", help="write one photo as original | protected | recovered (PNG, half size) here")
    ap.add_argument("--figure-photo", type=int, default=0, help="which photo --figure shows")
    args = ap.parse_args(argv)

    ck = checkpoint.load_checkpoint(args.checkpoint)
    files = face_files(Path(args.data), "test")
    rng = np.random.default_rng(args.seed)
    kinds = list(SAMPLES) + list(PROCEDURAL)
    kdf = keys.strong_kdf(salt=b"bench-photo-face")  # fixed salt: the same maps on every run
    rows, times = [], []
    tmp = Path(tempfile.mkdtemp())
    for i in range(args.photos):
        canvas, gts = composite(rng, files, kinds[i % len(kinds)])
        t = time.perf_counter()
        try:
            prot, meta = faces.protect_faces(ck, canvas, "bench password", kdf=kdf)
        except faces.NoFaceFound:
            rows.append({"photo": i, "faces": [{"size": g[2], "protected": False} for g in gts], "crops": 0})
            continue
        photo.save_protected(tmp / "p.png", prot, meta)
        stored, meta = photo.load_protected(tmp / "p.png")
        rec = faces.recover_faces(ck, stored, meta, "bench password")
        times.append(time.perf_counter() - t)
        if args.figure and i == args.figure_photo:
            half = [images.resize(a, (a.shape[0] // 2, a.shape[1] // 2)) for a in (canvas, stored, rec)]
            images.save_png(args.figure, images.grid([half]))
        crops = [faces.Crop(f["x"], f["y"], f["size"]) for f in meta["faces"]]
        outside = np.ones(canvas.shape[:2], bool)
        for c in crops:
            outside[c.slices()] = False
        entry = {"photo": i, "crops": len(crops), "faces": [],
                 "outside_unchanged_protected": bool(np.array_equal(stored[outside], canvas[outside])),
                 "outside_unchanged_recovered": bool(np.array_equal(rec[outside], canvas[outside])),
                 "photo_psnr": float(metrics.score(rec[None], canvas[None])["psnr"][0])}
        for g in gts:
            region = face_region(g, canvas.shape)
            cov, core = covered(g, crops), covered(g, crops, CORE)
            face = {"size": g[2], "covered": cov, "core_covered": core, "protected": core >= 0.95,
                    "square_covered": cov >= 0.9}
            if face["protected"]:
                face["recovery_psnr"] = float(metrics.score(rec[region][None], canvas[region][None])["psnr"][0])
            entry["faces"].append(face)
        rows.append(entry)
        print(f"photo {i}: {len(gts)} faces, {len(crops)} crops, "
              f"{sum(f['protected'] for f in entry['faces'])} protected, {times[-1]:.1f} s", flush=True)

    all_faces = [f for r in rows for f in r["faces"]]
    big = [f for f in all_faces if f["size"] >= 80]
    psnrs = [f["recovery_psnr"] for f in all_faces if "recovery_psnr" in f]
    done = [r for r in rows if "photo_psnr" in r]
    summary = {
        "photos": len(rows), "faces": len(all_faces), "faces_ge_80": len(big),
        "protected_ge_80": sum(f["protected"] for f in big) / max(1, len(big)),
        "protected_all": sum(f["protected"] for f in all_faces) / max(1, len(all_faces)),
        "square_covered_ge_80": sum(f.get("square_covered", False) for f in big) / max(1, len(big)),
        "outside_unchanged_protected": sum(r["outside_unchanged_protected"] for r in done) / max(1, len(done)),
        "outside_unchanged_recovered": sum(r["outside_unchanged_recovered"] for r in done) / max(1, len(done)),
        "recovery_psnr_mean": statistics.fmean(psnrs) if psnrs else None,
        "recovery_psnr_min": min(psnrs) if psnrs else None,
        "photo_psnr_mean": statistics.fmean(r["photo_psnr"] for r in done) if done else None,
        "seconds_per_photo_median": statistics.median(times[1:] or times) if times else None,
        "model": ck.model_id, "seed": args.seed, "cpu_count": os.cpu_count(),
    }
    print("\n| measure | value |\n|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "photos": rows}, indent=1))


if __name__ == "__main__":
    main()

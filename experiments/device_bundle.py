"""Pack what a training run needs onto a machine that sees neither `../shared` nor the internet.

    python -m experiments.device_bundle --out .gpu --data folder:../shared/datasets/utkface --budget-mib 13.5
    # there:  python -m experiments.device_bundle --unpack-lpips .gpu/lpips_vgg16_f16.npz /tmp/lpips_vgg16.npz

Written for a lent GPU machine whose transfer limit (64 MiB with the repository) is smaller than
the data set plus the LPIPS weights, so it trades both down:
* faces: the validation split's first `--val` faces (so a run's fixed validation batch and swap
  donors are the usual ones), then a seeded random sample of the training split until
  `--budget-mib` is spent. Never a test-split face: the folder hash split (`input_pipeline.split_of`)
  keys on the relative path, which the bundle keeps, so every file stays in its split. Each face
  is cropped and resized to `--size` exactly as the pipeline would, then stored as JPEG
  (quality 95): one more lossy encoding than training from the originals, said in any report.
* LPIPS VGG16 weights as float16 (half the bytes); `--unpack-lpips` casts them back to the
  float32 file `proface_jax.lpips` validates and loads. The rounding (relative 2⁻¹¹) is far
  below what a training loss notices; evaluation should use the original float32 weights.
"""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from proface_jax import input_pipeline
from proface_jax import images
from proface_jax.lpips import weights as lpips_weights


def pack_lpips_f16(src: str | Path | None, dst: str | Path) -> int:
    flat, meta = lpips_weights.read_npz(lpips_weights.find_weights(src))
    out = {k: v.astype(np.float16) for k, v in flat.items()}
    out.update({f"meta/{k}": np.asarray(v) for k, v in meta.items()})
    np.savez(dst, **out)
    return Path(dst).stat().st_size


def unpack_lpips_f16(src: str | Path, dst: str | Path) -> None:
    with np.load(src, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    meta = {k[len("meta/"):]: str(v) for k, v in flat.items() if k.startswith("meta/")}
    meta["bundle"] = "carried as float16, cast back to float32"
    arrays = {k: v.astype(np.float32) for k, v in flat.items() if not k.startswith("meta/")}
    lpips_weights.write_npz(dst, lpips_weights.nest(arrays), meta)  # validates names, shapes, finiteness


def pack_faces(data: str, out: str | Path, size: int, budget_bytes: int, val: int, seed: int = 0) -> dict:
    """Writes faces into `out` (same relative paths); returns counts per split and bytes used."""
    if not data.startswith("folder:"):
        raise ValueError(f"--data must be folder:PATH, got {data!r}")
    root = Path(data[len("folder:"):]).expanduser()
    out = Path(out)
    names = input_pipeline.list_images(root)
    by_split = {s: [n for n in names if input_pipeline.split_of(n) == s] for s in ("train", "validation")}
    order = np.random.default_rng(seed).permutation(len(by_split["train"]))
    queue = [("validation", n) for n in by_split["validation"][:val]]
    queue += [("train", by_split["train"][i]) for i in order]
    used, counts = 0, {"train": 0, "validation": 0}
    for split, name in queue:
        if split == "train" and used >= budget_bytes:
            break
        face = input_pipeline.CENTER_SQUARE(images.load_rgb(root / name))
        if face.shape[:2] != (size, size):
            face = images.resize(np.ascontiguousarray(face), (size, size))
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, "JPEG", quality=95)
        dst = out / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(buf.getvalue())
        used += buf.tell()
        counts[split] += 1
    return {**counts, "bytes": used}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="bundle folder (faces under OUT/faces, weights in OUT)")
    ap.add_argument("--data", default="folder:../shared/datasets/utkface")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--budget-mib", type=float, default=13.5, help="bytes for training faces")
    ap.add_argument("--val", type=int, default=112, help="validation faces (12 eval + donors)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lpips", default=None, help="float32 LPIPS weights (default: the usual lookup)")
    ap.add_argument("--unpack-lpips", nargs=2, metavar=("F16", "F32"), help="cast a bundled file back and stop")
    a = ap.parse_args(argv)
    if a.unpack_lpips:
        unpack_lpips_f16(*a.unpack_lpips)
        print(f"wrote {a.unpack_lpips[1]}")
        return
    if not a.out:
        ap.error("--out is required")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = pack_faces(a.data, out / "faces", a.size, int(a.budget_mib * 2**20), a.val, a.seed)
    n = pack_lpips_f16(a.lpips, out / "lpips_vgg16_f16.npz")
    print(f"faces: {counts['train']} train + {counts['validation']} validation, {counts['bytes'] / 2**20:.1f} MiB; "
          f"LPIPS float16: {n / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

"""Per-obfuscator privacy (PSNR/SSIM original vs obfuscated, eval setting) and time per batch.

    python -m benchmarks.bench_obfuscators [--n 200] [--size 112] [--batch 16] [--reps 3]

Faces: the first --n UTKFace files (sorted); swap donors: the last --donors files (no overlap).
`template` reads a temporary folder of classical-swap outputs made with another key (it stands in
for an external swapper; its time is file reading + resizing). Metrics on 8-bit RGB, [0, 1] scale:
PSNR, and SSIM with Wang et al.'s settings (Gaussian window σ 1.5, skimage). Time: eval mode,
median of --reps runs of one batch after a warm-up (JAX ones jitted; compile time excluded),
each run with a fresh key, so stickers and donors are new draws (stickers are generated on first use).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from experiments.show_obfuscators import DEFAULT_UTKFACE, face_files, load_faces, write_template_folder
from proface_jax import images, obfuscators


def metrics(a_u8: np.ndarray, b_u8: np.ndarray) -> tuple[float, float, float, float]:
    psnr = [peak_signal_noise_ratio(a, b, data_range=255) for a, b in zip(a_u8, b_u8)]
    ssim = [structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False) for a, b in zip(a_u8, b_u8)]
    return float(np.mean(psnr)), float(np.max(psnr)), float(np.mean(ssim)), float(np.max(ssim))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--utkface", type=Path, default=Path(os.environ.get("PROFACE_UTKFACE", DEFAULT_UTKFACE)))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--donors", type=int, default=500)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--preset", default="paper112", choices=sorted(obfuscators.PRESETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    files = face_files(args.utkface)
    targets = files[:args.n]
    faces = load_faces(targets, args.size)
    donors = load_faces(files[-args.donors:], args.size)
    names = [p.name for p in targets]
    x = images.to_unit(faces)
    key = jax.random.key(args.seed)
    print(f"{args.n} UTKFace faces at {args.size}×{args.size}, preset {args.preset}, eval setting; "
          f"time per batch of {args.batch}; backend {jax.default_backend()}")
    print(f"| obfuscator | setting | PSNR dB (mean) | PSNR dB (max) | SSIM (mean) | SSIM (max) | s / batch of {args.batch} |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        write_template_folder(Path(tmp), faces, donors, names, args.seed)
        for i, name in enumerate(obfuscators.names()):
            opts = {"swap": {"donors": donors}, "template": {"folder": tmp}}.get(name, {})
            obf = obfuscators.make(name, preset=args.preset, mode="eval", **opts)
            k = jax.random.fold_in(key, i)
            if obf.jittable:
                fn = jax.jit(obf.__call__)
                run = lambda xb, nb, k=k: np.asarray(fn(k, xb).block_until_ready())
            else:
                run = lambda xb, nb, k=k: obf(k, xb, names=nb)
            out = np.concatenate([run(x[j:j + args.batch], names[j:j + args.batch])
                                  for j in range(0, args.n, args.batch)])
            psnr, psnr_max, ssim, ssim_max = metrics(faces, images.from_unit(out))
            xb, nb = x[:args.batch], names[:args.batch]
            run(xb, nb)  # warm-up (compiles the JAX ones)
            times = []
            for r in range(args.reps):
                # A fresh key per run: new stickers/donors, as in training (no cache hits from the warm-up).
                kr = jax.random.fold_in(k, 1000 + r)
                t0 = time.perf_counter()
                run(xb, nb, kr)
                times.append(time.perf_counter() - t0)
            setting = obf.setting(args.size, args.size)
            setting = {k_: v for k_, v in setting.items() if k_ != "folder"}
            print(f"| {name} ({obfuscators.LABELS[name]}) | {setting} | {psnr:.2f} | {psnr_max:.2f} | {ssim:.3f} | {ssim_max:.3f} | "
                  f"{statistics.median(times):.4f} |", flush=True)


if __name__ == "__main__":
    main()

"""Times LPIPS-VGG value and value+gradient (w.r.t. the first image) at batch 12, 112×112:
JAX (this package) next to the PyTorch `lpips` package on the same faces, same weights, same run.

    python benchmarks/bench_lpips.py [--batch 12] [--size 112] [--reps 3]

Needs the converted weights (python -m proface_jax.lpips.convert); the PyTorch rows need
torch and `lpips` (pip install torch==2.13.0 && pip install --no-deps lpips==0.1.4) and are
left out otherwise. Reports the median and the best of --reps timed runs after one warm-up.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the torchvision stand-in lives with the tests

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from scipy import ndimage  # noqa: E402

from proface_jax import images  # noqa: E402
from proface_jax.lpips import load_params, lpips  # noqa: E402


def load_faces(n: int, size: int) -> np.ndarray:
    root = Path(os.environ.get("PROFACE_UTKFACE", REPO.parent / "shared" / "datasets" / "utkface"))
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if len(files) < n:
        sys.exit(f"need {n} face images under {root} (set PROFACE_UTKFACE)")
    return images.to_unit(np.stack([images.resize(images.load_rgb(f), (size, size)) for f in files]))


def timed(fn, reps: int) -> tuple[float, float]:
    fn()  # warm-up (JAX: compilation)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), min(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)

    x = load_faces(args.batch, args.size)
    y = np.stack([ndimage.gaussian_filter(im, (2, 2, 0)) for im in x]).astype(np.float32)
    params = load_params()
    rows = []

    value = jax.jit(lpips)
    grad = jax.jit(jax.value_and_grad(lambda p, a, b: jnp.sum(lpips(p, a, b)), argnums=1))
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    t0 = time.perf_counter()
    jax.block_until_ready(grad(params, yj, xj))
    compile_s = time.perf_counter() - t0
    rows.append(("JAX", "value", *timed(lambda: jax.block_until_ready(value(params, yj, xj)), args.reps)))
    rows.append(("JAX", "value+grad", *timed(lambda: jax.block_until_ready(grad(params, yj, xj)), args.reps)))

    try:
        import torch

        from _lpips_testenv import torch_lpips_vgg
    except ImportError as e:
        print(f"(PyTorch rows skipped: {e})")
        torch = None
    if torch is not None:
        model = torch_lpips_vgg(params)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        yt = torch.from_numpy(np.ascontiguousarray(y.transpose(0, 3, 1, 2)))

        def t_value():
            with torch.no_grad():
                return model(yt, xt)

        def t_grad():
            a = yt.clone().requires_grad_(True)
            model(a, xt).sum().backward()
            return a.grad

        rows.append((f"PyTorch {torch.__version__} (lpips)", "value", *timed(t_value, args.reps)))
        rows.append((f"PyTorch {torch.__version__} (lpips)", "value+grad", *timed(t_grad, args.reps)))
        with torch.no_grad():
            diff = np.abs(model(yt, xt).numpy().reshape(-1) - np.asarray(value(params, yj, xj))).max()
        print(f"max |JAX - PyTorch| on this batch: {diff:.3g}")

    print(f"\nLPIPS-VGG16, batch {args.batch}, {args.size}x{args.size}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, jax {jax.__version__}" + (f", torch threads {torch.get_num_threads()}" if torch else "")
          + f"; JAX compile (value+grad) {compile_s:.1f} s; {args.reps} timed runs after a warm-up\n")
    print("| framework | what | median s | best s |")
    print("|---|---|---|---|")
    for fw, what, med, best in rows:
        print(f"| {fw} | {what} | {med:.3f} | {best:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seconds per batch for `protect` and `recover` (N = 3, float32 HIGHEST), and GFLOP/s.

    python benchmarks/bench_flow.py [--batch 16] [--size 112] [--runs 7]

Reports the median of `--runs` timed calls after one warm-up (compile) call, and the
GFLOP/s that median implies, counting 2 FLOP per multiply-add of the 12 subnets' convs.
Try GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the environment for the allocator effect.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import flow, keys
from proface_jax.testing import random_params

# multiply-adds per output position of one subnet: 3×3 convs 16→32, 48→32, 80→32, 112→32, 144→12
SUBNET_MACS = 9 * (16 * 32 + 48 * 32 + 80 * 32 + 112 * 32 + 144 * 12)


def flops(batch: int, size: int, num_blocks: int = 3) -> float:
    positions = (size // 2) ** 2
    return 2.0 * SUBNET_MACS * positions * 4 * num_blocks * batch


def timeit(f, *args, runs: int) -> list[float]:
    jax.block_until_ready(f(*args))  # compile + warm up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)

    cfg = flow.FlowConfig()
    params = random_params(jax.random.key(0), cfg, 1.0, 0.2, 0.5)
    k = jax.random.split(jax.random.key(1), 3)
    shape = (args.batch, args.size, args.size, 3)
    x = jax.random.uniform(k[0], shape, minval=-1, maxval=1)
    y = jax.random.uniform(k[1], shape, minval=-1, maxval=1)
    K = keys.random_key(k[2], args.batch, args.size, args.size)
    protect = jax.jit(flow.protect, static_argnums=4)
    recover = jax.jit(flow.recover, static_argnums=3)
    protected, _ = protect(params, x, y, K, cfg)

    gflop = flops(args.batch, args.size) / 1e9
    print(f"device: {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores); jax {jax.__version__}; GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r}")
    print(f"batch {args.batch} at {args.size}×{args.size}, N = 3: {gflop:.2f} GFLOP per call; "
          f"median of {args.runs} after warm-up")
    print(f"{'call':<10} {'median s':>9} {'best s':>8} {'GFLOP/s':>8}")
    for name, f, a in (("protect", protect, (params, x, y, K, cfg)), ("recover", recover, (params, protected, K, cfg))):
        ts = timeit(f, *a, runs=args.runs)
        med = statistics.median(ts)
        print(f"{name:<10} {med:9.3f} {min(ts):8.3f} {gflop / med:8.1f}")


if __name__ == "__main__":
    main()

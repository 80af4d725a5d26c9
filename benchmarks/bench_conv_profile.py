"""Where a training step's time goes: the dense subnet's five 3×3 convolutions, forward,
input gradient and weight gradient, in XLA (JAX) and in oneDNN (PyTorch), side by side.

    taskset -c 0 python benchmarks/bench_conv_profile.py [--batch 36] [--size 112] [--runs 5] [--threads 1]
                                                         [--jax-layout nhwc|nchw]

A training step of the paper's network (3 SACBs × 4 dense subnets) runs every subnet over
the protect pass (batch B) and the paired right/wrong-key recovery (batch 2B), forward and
backward; so its convolutions are 12 × (forward + input grad + weight grad) of each of the
five conv shapes at batch 3B (default 36 = the B 12 of issue 22's step). This script times
each (conv shape, kind) at that batch, alternating JAX and PyTorch run by run, and prints
the medians, the ratio, and the sums scaled by 12: what the convolutions alone cost a step
in each framework, to set beside a measured step (benchmarks/bench_vs_pytorch.py).
The weight gradient is timed as autodiff computes it (`jax.vjp` w.r.t. the kernel;
`aten.convolution_backward` with only the weight mask, as `loss.backward()` calls it).
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

HI = lax.Precision.HIGHEST
LAYOUTS = {"nhwc": ("NHWC", "HWIO", "NHWC"), "nchw": ("NCHW", "OIHW", "NCHW")}
SHAPES = ((16, 32), (48, 32), (80, 32), (112, 32), (144, 12))  # (Cin, Cout) of conv1..conv5
KINDS = ("forward", "input grad", "weight grad")


def jax_fns(layout: str = "nhwc"):
    def conv(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=LAYOUTS[layout],
                                        precision=HI)

    fwd = jax.jit(conv)
    din = jax.jit(lambda x, w, g: jax.vjp(lambda a: conv(a, w), x)[1](g)[0])
    dw = jax.jit(lambda x, w, g: jax.vjp(lambda k: conv(x, k), w)[1](g)[0])
    return {"forward": lambda x, w, g: fwd(x, w), "input grad": din, "weight grad": dw}


def torch_fns():
    import torch
    import torch.nn.functional as F

    def bwd(mask):
        def f(x, w, g):
            return torch.ops.aten.convolution_backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, mask)
        return f

    return {"forward": lambda x, w, g: F.conv2d(x, w, padding=1), "input grad": bwd([True, False, False]),
            "weight grad": bwd([False, True, False])}


def timed(fn, sync):
    t = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=36)
    ap.add_argument("--size", type=int, default=112, help="image size; the subnets see size/2")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jax-layout", choices=sorted(LAYOUTS), default="nhwc",
                    help="JAX's convolution layout (the project uses NHWC; PyTorch is always NCHW)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    s = args.size // 2
    rng = np.random.default_rng(0)
    J, T = jax_fns(args.jax_layout), torch_fns()
    rows, tot = [], {k: [0.0, 0.0] for k in KINDS}
    for ci, co in SHAPES:
        x = rng.standard_normal((args.batch, s, s, ci), np.float32)
        w = (rng.standard_normal((3, 3, ci, co)) * 0.05).astype(np.float32)
        g = rng.standard_normal((args.batch, s, s, co), np.float32)
        nchw = [np.ascontiguousarray(a.transpose(p)) for a, p in ((x, (0, 3, 1, 2)), (w, (3, 2, 0, 1)),
                                                                    (g, (0, 3, 1, 2)))]
        jx, jw, jg = map(jnp.asarray, nchw if args.jax_layout == "nchw" else (x, w, g))
        tx, tw, tg = map(torch.from_numpy, nchw)
        for kind in KINDS:
            jf, tf = J[kind], T[kind]
            jax.block_until_ready(jf(jx, jw, jg))  # compile
            tf(tx, tw, tg)
            tj, tt = [], []
            for _ in range(args.runs):
                tj.append(timed(lambda: jf(jx, jw, jg), jax.block_until_ready))
                with torch.no_grad():
                    tt.append(timed(lambda: tf(tx, tw, tg), lambda r: r))
            mj, mt = statistics.median(tj), statistics.median(tt)
            tot[kind][0] += mj
            tot[kind][1] += mt
            gflop = 2.0 * args.batch * s * s * 9 * ci * co / 1e9
            rows.append((f"{ci}->{co}", kind, mj, mt, gflop))
    print(f"batch {args.batch}, {s}x{s}, JAX layout {args.jax_layout}, {args.threads} thread(s), median of {args.runs}; JAX {jax.__version__}, "
          f"torch {torch.__version__}")
    print(f"{'conv':>8} {'kind':>12} {'JAX s':>8} {'torch s':>8} {'ratio':>6} {'JAX GF/s':>9} {'torch GF/s':>10}")
    for name, kind, mj, mt, gf in rows:
        print(f"{name:>8} {kind:>12} {mj:8.4f} {mt:8.4f} {mj / mt:6.2f} {gf / mj:9.1f} {gf / mt:10.1f}")
    print("per training step (x12 subnets):")
    aj = at = 0.0
    for kind in KINDS:
        j, t = 12 * tot[kind][0], 12 * tot[kind][1]
        aj, at = aj + j, at + t
        print(f"  {kind:>12}: JAX {j:7.3f} s  torch {t:7.3f} s  ratio {j / t:5.2f}")
    print(f"  {'all convs':>12}: JAX {aj:7.3f} s  torch {at:7.3f} s  ratio {aj / at:5.2f}")


if __name__ == "__main__":
    main()

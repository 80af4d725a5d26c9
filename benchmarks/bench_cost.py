"""Table V analogue: parameters, seconds per batch for protect / recover / each obfuscator + protect,
and faces per second at the best batch size, on the device this runs on.

    python benchmarks/bench_cost.py [--checkpoint PATH] [--num-blocks 3] [--batch 16] [--size 112]
        [--runs 5] [--batches 1,4,16,64] [--obfuscators blur,pixelate,median,mask,swap] [--json OUT]

Times are the median of `--runs` calls after one warm-up (compile) call, each call ended by
`block_until_ready`. "obfuscation + protect" is what the paper's Table V times (a full
protection): the JAX obfuscators (blur, pixelate, median) are jitted together with the flow;
mask and swap run in numpy/OpenCV on the host, then the jitted flow. Inputs are smooth random
images (timing does not depend on the content); swap's donors are more of them. The paper's
figures (one RTX 3090, batch 16 at 112×112): 1.07M parameters, 0.014 s per batch with Gaussian
blur, 0.595 s with SimSwap.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import checkpoint, flow, images, keys, obfuscators

PAPER = {"parameters": 1_070_000, "s_per_batch_blur": 0.014, "s_per_batch_simswap": 0.595,
         "device": "one NVIDIA RTX 3090", "batch": 16, "size": 112}


def timeit(f, runs: int) -> list[float]:
    jax.block_until_ready(f())  # compile + warm up
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        jax.block_until_ready(f())
        out.append(time.perf_counter() - t)
    return out


def smooth_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n smooth random RGB images, float32 in [-1, 1] (upsampled 7×7 noise)."""
    low = rng.integers(0, 256, (n, 7, 7, 3), dtype=np.uint8)
    return images.to_unit(np.stack([images.resize(im, (size, size)) for im in low]))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="a .pfj (default: fresh params of --num-blocks blocks)")
    ap.add_argument("--num-blocks", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batches", default="1,4,16,64", help="batch sizes tried for the best faces/s")
    ap.add_argument("--obfuscators", default="blur,pixelate,median,mask,swap")
    ap.add_argument("--preset", default="paper112")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args(argv)

    if args.checkpoint:
        ck = checkpoint.load_checkpoint(args.checkpoint)
        params, cfg, what = ck.params, ck.config, f"checkpoint {ck.path} ({ck.mode})"
    else:
        cfg = flow.FlowConfig(num_blocks=args.num_blocks)
        params, what = flow.init_params(jax.random.key(0), cfg), f"fresh params, N = {cfg.num_blocks}"
    params = jax.tree_util.tree_map(jnp.asarray, params)
    dev = jax.devices()[0]
    device = (f"{dev.platform}: {dev.device_kind} ({platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPU cores); jax {jax.__version__}")
    n_params = flow.param_count(params)
    print(f"device: {device}")
    print(f"model: {what}; {n_params:,} parameters (paper: 1.07M)")
    print(f"batch {args.batch} at {args.size}×{args.size}; median of {args.runs} calls after a warm-up call")

    rng = np.random.default_rng(0)
    b, s = args.batch, args.size
    x = smooth_images(rng, b, s)
    donors = images.from_unit(smooth_images(rng, 32, s))
    K = keys.random_key(jax.random.key(1), b, s, s)
    xj = jnp.asarray(x)
    protect = jax.jit(lambda p, x, y, K: flow.protect(p, x, y, K, cfg)[0])
    recover = jax.jit(lambda p, a, K: flow.recover(p, a, K, cfg)[0])
    y0 = jnp.asarray(smooth_images(rng, b, s))
    protected = protect(params, xj, y0, K)

    rows = []

    def record(name, ts):
        med = statistics.median(ts)
        rows.append({"call": name, "median_s": med, "best_s": min(ts), "faces_per_s": b / med})
        print(f"{name:<28} {med:9.4f} {min(ts):9.4f} {b / med:10.1f}", flush=True)

    print(f"{'call':<28} {'median s':>9} {'best s':>9} {'faces/s':>10}")
    record("protect (flow only)", timeit(lambda: protect(params, xj, y0, K), args.runs))
    record("recover", timeit(lambda: recover(params, protected, K), args.runs))
    for name in [o.strip() for o in args.obfuscators.split(",") if o.strip()]:
        opts = {"donors": donors} if name == "swap" else {}
        obf = obfuscators.make(name, preset=args.preset, mode="eval", **opts)
        key = jax.random.key(2)
        if obf.jittable:
            full = jax.jit(lambda p, x, K, k, obf=obf: flow.protect(p, x, obf(k, x), K, cfg)[0])
            f = lambda full=full: full(params, xj, K, key)
        else:
            f = lambda obf=obf: protect(params, xj, jnp.asarray(obf(key, x)), K)
        record(f"{name} + protect", timeit(f, args.runs))

    # Faces per second at the best of a few batch sizes: blur + protect (the paper's fastest row).
    blur = obfuscators.make("blur", preset=args.preset, mode="eval")
    full = jax.jit(lambda p, x, K, k: flow.protect(p, x, blur(k, x), K, cfg)[0])
    sweep = []
    print(f"\nblur + protect by batch size ({args.batches}):")
    for bs in [int(v) for v in args.batches.split(",") if v.strip()]:
        xb = jnp.asarray(smooth_images(rng, bs, s))
        Kb = keys.random_key(jax.random.key(3), bs, s, s)
        try:
            med = statistics.median(timeit(lambda: full(params, xb, Kb, jax.random.key(2)), args.runs))
        except Exception as e:  # noqa: BLE001 - out of memory at a large batch: report and go on
            print(f"  batch {bs}: failed ({type(e).__name__})")
            continue
        sweep.append({"batch": bs, "median_s": med, "faces_per_s": bs / med})
        print(f"  batch {bs:>4}: {med:9.4f} s/batch, {bs / med:10.1f} faces/s", flush=True)
    best = max(sweep, key=lambda r: r["faces_per_s"]) if sweep else None
    if best:
        print(f"best: {best['faces_per_s']:.1f} faces/s at batch {best['batch']}")
    print(f"paper (Table V, {PAPER['device']}, batch 16, 112×112): {PAPER['s_per_batch_blur']} s/batch with blur, "
          f"{PAPER['s_per_batch_simswap']} s with SimSwap")
    result = {"device": device, "model": what, "parameters": n_params, "batch": b, "size": s, "runs": args.runs,
              "calls": rows, "batch_sweep": sweep, "best": best, "paper": PAPER}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()

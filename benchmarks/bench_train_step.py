"""The project's own jitted training step, timed with paired vs separate recoveries.

    python benchmarks/bench_train_step.py [--config fast] [--mode randwr] [--batch 12] [--size 112]
                                          [--lpips] [--runs 7]

It builds the step exactly as `experiments.train` does (`training.step.make_train_step` on the
run's mesh, `training.state.create_train_state`), feeds it a fixed batch of real-looking
inputs (seeded noise images: the step's cost does not depend on pixel values), and times
`config.paired_recovery = True` (the right- and wrong-key recoveries as one inverse pass,
`flow.recover_keys`) against `False` (two `flow.recover` calls), alternating run by run so
both see the same machine load. Prints the median seconds per step and the ratio.
`--lpips` turns on the LPIPS loss terms (needs the lpips weights, see README).

Measured for issue 22 (2-core AMD EPYC, quiet, fast config, randwr, b12 @112, LPIPS off, median of 5):
paired 11.145 s/step, separate 8.698 s/step (paired / separate 1.281); on one core (taskset -c 0,
single-threaded XLA) 16.5 vs 13.5 s. The stacked batch was slower, so `paired_recovery` is off by default.
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from proface_jax.training import config as train_config
from proface_jax.training.mesh import make_mesh, shard_batch
from proface_jax.training.state import create_train_state
from proface_jax.training.step import make_train_step


def build(args, paired: bool):
    c = train_config.get(args.config, args.mode)
    c.image_size, c.batch_size, c.paired_recovery = args.size, args.batch, paired
    c.loss.use_lpips = bool(args.lpips)
    mesh = make_mesh(c.batch_size)
    lpips_params = None
    if args.lpips:
        from proface_jax import lpips

        lpips_params = lpips.load_params()
    step = make_train_step(c, mesh, lpips_params)
    state = create_train_state(jax.random.key(0), c)
    kx, ky = jax.random.split(jax.random.key(1))
    shape = (c.batch_size, c.image_size, c.image_size, 3)
    batch = shard_batch({"x": jax.random.uniform(kx, shape, jnp.float32, -1, 1),
                         "y": jax.random.uniform(ky, shape, jnp.float32, -1, 1)}, mesh)
    return step, state, batch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="fast", help="a training preset (training.config.get)")
    ap.add_argument("--mode", default="randwr")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--lpips", action="store_true")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    runs = {}
    for paired in (True, False):
        step, state, batch = build(args, paired)
        t = time.perf_counter()
        state, m = step(state, batch, jax.random.key(2))  # compile
        jax.block_until_ready(m)
        print(f"paired={paired}: compile + first step {time.perf_counter() - t:.1f} s, loss {float(m['loss']):.5f}")
        runs[paired] = dict(step=step, state=state, batch=batch, times=[])
    for i in range(args.runs):
        for paired, r in runs.items():
            t = time.perf_counter()
            r["state"], m = r["step"](r["state"], r["batch"], jax.random.key(3 + i))
            jax.block_until_ready(m)
            r["times"].append(time.perf_counter() - t)
    med = {p: statistics.median(r["times"]) for p, r in runs.items()}
    print(f"{args.config} {args.mode} batch {args.batch} @ {args.size}, LPIPS {'on' if args.lpips else 'off'}, "
          f"{jax.device_count()} device(s), median of {args.runs}:")
    print(f"  paired recoveries   {med[True]:.3f} s/step   ({1 / med[True]:.3f} steps/s)")
    print(f"  separate recoveries {med[False]:.3f} s/step   ({1 / med[False]:.3f} steps/s)")
    print(f"  paired / separate   {med[True] / med[False]:.3f}")


if __name__ == "__main__":
    main()

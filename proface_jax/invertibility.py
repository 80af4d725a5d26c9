"""Numerical invertibility checker: round-trip error per block and for the whole flow.

    python -m proface_jax.invertibility [--checkpoint PATH|NAME] [--random-scale S]
                                        [--images DIR] [--batch 4] [--size 112]

For each SACB, the block's real input (taken from the forward pass) is pushed
through the block and back; for the whole flow, `unprotect(protect(x, y))`.
Errors are max and mean |Δ| over the batch, in float32 and in float64 (the same
params and inputs cast up), so float32 rounding can be told from a broken
inverse (which would show in float64 too).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import flow, protocol, variants
from proface_jax.testing import random_params  # noqa: F401  (the CLI's --random-scale; benchmarks import it here)
from proface_jax.dwt import haar_dwt, haar_iwt


def cast(tree, dtype):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), tree)


def _err(a, b):
    d = jnp.abs(jnp.asarray(a) - jnp.asarray(b))
    return float(d.max()), float(d.mean())


def round_trip_errors(params, x, y, K, config=None) -> dict[str, tuple[float, float]]:
    """{'dwt', 'block_i' (and 'mix_i'), 'flow'} -> (max |Δ|, mean |Δ|), in the dtype of the inputs."""
    cfg = flow.FlowConfig.from_any(config)
    out = {"dwt": _err(haar_iwt(haar_dwt(x)), x)}
    z = (haar_dwt(x), haar_dwt(y))
    # each step of the variant's wavelet chain (blocks, and mixers if any) on its real input
    for name, step in flow.wavelet_chain(cfg, len(flow.block_names(params))).steps:
        fwd = jax.jit(lambda p, z, K, step=step: step.forward(p, z, K)[0])
        inv = jax.jit(lambda p, z, K, step=step: step.inverse(p, z, K)[0])
        z1 = fwd(params[name], z, K)
        (X0, Y0), (X, Y) = inv(params[name], z1, K), z
        out[name] = tuple(max(e) if i == 0 else (e[0] + e[1]) / 2
                          for i, e in enumerate(zip(_err(X0, X), _err(Y0, Y))))
        z = z1
    protected, byproduct = protocol.protect_jit(params, x, y, K, cfg)
    x2, y2 = protocol.unprotect_jit(params, protected, byproduct, K, cfg)
    ex, ey = _err(x2, x), _err(y2, y)
    out["flow"] = (max(ex[0], ey[0]), (ex[1] + ey[1]) / 2)
    return out


def check(params, x, y, K, config=None) -> dict[str, dict[str, tuple[float, float]]]:
    """Errors in float32 and float64 for the same params and inputs."""
    res = {"float32": round_trip_errors(cast(params, jnp.float32), jnp.float32(x), jnp.float32(y),
                                        jnp.float32(K), config)}
    with jax.enable_x64(True):
        res["float64"] = round_trip_errors(cast(params, jnp.float64), jnp.asarray(x, jnp.float64),
                                           jnp.asarray(y, jnp.float64), jnp.asarray(K, jnp.float64), config)
    return res


def format_table(res) -> str:
    rows = list(res["float32"])
    lines = [f"{'stage':<10} {'f32 max':>10} {'f32 mean':>10} {'f64 max':>10} {'f64 mean':>10}"]
    for r in rows:
        a, b = res["float32"][r], res["float64"][r]
        lines.append(f"{r:<10} {a[0]:10.3e} {a[1]:10.3e} {b[0]:10.3e} {b[1]:10.3e}")
    return "\n".join(lines)


def _load_images(folder: str, n: int, size: int) -> np.ndarray:
    from proface_jax import images

    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    if not files:
        raise SystemExit(f"error: no images in {folder}")
    return np.stack([images.to_unit(images.resize(images.load_rgb(f), (size, size))) for f in files])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proface_jax.invertibility", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="checkpoint path or shipped name; default: random params")
    ap.add_argument("--random-scale", type=float, default=8.0, help="last-conv gain of the random scale nets")
    ap.add_argument("--shift-scale", type=float, default=0.5, help="last-conv gain of the random shift nets")
    ap.add_argument("--internal-gain", type=float, default=1.0, help="gain of convs 1-4 of the random subnets")
    ap.add_argument("--num-blocks", type=int, default=3, help="N for random params")
    ap.add_argument("--variant", default="paper", choices=variants.names(), help="flow variant for random params")
    ap.add_argument("--images", help="folder of face images (default: uniform noise images)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from proface_jax import checkpoint, keys

    rng = jax.random.key(args.seed)
    if args.checkpoint:
        try:
            ck = checkpoint.load_checkpoint(args.checkpoint)
        except checkpoint.CheckpointError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        params, cfg, what = ck.params, ck.config, f"checkpoint {ck.path} (model {ck.model_id}, {ck.mode})"
    else:
        cfg = variants.get(args.variant, num_blocks=args.num_blocks)
        params = random_params(rng, cfg, args.random_scale, args.shift_scale, args.internal_gain)
        what = (f"random params (variant {args.variant}, N={cfg.num_blocks}, last-conv gains scale {args.random_scale} / "
                f"shift {args.shift_scale}, seed {args.seed})")
    shape = (args.batch, args.size, args.size, 3)
    if args.images:
        x = _load_images(args.images, args.batch, args.size)
    else:
        x = np.asarray(jax.random.uniform(jax.random.fold_in(rng, 2), shape, minval=-1, maxval=1))
    y = np.asarray(jax.random.uniform(jax.random.fold_in(rng, 3), x.shape, minval=-1, maxval=1))
    K = keys.random_key(jax.random.fold_in(rng, 4), x.shape[0], x.shape[1], x.shape[2])
    print(f"{what}; {x.shape[0]} images {x.shape[1]}×{x.shape[2]}, random ±1 keys")
    print(format_table(check(params, x, y, K, cfg)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A quick keyless-attacker probe (issue 24 (b)): does a network read x from ŷ better than from y?

Trains the evaluation's attacker (`proface_jax.adversary.AttackNet`, Adam, L1) on N train-split
pairs (ŷ, x) of a model, and the same network on (y, x) — the no-protection baseline — then scores
both on held-out validation faces (L1 and PSNR to x). Cheaper than `experiments.evaluate`'s keyless
section (no recognizer, one size, no report) and meant for choosing runs; the evaluation stays the
measure. `--save` writes the ŷ attacker's params for `--config.adversary.init_from`.

    python benchmarks/keyless_probe.py --checkpoint proface_jax/weights/randwr.pfj --size 64 --steps 600
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from proface_jax import adversary, checkpoint, images, metrics  # noqa: E402
from proface_jax.evaluation.faces import build_obfuscators, load_faces, obfuscate, random_maps  # noqa: E402
from proface_jax.evaluation.keyless import train_attacker  # noqa: E402
from proface_jax.evaluation.model import Model  # noqa: E402
from proface_jax.training.config import DEFAULT_DATA  # noqa: E402

OBFUSCATORS = ("blur", "pixelate", "median", "mask")


def pairs(model: Model, data: str, split: str, n: int, seed: int, size: int, batch: int = 16):
    """(x, y, stored ŷ) in [-1, 1] (y and ŷ at their 8-bit levels), obfuscators taking turns."""
    x_u8, names = load_faces(data, split, n, seed, size)
    x = images.to_unit(x_u8)
    obfs = build_obfuscators(list(OBFUSCATORS), "paper112", None, None)
    y = np.empty_like(x)
    for i, name in enumerate(OBFUSCATORS):
        idx = np.arange(i, len(x), len(OBFUSCATORS))
        y[idx] = obfuscate(obfs[name], name, "paper112", jax.random.fold_in(jax.random.key(seed), 2000 + i), x[idx],
                           [names[j] for j in idx], batch)
    y = images.to_unit(images.from_unit(y))
    stored, _ = model.protect_all(x, y, random_maps(seed, 10_000, len(x), size), batch)
    return x, y, images.to_unit(stored)


def held_out(att, inputs, x) -> dict:
    est = att.apply(inputs)
    est8 = images.to_unit(images.from_unit(est))
    return {"l1": float(np.mean(np.abs(est - x))), "psnr": float(np.mean(np.asarray(metrics.psnr(est8, x))))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--train", type=int, default=800, help="train-split pairs")
    ap.add_argument("--heldout", type=int, default=96, help="validation-split faces scored")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-baseline", action="store_true", help="train only the ŷ attacker")
    ap.add_argument("--save", default="", help="write the ŷ attacker's params here (msgpack)")
    ap.add_argument("--json", default="", help="write the results here")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = Model(checkpoint.load_checkpoint(a.checkpoint), Path(a.checkpoint).name)
    xt, yt, st = pairs(model, a.data, "train", a.train, a.seed + 1, a.size, a.batch)
    xv, yv, sv = pairs(model, a.data, "validation", a.heldout, a.seed + 2, a.size, a.batch)
    out = {"checkpoint": a.checkpoint, "args": vars(a), "train_pairs": len(xt), "heldout_faces": len(xv)}
    runs = [("stored", st, sv)] + ([] if a.skip_baseline else [("y", yt, yv)])
    for label, inp_t, inp_v in runs:
        att = train_attacker(inp_t, xt, a.steps, a.batch, a.lr, a.width, a.seed, log_every=50)
        out[label] = {"train_curve": att.losses, "seconds": att.seconds, "heldout": held_out(att, inp_v, xv)}
        print(f"{label:>6}: held-out L1 {out[label]['heldout']['l1']:.4f}, PSNR {out[label]['heldout']['psnr']:.2f} dB; "
              f"train L1 every 50 steps {[round(v, 4) for _, v in att.losses]} ({att.seconds:.0f} s)", flush=True)
        if label == "stored" and a.save:
            adversary.save_params(a.save, att.params)
    out["seconds"] = time.perf_counter() - t0
    if a.json:
        images.atomic_write_bytes(a.json, json.dumps(out, indent=1).encode())
    return out


if __name__ == "__main__":
    main()

"""Evaluation section 4, the keyless attacker.

Keyless attacker (`train_attacker`): someone who has the model and pairs (x, ŷ) but not the
password trains a small U-Net (`proface_jax.adversary.AttackNet`, Flax) to map the stored protected image ŷ to the
original x with an L1 loss and Adam (optax). Its test-set output is scored like a recovery.
"""
from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from proface_jax import images
from proface_jax.adversary import AttackNet, init_params
from proface_jax.evaluation.attacks import features_batched, match
from proface_jax.evaluation.faces import load_faces, obfuscate, random_maps
from proface_jax.evaluation.scoring import average, score_all, summary



class Attacker(NamedTuple):
    params: dict
    width: int
    losses: list  # (step, mean L1 over the last few steps)
    seconds: float

    def apply(self, images, batch: int = 32) -> np.ndarray:
        """The attacker's estimates of x, clamped to [-1, 1]."""
        fn = _apply_fn(self.width)
        return features_batched(lambda a: fn(self.params, a), np.asarray(images, np.float32), batch)


@functools.lru_cache(maxsize=None)
def _apply_fn(width: int):
    net = AttackNet(width)
    return jax.jit(lambda p, a: jnp.clip(net.apply({"params": p}, a), -1.0, 1.0))


@functools.lru_cache(maxsize=None)
def _train_step_fn(width: int, lr: float):
    net = AttackNet(width)
    tx = optax.adam(lr)

    def loss_fn(p, a, b):
        return jnp.mean(jnp.abs(net.apply({"params": p}, a) - b))

    @jax.jit
    def step(p, opt, a, b):
        loss, g = jax.value_and_grad(loss_fn)(p, a, b)
        upd, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, upd), opt, loss

    return net, tx, step


def train_attacker(inputs: np.ndarray, targets: np.ndarray, steps: int, batch: int = 16, lr: float = 1e-3,
                   width: int = 32, seed: int = 0, log_every: int = 50) -> Attacker:
    """Fits AttackNet on pairs (inputs -> targets), NHWC [-1, 1], by Adam on the L1 loss."""
    inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)
    if inputs.shape != targets.shape or inputs.ndim != 4:
        raise ValueError(f"attacker pairs must be two NHWC batches of one shape, got {inputs.shape}, {targets.shape}")
    n = len(inputs)
    batch = min(batch, n)
    net, tx, step = _train_step_fn(width, float(lr))
    params = init_params(width, inputs.shape[1:], seed)
    opt = jax.jit(tx.init)(params)
    order = np.random.default_rng([seed, 7])
    t0 = time.perf_counter()
    hist, recent = [], []
    perm, pos = order.permutation(n), 0
    for s in range(int(steps)):
        if pos + batch > n:
            perm, pos = order.permutation(n), 0
        idx = perm[pos:pos + batch]
        pos += batch
        params, opt, loss = step(params, opt, inputs[idx], targets[idx])
        recent.append(loss)
        if (s + 1) % log_every == 0 or s + 1 == steps:
            hist.append((s + 1, float(np.mean(jax.device_get(recent)))))
            recent = []
    jax.block_until_ready(params)
    return Attacker(params, width, hist, time.perf_counter() - t0)


# --------------------------------------------------------------------------- section 4


def run_section(ctx, bar) -> None:
    """Section 4: a y → x network (the no-protection baseline), then per checkpoint an attacker
    trained on (ŷ, x) pairs of the train split; fills ctx.R['keyless'] and ctx.ATT_PICS."""
    args, batch = ctx.args, ctx.batch
    try:
        xt_u8, tnames = load_faces(ctx.data, "train", args.attack_train, args.seed + 1, ctx.size)
    except ValueError as e:  # a small folder of one's own may have no face in the train split
        xt_u8, tnames = ctx.x_u8, ctx.names
        ctx.R["meta"]["warnings"].append(f"keyless attacker: no train split ({e}); it trained on the scored faces "
                                         "themselves, which flatters it.")
    xt = images.to_unit(xt_u8)
    nt = len(xt)
    yt = np.empty_like(xt)
    for i, name in enumerate(ctx.obf_names):
        idx = np.arange(i, nt, len(ctx.obf_names))
        if len(idx):
            yt[idx] = obfuscate(ctx.obfs[name], name, args.preset, jax.random.fold_in(jax.random.key(args.seed), 2000 + i),
                                xt[idx], [tnames[j] for j in idx], batch)
    maps_t = random_maps(args.seed, 10_000, nt, ctx.size)
    info = {"train_pairs": nt, "steps": args.attack_steps, "batch": args.attack_batch, "width": args.attack_width,
            "lr": args.attack_lr, "models": {}}
    base_att = train_attacker(images.to_unit(images.from_unit(yt)), xt, args.attack_steps, args.attack_batch,
                              args.attack_lr, args.attack_width, args.seed)
    base_ests = {name: base_att.apply(images.to_unit(images.from_unit(ctx.Y[name])), batch) for name in ctx.obf_names}
    ctx.ATT_EST["_baseline"] = {name: images.from_unit(e) for name, e in base_ests.items()}
    baseline = _eval_estimates(ctx, base_ests)
    info["baseline_y_to_x"] = {"seconds": base_att.seconds, "loss_curve": base_att.losses, **baseline}
    bar.update()
    pre = _pre_obfuscated(ctx)
    for m in ctx.models:
        stored_t, _ = m.protect_all(xt, yt, maps_t, batch)
        att = train_attacker(images.to_unit(stored_t), xt, args.attack_steps, args.attack_batch, args.attack_lr,
                             args.attack_width, args.seed)
        ests = {name: att.apply(images.to_unit(ctx.STORED[m.label, name]), batch) for name in ctx.obf_names}
        info["models"][m.label] = _compare(ctx, m, att, _eval_estimates(ctx, ests), baseline, pre)
        ctx.ATT_PICS[m.label] = {name: images.from_unit(ests[name][: args.keep]) for name in ctx.obf_names}
        ctx.ATT_EST[m.label] = {name: images.from_unit(ests[name]) for name in ctx.obf_names}
        bar.update()
        a = info["models"][m.label]["avg"]
        bar.write(f"[evaluate]   {m.label}: attacker {a['attacker']['psnr']:.2f} dB to x vs random key "
                  f"{a['random_key']['psnr']:.2f} dB (y→x network {a['baseline']['psnr']:.2f} dB); "
                  f"trained {att.seconds:.1f} s")
    ctx.ATT_PICS["_baseline"] = {
        name: images.from_unit(base_att.apply(images.to_unit(images.from_unit(ctx.Y[name][: args.keep])), batch))
        for name in ctx.obf_names}
    ctx.R["keyless"] = info


def _eval_estimates(ctx, est_by_obf: dict) -> dict:
    """Estimates of x per obfuscator, scored against x and re-identified against the gallery."""
    per = {}
    for name, est in est_by_obf.items():
        sc, f = score_all(ctx.scorer, est, ctx.x, ctx.batch, features=True)
        d = summary(sc)
        for kind, ff in f.items():
            r = match(kind, ff, ctx.gallery[kind])
            d[f"{kind}_top1"], d[f"{kind}_top5"] = r["top1"], r["top5"]
        per[name] = d
    return {"per_obfuscator": per, "avg": average(list(per.values()))}


def _pre_obfuscated(ctx) -> dict:
    """y itself as an estimate of x, per obfuscator (scores and re-identification)."""
    pre = {}
    for name in ctx.obf_names:
        d = dict(ctx.y_vs_x[name])
        for kind in ctx.scorer.kinds:
            r = match(kind, ctx.y_feats[name][kind], ctx.gallery[kind])
            d[f"{kind}_top1"], d[f"{kind}_top5"] = r["top1"], r["top5"]
        pre[name] = d
    return pre


def _compare(ctx, m, att: Attacker, res: dict, baseline: dict, pre: dict) -> dict:
    """One checkpoint's attacker beside the random-key recovery, ŷ itself, the y → x network and y;
    also adds the attacker rows to ctx.R['attacks']."""
    per = {}
    for name in ctx.obf_names:
        t8 = ctx.R["tables"][m.label]["8bit"][name]
        A = ctx.R["attacks"][m.label]["per_obfuscator"][name]
        rk = dict(t8["wrong_vs_x"])
        idn = summary(score_all(ctx.scorer, images.to_unit(ctx.STORED[m.label, name]), ctx.x, ctx.batch))
        for kind in ctx.scorer.kinds:
            rk[f"{kind}_top1"] = A["wrong_recovery"][kind]["top1"]
            idn[f"{kind}_top1"] = A["protected"][kind]["top1"]
        per[name] = {"attacker": res["per_obfuscator"][name], "random_key": rk, "identity": idn,
                     "baseline": baseline["per_obfuscator"][name], "pre_obfuscated": pre[name]}
        for row, src in (("attacker", res), ("attacker_baseline", baseline)):
            A[row] = {kind: {"top1": src["per_obfuscator"][name][f"{kind}_top1"],
                             "top5": src["per_obfuscator"][name][f"{kind}_top5"]} for kind in ctx.scorer.kinds}
    ctx.R["attacks"][m.label]["avg"] = average(list(ctx.R["attacks"][m.label]["per_obfuscator"].values()))
    return {"seconds": att.seconds, "loss_curve": att.losses, "per_obfuscator": per, "avg": average(list(per.values()))}

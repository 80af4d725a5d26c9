"""Evaluation section 5: how recovery survives JPEG, resizing and ±1-level noise of the stored ŷ."""
from __future__ import annotations

import collections
import io

import numpy as np

from proface_jax import images, metrics
from proface_jax.evaluation.faces import key_of
from proface_jax.evaluation.scoring import PSNR_CAP, average, chunks, mean_scores, pad_to, u8


PERTURBATIONS = {
    "none": "8-bit PNG, unchanged",
    "jpeg95": "JPEG quality 95",
    "jpeg90": "JPEG quality 90",
    "jpeg75": "JPEG quality 75",
    "resize0.9": "resize to 90% and back (bicubic)",
    "resize1.1": "resize to 110% and back (bicubic)",
    "noise1": "uniform noise in {−1, 0, +1} levels",
}


def perturb(u8_images: np.ndarray, kind: str, seed: int) -> np.ndarray:
    from PIL import Image

    if kind == "none":
        return u8_images.copy()
    if kind.startswith("jpeg"):
        q = int(kind[4:])
        out = []
        for im in u8_images:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=q)
            buf.seek(0)
            out.append(np.asarray(Image.open(buf).convert("RGB"), np.uint8))
        return np.stack(out)
    if kind.startswith("resize"):
        f = float(kind[6:])
        h, w = u8_images.shape[1:3]
        hh, ww = max(2, int(round(h * f))), max(2, int(round(w * f)))
        return np.stack([images.resize(images.resize(im, (hh, ww)), (h, w)) for im in u8_images])
    if kind == "noise1":
        g = np.random.default_rng([seed, 5])
        noise = g.integers(-1, 2, u8_images.shape)
        return np.clip(u8_images.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown perturbation {kind!r}")


def run_section(ctx, bar) -> None:
    """Section 5 for every checkpoint: ctx.R['robustness'] and its pictures."""
    r = min(ctx.args.robust_n or ctx.n, ctx.n)
    ctx.R["robustness_faces"] = r
    for m in ctx.models:
        acc = {kind: {} for kind in PERTURBATIONS}
        ctx.ROB_PICS[m.label] = {}
        for i, name in enumerate(ctx.obf_names):
            for kind, d in _one_obfuscator(ctx, m, i, name, r).items():
                acc[kind][name] = d
            bar.update()
        res = {kind: {"per_obfuscator": acc[kind], "avg": average(list(acc[kind].values()))} for kind in acc}
        ctx.R["robustness"][m.label] = res
        bar.write(f"[evaluate]   {m.label}: recovery PSNR " + ", ".join(
            f"{k} {res[k]['avg']['psnr']:.1f}" for k in PERTURBATIONS))


def _one_obfuscator(ctx, m, i: int, name: str, r: int) -> dict:
    batch, scorer, x = ctx.batch, ctx.scorer, ctx.x
    st = ctx.STORED[m.label, name][:r]
    perts = {kind: perturb(st, kind, ctx.args.seed + i) for kind in PERTURBATIONS}
    per = {kind: collections.defaultdict(list) for kind in PERTURBATIONS}
    for s, e in chunks(r, batch):
        X = scorer.prep(pad_to(x[s:e], batch), True)
        Kb = key_of(pad_to(ctx.MAPS[name][0][s:e], batch))
        for kind, pert in perts.items():
            rec, _ = m.recover(pad_to(images.to_unit(pert[s:e]), batch), Kb)
            for metric, v in scorer.compare(scorer.prep(rec, True), X).items():
                per[kind][metric].append(v[: e - s])
            if i == 0 and s == 0:
                ctx.ROB_PICS[m.label][kind] = (pert[0], u8(np.asarray(rec)[0]))
    out = {}
    for kind, pert in perts.items():
        d = mean_scores(per[kind])
        d["input_psnr"] = float(np.mean(np.minimum(
            np.asarray(metrics.psnr(images.to_unit(pert), images.to_unit(st))), PSNR_CAP)))
        out[kind] = d
    return out

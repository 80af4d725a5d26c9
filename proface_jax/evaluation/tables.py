"""Evaluation section 1: the paper's Tables I–III (protection, correct and wrong recovery), from
the 8-bit PNG a user stores and from floats, per obfuscator and averaged."""
from __future__ import annotations

import collections

import numpy as np

from proface_jax.evaluation.faces import key_of
from proface_jax.evaluation.model import Model
from proface_jax.evaluation.scoring import Scorer, average, chunks, mean_scores, pad_to, u8

PATHS = ("8bit", "float")


# group -> (image key of the forward pass, reference, from_8bit)
TABLE_GROUPS = {
    ("privacy", "8bit"): ("stored", "y", True), ("privacy", "float"): ("protected", "y", False),
    ("recovery", "8bit"): ("recovered", "x", True), ("recovery", "float"): ("recovered_float", "x", False),
    ("wrong_vs_x", "8bit"): ("wrong", "x", True), ("wrong_vs_y", "8bit"): ("wrong", "y", True),
    ("wrong_vs_x", "float"): ("wrong_float", "x", False), ("wrong_vs_y", "float"): ("wrong_float", "y", False),
    ("byproduct_protect", "8bit"): ("byproduct", "x", True),
    ("byproduct_recover", "8bit"): ("recovered_byproduct", "x", True),
    ("byproduct_wrong", "8bit"): ("wrong_byproduct", "x", True),
}
# probe name -> image key (attacked against the gallery of originals)
PROBES = {"wrong_recovery": "wrong", "protected": "stored", "byproduct_protect": "byproduct",
          "byproduct_recover": "recovered_byproduct", "byproduct_wrong": "wrong_byproduct"}
# images of the first batch kept for the figures
SAMPLE_KEYS = ("stored", "recovered", "wrong", "byproduct", "recovered_byproduct", "wrong_byproduct")
# images kept whole (uint8) for the face recognizer (`evaluation.identity`): the probes and x̌
IDENTITY_KEYS = ("stored", "recovered", "wrong", "byproduct", "recovered_byproduct", "wrong_byproduct")
PROBE_LABEL = {
    "wrong_recovery": "ẍ wrong-key recovery", "protected": "ŷ protected", "pre_obfuscated": "y pre-obfuscated (baseline)",
    "byproduct_protect": "x̂ protection byproduct", "byproduct_recover": "y̌ recovery byproduct",
    "byproduct_wrong": "wrong-key recovery byproduct", "attacker": "keyless attacker's estimate from ŷ",
    "attacker_baseline": "y → x network's estimate from y", "one_bit": "recovery, password 1 bit away",
    "one_char": "recovery, password 1 char away", "other_password": "recovery, unrelated password",
    "spoof": "spoofing: recover(y), right password",
}


def main_pass(model: Model, x, y, maps_r, maps_w, scorer: Scorer, batch: int, keep: int):
    """Protect + recover (right and wrong key, 8-bit and float) for one obfuscator: scores,
    attack features of the probes, the stored ŷ (uint8), sample images and the 8-bit images of
    `IDENTITY_KEYS` (for the face recognizer)."""
    per = {g: collections.defaultdict(list) for g in TABLE_GROUPS}
    feats = {p: collections.defaultdict(list) for p in PROBES}
    stored = np.empty(x.shape, np.uint8)
    kept = {key: np.empty(x.shape, np.uint8) for key in IDENTITY_KEYS}
    samples = {}
    for s, e in chunks(len(x), batch):
        k = e - s
        xb, yb = pad_to(x[s:e], batch), pad_to(y[s:e], batch)
        o = model.forward(xb, yb, key_of(pad_to(maps_r[s:e], batch)), key_of(pad_to(maps_w[s:e], batch)))
        o = {key: np.asarray(v) for key, v in o.items()}
        o["x"], o["y"] = xb, yb
        cache: dict = {}

        def P(key, eight):
            eight = eight or key == "x"  # x is on the 8-bit grid: both scorings see the same image
            if (key, eight) not in cache:
                cache[key, eight] = scorer.prep(o[key], eight)
            return cache[key, eight]

        for g, (key, ref, eight) in TABLE_GROUPS.items():
            for m, v in scorer.compare(P(key, eight), P(ref, eight)).items():
                per[g][m].append(v[:k])
        for p, key in PROBES.items():
            for kind, f in scorer.features(P(key, True)).items():
                feats[p][kind].append(f[:k])
        stored[s:e] = u8(o["stored"][:k])
        for key in IDENTITY_KEYS:
            kept[key][s:e] = u8(o[key][:k])
        if s == 0:
            samples = {key: u8(o[key][:keep]) for key in SAMPLE_KEYS}
    scores = {g: mean_scores(v) for g, v in per.items()}
    feats = {p: {kind: np.concatenate(v) for kind, v in d.items()} for p, d in feats.items()}
    return scores, feats, stored, samples, kept


def tables_for(scores_by_obf: dict) -> dict:
    """{path: {obf|'avg': {group: {metric: mean}}}} from {obf: {(group, path): {metric: mean}}}."""
    out = {}
    for path in PATHS:
        d = {}
        for obf, sc in scores_by_obf.items():
            d[obf] = {g: v for (g, p), v in sc.items() if p == path}
        d["avg"] = average(list(d.values()))
        out[path] = d
    return out


def run_section(ctx, bar) -> None:
    """Section 1 for every checkpoint: fills ctx.R['tables'] and the stored ŷ, samples and probe
    features the later sections reuse."""
    for m in ctx.models:
        per_obf = {}
        for name in ctx.obf_names:
            sc, feats, stored, samples, kept = main_pass(m, ctx.x, ctx.Y[name], *ctx.MAPS[name], ctx.scorer, ctx.batch,
                                                   ctx.args.keep)
            per_obf[name] = sc
            ctx.STORED[m.label, name], ctx.SAMPLES[m.label, name], ctx.PROBE_FEATS[m.label, name] = stored, samples, feats
            ctx.IMAGES[m.label, name] = kept
            bar.update()
        ctx.R["tables"][m.label] = tables_for(per_obf)
        a = ctx.R["tables"][m.label]["8bit"]["avg"]
        bar.write(f"[evaluate]   {m.label}: privacy {a['privacy']['psnr']:.2f} dB, recovery {a['recovery']['psnr']:.2f} "
                  f"dB, wrong vs x {a['wrong_vs_x']['psnr']:.2f} dB, vs y {a['wrong_vs_y']['psnr']:.2f} dB (8-bit)")

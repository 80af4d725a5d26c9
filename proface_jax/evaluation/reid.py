"""Evaluation section 3: re-identification of every probe (ẍ, ŷ, byproducts, y) against the
gallery of originals with the matchers of `evaluation.attacks`."""
from __future__ import annotations

from proface_jax.evaluation import attacks
from proface_jax.evaluation.scoring import average


def run_section(ctx, bar) -> None:
    gallery = ctx.gallery
    for m in ctx.models:
        per = {}
        for name in ctx.obf_names:
            d = {p: {kind: attacks.match(kind, f, gallery[kind]) for kind, f in fs.items()}
                 for p, fs in ctx.PROBE_FEATS[m.label, name].items()}
            d["pre_obfuscated"] = {kind: attacks.match(kind, f, gallery[kind]) for kind, f in ctx.y_feats[name].items()}
            per[name] = d
        ctx.R["attacks"][m.label] = {"per_obfuscator": per, "avg": average(list(per.values()))}
        bar.update()
    n = ctx.n
    ctx.R["attacks"]["chance"] = {"top1": 1 / n, "top5": min(1.0, 5 / n), "gallery": n}
    for m in ctx.models:
        av = ctx.R["attacks"][m.label]["avg"]
        bar.write(f"[evaluate]   {m.label}: thumbnail top-1 ẍ {av['wrong_recovery']['thumbnail']['top1']:.3f}, "
                  f"y {av['pre_obfuscated']['thumbnail']['top1']:.3f}, chance {1 / n:.3f}")

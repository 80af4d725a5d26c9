"""Evaluation section 4b: identity-level privacy measured with a real face recognizer, with the
pre-obfuscated face y as the baseline.

Why y and not chance: y is shown openly, and a wrong-password recovery ẍ, the byproducts of a
wrong recovery and a keyless attacker's output are all computable from ŷ without the password.
So whatever an attacker can learn about x from y they have anyway; an image leaks only if it
identifies more people than y does (on the same faces). Chance is reported beside it.

For every probe -- y, ŷ, x̌ (right password), ẍ (wrong key), the byproducts x̂, y̌ and the
wrong-key byproduct, the keyless attacker's estimate from ŷ and the y → x network's estimate
from y -- and every obfuscator, the dlib ResNet recognizer (`evaluation.recognizer`) measures:

* top-1 / top-5 closed-set re-identification against the gallery of the n original test faces;
* verification against the probe's own original at a false-accept rate of `FAR` (threshold from
  the impostor pairs among the originals and up to `--impostors` donor faces (the validation
  split; the train split when the validation split is scored), every
  distinct file taken to be a distinct person).

Rates are pooled over (face, obfuscator) pairs (= the mean of the per-obfuscator rates), with
Wilson 95 % intervals, and compared with y's hits on the same (face, obfuscator) pairs by an
exact one-sided McNemar test: verdict "leaks" at p < 0.05, else "no more than y". For x̌ the
question is the opposite one -- is it still the same person? -- answered by its verification rate.
"""
from __future__ import annotations

import numpy as np

from proface_jax import images
from proface_jax.evaluation import recognizer as rec
from proface_jax.evaluation.options import donor_split

FAR = 1e-3
MEASURES = ("top1", "top5", "verify")
# probe -> (where the images are, key); 'y' is the baseline
PROBES = {
    "protected": ("images", "stored"), "wrong_recovery": ("images", "wrong"),
    "byproduct_protect": ("images", "byproduct"), "byproduct_recover": ("images", "recovered_byproduct"),
    "byproduct_wrong": ("images", "wrong_byproduct"), "attacker": ("attacker", None),
}
SAME_PERSON = 0.95  # x̌: verification rate at FAR 1e-3 at least this -> "same person"


def hits_of(feats: np.ndarray, gallery: np.ndarray, threshold: float) -> dict:
    """Per-face hits of probes i against original i: top-1, top-5 identification and verification."""
    ident = rec.identify(feats, gallery)
    return {"top1": ident["hits"]["top1"], "top5": ident["hits"]["top5"],
            "verify": rec.verify(feats, gallery, threshold)}


def pooled(per_obf: dict[str, dict]) -> dict:
    """{obf: {measure: hits}} -> {measure: hits over all (face, obfuscator) pairs}, obfuscators in order."""
    return {k: np.concatenate([per_obf[o][k] for o in per_obf]) for k in MEASURES}


def row(hits_by_obf: dict, base_by_obf: dict | None) -> dict:
    """A probe's pooled rates, CIs, McNemar against y and verdicts, and its per-obfuscator rates."""
    P = pooled(hits_by_obf)
    out = rec.compare_to_baseline(P, pooled(base_by_obf)) if base_by_obf is not None else \
        {k: rec.rate(v) for k, v in P.items()}
    out["per_obfuscator"] = {o: {k: float(np.mean(h[k])) for k in MEASURES} for o, h in hits_by_obf.items()}
    return out


def run_section(ctx, bar) -> None:
    """Fills ctx.R['identity'] (nothing when `--recognizer off`)."""
    args = ctx.args
    if args.recognizer == "off":
        ctx.R["identity"] = {}
        return
    R = rec.Recognizer()
    n = ctx.n
    desc = lambda a: R.descriptors(a)
    gallery = desc(ctx.x_u8)
    imp = gallery
    n_imp = 0
    if ctx.donors is not None and args.impostors > 0:
        extra = desc(np.asarray(ctx.donors)[: args.impostors])
        n_imp = len(extra)
        imp = np.concatenate([gallery, extra])
    impostor = rec.impostor_distances(imp)
    thr = rec.threshold_at_far(impostor, FAR)
    bar.update()
    y_hits = {o: hits_of(desc(images.from_unit(ctx.Y[o])), gallery, thr) for o in ctx.obf_names}
    info = {"far": FAR, "threshold": thr, "impostor_faces": int(len(imp)), "impostor_pairs": int(len(impostor)),
            "impostor_validation_faces": n_imp,
            "impostor_split": donor_split(getattr(args, "split", "test")), "gallery": n,
            "dlib_rule_0.6_far": float(np.mean(impostor < 0.6)),
            "chance": {"top1": 1 / n, "top5": min(1.0, 5 / n), "verify": FAR},
            "box": list(rec.BOX), "obfuscators": list(ctx.obf_names), "models": {}}
    info["pre_obfuscated"] = row(y_hits, None)
    if "_baseline" in ctx.ATT_EST:
        net = {o: hits_of(desc(ctx.ATT_EST["_baseline"][o]), gallery, thr) for o in ctx.obf_names}
        info["attacker_baseline"] = row(net, y_hits)
    else:
        net = None
    for m in ctx.models:
        rows = {}
        for p, (where, key) in PROBES.items():
            if where == "attacker":
                if m.label not in ctx.ATT_EST:
                    continue
                hb = {o: hits_of(desc(ctx.ATT_EST[m.label][o]), gallery, thr) for o in ctx.obf_names}
                rows[p] = row(hb, y_hits)
                if net is not None:  # the learned attacker on ŷ against the same network on y
                    rows[p]["vs_y_network"] = {k: rec.mcnemar_greater(pooled(hb)[k], pooled(net)[k]) for k in MEASURES}
                continue
            hb = {o: hits_of(desc(ctx.IMAGES[m.label, o][key]), gallery, thr) for o in ctx.obf_names}
            rows[p] = row(hb, y_hits)
        rr = {o: hits_of(desc(ctx.IMAGES[m.label, o]["recovered"]), gallery, thr) for o in ctx.obf_names}
        r = row(rr, None)
        r["verdict"] = "same person" if r["verify"]["rate"] >= SAME_PERSON else "identity lost"
        rows["correct_recovery"] = r
        info["models"][m.label] = rows
        bar.update()
        leaks = [p for p, d in rows.items() if p != "correct_recovery" and any(
            d[k].get("verdict") == "leaks" for k in MEASURES)]
        bar.write(f"[evaluate]   {m.label}: recognizer — ẍ top-1 {rows['wrong_recovery']['top1']['rate']:.3f}, "
                  f"ŷ {rows['protected']['top1']['rate']:.3f}, y {info['pre_obfuscated']['top1']['rate']:.3f}; "
                  f"x̌ verified {r['verify']['rate']:.3f}; leaks: {', '.join(leaks) or 'none'}")
    ctx.R["identity"] = info

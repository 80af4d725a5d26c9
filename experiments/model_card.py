"""Model card of a trained checkpoint, written from its evaluation and its training log.

    python -m experiments.model_card --checkpoint proface_jax/weights/randwr.pfj \
        --results eval/results.json --label "randwr.pfj (randwr)" [--metrics W/metrics.jsonl] \
        [--hardware "..."] [--wall-time "..."] [--command "..."] \
        [--identity eval_id/results.json [--identity-jitter eval_jit/results.json]] --out proface_jax/weights/randwr.md

    # only (re)write the identity section of an existing card, between its markers (or before "## Caveats"):
    python -m experiments.model_card --checkpoint proface_jax/weights/randwr.pfj --label "randwr.pfj (randwr)" \
        --identity eval_id/results.json --identity-jitter eval_jit/results.json --update proface_jax/weights/randwr.md

Every figure comes from the files given (nothing is typed in by hand): the training setting and
step count from the checkpoint's metadata, the test metrics (8-bit PNG scoring, per obfuscator
and averaged) and attack rates from `experiments.evaluate`'s results.json, the learning curve
from the run's metrics.jsonl. Hardware, wall time and the training command are free text (what
the person who trained it saw).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from proface_jax import checkpoint as ckpt_lib
from proface_jax.images import atomic_write_bytes

ROWS = {"randwr": (("privacy", "protection ŷ vs y", "higher"), ("recovery", "correct recovery x̌ vs x", "higher"),
                   ("wrong_vs_x", "wrong recovery ẍ vs x", "lower")),
        "obfswr": (("privacy", "protection ŷ vs y", "higher"), ("recovery", "correct recovery x̌ vs x", "higher"),
                   ("wrong_vs_y", "wrong recovery ẍ vs y", "higher"),
                   # no target, but the check that matters: a key-independent model recovers x with any key
                   ("wrong_vs_x", "wrong recovery ẍ vs x (low: the wrong key does not give x)", "lower"))}
TARGETS = {  # issue 5 (first bar) and the paper's averaged CelebA rows (spec §9)
    "randwr": {"privacy": (35.0, 43.8), "recovery": (35.0, 44.8), "wrong_vs_x": (12.0, 9.86)},
    "obfswr": {"privacy": (35.0, 38.2), "recovery": (35.0, 36.8), "wrong_vs_y": (25.0, 30.0)},
}


def learning_curve(metrics_path: Path) -> list[dict]:
    rows = []
    for line in metrics_path.read_text().splitlines():
        d = json.loads(line)
        if d.get("kind") == "eval":
            rows.append({k: v for k, v in d.items() if k == "step" or (k.startswith("val/") and k.count("/") == 1)})
    return rows


def card(ck, R: dict, label: str, metrics_rows: list[dict], hardware: str, wall_time: str, command: str) -> str:
    mode = ck.mode
    meta = ck.meta
    cfg = meta.get("config", {})
    tables = R["tables"][label]["8bit"]
    obfs = [o for o in tables if o != "avg"]
    ev = R["meta"]
    out = [f"# Model card: `{Path(ck.path).name}` ({mode})", ""]
    out += [f"PRO-Face S, {mode.upper()} wrong recovery, N = {ck.config.num_blocks} blocks, "
            f"{R['checkpoints'][label]['parameters']:,} parameters, model id `{ck.model_id}`.", ""]
    out += ["## Training", ""]
    loss = cfg.get("loss", {})
    optim = cfg.get("optim", {})
    out += [f"* Data: `{meta.get('data', cfg.get('data'))}`, train split (hash of the file name; "
            "validation and test splits never seen in training).",
            f"* Steps: {meta.get('steps')} of batch {cfg.get('batch_size')}, at "
            f"{cfg.get('small_size') if cfg.get('small_size') and cfg.get('small_size_steps', 0) >= meta.get('steps', 0) else cfg.get('image_size')}"
            f"×{cfg.get('small_size') if cfg.get('small_size') and cfg.get('small_size_steps', 0) >= meta.get('steps', 0) else cfg.get('image_size')} pixels; "
            f"obfuscators {cfg.get('obfuscators')} (preset {cfg.get('obfuscator_preset')}, one drawn per batch).",
            f"* Optimiser: Adam lr {optim.get('lr')}, schedule {optim.get('schedule')} "
            f"(warmup {optim.get('warmup_steps')}), clip {optim.get('grad_clip')}; 8-bit straight-through "
            f"rounding before recovery: {cfg.get('quantize_protected')}.",
            f"* Loss: LPIPS {'on' if loss.get('use_lpips') else 'off'}, margin {loss.get('margin')}, "
            f"λ {loss.get('lambdas_' + mode)}, wrong-recovery hinge on clamped ẍ: "
            f"{loss.get('wrong_on_clamped') if loss.get('wrong_on_clamped') is not None else mode == 'randwr'}, "
            f"RandWR L1 margin {loss.get('wr_l1_margin')}, decorrelation weight {loss.get('wr_decorrelate', 0.0)}"
            + (f" (thumbnails {tuple(loss.get('decorrelate_thumbs'))})" if loss.get('decorrelate_thumbs') else "")
            + (f", in-batch re-identification hinge weight {loss.get('wr_reid_hinge')}"
               if loss.get('wr_reid_hinge') else "")
            + (f", ObfsWR residual decorrelation weight {loss.get('obfs_decorrelate', 0.0)}, ObfsWR L1 triplet "
               f"margin {loss.get('obfs_l1_triplet_margin', 0.0)}." if mode == "obfswr" else ".")]
    adv = cfg.get("adversary") or {}
    if float(adv.get("weight", 0.0)) > 0:
        out.append(f"* Keyless adversary (proface_jax.adversary): weight {adv.get('weight')}, attacker width "
                   f"{adv.get('width')}, {adv.get('updates')} Adam step(s) of lr {adv.get('lr')} per training step.")
    if hardware:
        out.append(f"* Hardware: {hardware}.")
    if wall_time:
        out.append(f"* Wall time: {wall_time}.")
    if command:
        out += ["* Command:", "", "```bash", command, "```"]
    out += ["", "## Test metrics", "",
            f"`{ev['data']}`, {ev['split']} split, {ev['n_faces']} faces (seed {ev['seed']}) at "
            f"{ev['size']}×{ev['size']}, each obfuscator at its eval setting ({ev['preset']}); ŷ stored as an "
            "8-bit PNG before recovery and every output quantised to 8 bits before scoring. "
            "Fresh random keys per face; wrong key independent. Evaluated on " + str(ev.get("device")) + ".", "",
            "| metric | " + " | ".join(obfs) + " | avg. | target (issue 5) | paper CelebA avg. |",
            "|---|" + "---|" * (len(obfs) + 3)]
    for key, name, better in ROWS[mode]:
        for m in ("psnr", "ssim", "lpips"):
            if m not in tables["avg"][key]:
                continue
            cells = [f"{tables[o][key][m]:.4f}" if m == "lpips" else
                     (f"{tables[o][key][m]:.3f}" if m == "ssim" else f"{tables[o][key][m]:.2f}") for o in obfs + ["avg"]]
            tgt, paper = TARGETS[mode].get(key, ("", "")) if m == "psnr" else ("", "")
            tgt = (("≥ " if better == "higher" else "≤ ") + f"{tgt}") if tgt != "" else ""
            out.append(f"| {name} {m.upper()} | " + " | ".join(cells) + f" | {tgt} | {paper} |")
    fl = R["tables"][label].get("float", {}).get("avg", {}).get("recovery", {})
    if "psnr" in fl:
        out += ["", f"Correct recovery from the float ŷ (no PNG rounding): {fl['psnr']:.2f} dB PSNR, vs "
                f"{tables['avg']['recovery']['psnr']:.2f} dB from the 8-bit PNG (average over obfuscators)."]
    att = R.get("attacks", {}).get(label)
    if att and "avg" in att:
        ch = R["attacks"]["chance"]
        out += ["", f"Re-identification (probe matched to its original among {ch['gallery']} test faces; "
                f"chance top-1 {ch['top1']:.3f}), averaged over obfuscators:", "",
                "| probe | thumbnail top-1 | deep top-1 |", "|---|---|---|"]
        for probe, d in att["avg"].items():
            out.append(f"| {probe} | {d.get('thumbnail', {}).get('top1', float('nan')):.3f} | "
                       f"{d.get('deep', {}).get('top1', float('nan')):.3f} |")
    if metrics_rows:
        keys = [k for k in ("val/protect_psnr", "val/recover_psnr", "val/wrong_psnr", "val/wrongx_psnr")
                if k in metrics_rows[0]]
        out += ["", "## Learning curve (validation batch during training, float, training size)", "",
                "| step | " + " | ".join(k[4:] for k in keys) + " |", "|---|" + "---|" * len(keys)]
        for r in metrics_rows:
            out.append(f"| {r['step']} | " + " | ".join(f"{r[k]:.2f}" for k in keys) + " |")
    if cfg.get("init_from"):
        out.insert(out.index("## Training") + 2, f"* Warm start from `{cfg['init_from']}`.")
    out += ["", "## Caveats", "",
            "Trained and tested on UTKFace crops (non-commercial research use only); faces of other "
            "sources, sizes and alignments may score lower. The password is the only secret: see the "
            "README's security notes. Store protected images as PNG, never JPEG.", ""]
    return "\n".join(out)


IDENTITY_BEGIN = "<!-- identity section: written by `python -m experiments.model_card --identity ...`; edit there -->"
IDENTITY_END = "<!-- end of identity section -->"
IDENTITY_ROWS = (("pre_obfuscated", "y pre-obfuscated (the baseline)"), ("protected", "ŷ protected"),
                 ("wrong_recovery", "ẍ wrong-key recovery"), ("byproduct_protect", "x̂ protection byproduct"),
                 ("byproduct_recover", "y̌ recovery byproduct"), ("byproduct_wrong", "wrong-key recovery byproduct"),
                 ("attacker", "keyless attacker's estimate from ŷ"),
                 ("attacker_baseline", "y → x network's estimate from y"), ("correct_recovery", "x̌ right password"))
RETIRED_ISSUE_8 = (
    "**Issue 8's thumbnail target is retired.** It asked that wrong-key recoveries ẍ be re-identified by the "
    "16×16-thumbnail attack at most 2× chance. Chance is the wrong baseline: the pre-obfuscated face y is shown "
    "openly, and ẍ (any wrong password), the byproducts of a wrong recovery and a keyless attacker's output are "
    "all computable from ŷ without the password. Whatever identifies x in y is given away already, so the baseline "
    "for every attack on ẍ, on ŷ and on a keyless attacker is y, not chance. The questions are: (a) ŷ reveals no "
    "more identity than y, (b) no learned keyless attacker gets more from ŷ than from y, (c) ẍ carries no identity a "
    "face recognizer can find beyond y, (d) the correct recovery x̌ is the same person — measured below with a "
    "real face recognizer. The thumbnail and LPIPS-VGG matchers stay in the evaluation report, and the losses "
    "written for the old target (`loss.wr_decorrelate`, `loss.decorrelate_thumbs`, `loss.wr_reid_hinge`) stay as "
    "options.")


def _ci(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['rate']:.3f} [{lo:.2f}, {hi:.2f}]"


def _command(R: dict) -> str:
    import shlex
    return "python -m experiments.evaluate " + " ".join(shlex.quote(a) for a in R["meta"]["argv"])


def _identity_table(I: dict, label: str) -> list[str]:
    out = ["| probe | top-1 [95 % CI] | top-5 [95 % CI] | verified @FAR 1e-3 [95 % CI] | verdict |", "|---|---|---|---|---|",
           f"| chance | {I['chance']['top1']:.3f} | {I['chance']['top5']:.3f} | {I['far']:g} | |"]
    rows = dict(I["models"].get(label, {}))
    rows["pre_obfuscated"] = I["pre_obfuscated"]
    if "attacker_baseline" in I:
        rows["attacker_baseline"] = I["attacker_baseline"]
    for key, name in IDENTITY_ROWS:
        if key not in rows:
            continue
        d = rows[key]
        if key == "pre_obfuscated":
            v = "baseline"
        elif key == "correct_recovery":
            v = f"**{d['verdict']}**"
        else:
            leaks = [k for k in ("top1", "top5", "verify") if d[k].get("verdict") == "leaks"]
            v = f"**leaks** ({', '.join(leaks)}; " + ", ".join(f"p {d[k]['mcnemar']['p']:.2g}" for k in leaks) + ")" \
                if leaks else "no more than y"
            if key == "attacker_baseline":
                v += " (a learned attacker on y alone)"
            if "vs_y_network" in d:
                v += "; vs the y → x network p " + " / ".join(f"{d['vs_y_network'][k]['p']:.2g}"
                                                             for k in ("top1", "top5", "verify"))
        out.append(f"| {name} | {_ci(d['top1'])} | {_ci(d['top5'])} | {_ci(d['verify'])} | {v} |")
    return out


def identity_section(mode: str, label: str, plain: dict, jitter: dict | None = None) -> list[str]:
    """The card's identity-level privacy section and the plain-vs-jittered fidelity table, from
    `experiments.evaluate` results with the recognizer section (section 4b)."""
    out = [IDENTITY_BEGIN, "## Identity-level privacy (a face recognizer) and faces unlike the training crops", "",
           RETIRED_ISSUE_8, ""]
    for R, what in ((plain, "plain test crops"), (jitter, "jittered test crops (`--jitter`)")):
        if R is None:
            continue
        I = R.get("identity") or {}
        if label not in I.get("models", {}):
            raise ValueError(f"no recognizer results for {label!r} in the {what} run")
        ev = R["meta"]
        out += [f"### Recognizer, {what}: {ev['n_faces']} UTKFace test faces × {len(I['obfuscators'])} obfuscators", "",
                f"dlib ResNet descriptors (99.38 % on LFW); identification against the {I['gallery']} originals; "
                f"verification against the own original at FAR {I['far']:g} (threshold {I['threshold']:.3f} from "
                f"{I['impostor_pairs']:,} impostor pairs); Wilson 95 % intervals; exact one-sided McNemar test against "
                "y on the same (face, obfuscator) pairs, p < 0.05 → leaks. Command:", "", "```bash", _command(R), "```", ""]
        out += _identity_table(I, label)
        out.append("")
    K = plain.get("keyless") or {}
    if K:
        km = K.get("models", {}).get(label, {})
        out += [f"Keyless attacker's budget (plain run): a U-Net of width {K['width']} trained for {K['steps']} Adam "
                f"steps (batch {K['batch']}, lr {K['lr']:g}, L1) on {K['train_pairs']} (8-bit ŷ, x) pairs of the train "
                f"split, {km.get('seconds', float('nan')):.0f} s on one CPU core; the y → x network the same on "
                f"(y, x). Earlier reports used 200 pairs × 200 steps × width 16.", ""]
    if jitter is not None:
        a, b = plain["tables"][label]["8bit"]["avg"], jitter["tables"][label]["8bit"]["avg"]
        out += ["### Fidelity on plain and jittered test crops (8-bit, Avg. over obfuscators)", "",
                f"Same {plain['meta']['n_faces']} test faces; jittered: each re-cropped once with a seeded random scale "
                "0.8–1.25, shift ±10 %, rotation ±10° and a colour change (commands above).", "",
                "| metric | plain test PSNR / SSIM / LPIPS | jittered test PSNR / SSIM / LPIPS | paper CelebA avg. PSNR |",
                "|---|---|---|---|"]
        cell = lambda d: " / ".join(f"{d[m]:.4f}" if m == "lpips" else (f"{d[m]:.3f}" if m == "ssim" else f"{d[m]:.2f}")
                                    for m in ("psnr", "ssim", "lpips") if m in d)
        for key, name, better in ROWS[mode]:
            paper = TARGETS[mode].get(key, ("", ""))[1]
            out.append(f"| {name} | {cell(a[key])} | {cell(b[key])} | {paper} |")
        out.append("")
    out.append(IDENTITY_END)
    return out


def update_identity(text: str, section: list[str]) -> str:
    """`text` with its identity section replaced (markers) or inserted before '## Caveats' (else appended)."""
    block = "\n".join(section)
    if IDENTITY_BEGIN in text and IDENTITY_END in text:
        head, rest = text.split(IDENTITY_BEGIN, 1)
        tail = rest.split(IDENTITY_END, 1)[1]
        return head + block + tail
    if "\n## Caveats" in text:
        head, tail = text.split("\n## Caveats", 1)
        return head.rstrip("\n") + "\n\n" + block + "\n\n## Caveats" + tail
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.model_card", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--results", help="results.json of experiments.evaluate (not needed with --update)")
    ap.add_argument("--label", required=True, help="the checkpoint's label in results.json")
    ap.add_argument("--metrics", help="the training run's metrics.jsonl (learning curve)")
    ap.add_argument("--hardware", default="")
    ap.add_argument("--wall-time", default="")
    ap.add_argument("--command", default="")
    ap.add_argument("--identity", help="results.json of a run with the recognizer section (plain test crops)")
    ap.add_argument("--identity-jitter", help="results.json of the same run with --jitter")
    ap.add_argument("--update", help="an existing card: only (re)write its identity section")
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    ck = ckpt_lib.load_checkpoint(args.checkpoint)
    ident = []
    if args.identity:
        loaded = []
        for path in (args.identity, args.identity_jitter):
            if path is None:
                loaded.append(None)
                continue
            RI = json.loads(Path(path).read_text())
            if RI["checkpoints"].get(args.label, {}).get("model_id") != ck.model_id:
                ap.error(f"{path} did not score {args.checkpoint} ({ck.model_id}) under {args.label!r}")
            loaded.append(RI)
        ident = identity_section(ck.mode, args.label, loaded[0], loaded[1])
    if args.update:
        if not ident:
            ap.error("--update needs --identity")
        text = update_identity(Path(args.update).read_text(), ident)
        atomic_write_bytes(args.update, text.encode("utf-8"))
        print(f"updated {args.update}")
        return 0
    if not args.results or not args.out:
        ap.error("--results and --out are needed (or --update CARD)")
    R = json.loads(Path(args.results).read_text())
    if args.label not in R["tables"]:
        ap.error(f"label {args.label!r} not in {args.results}; labels there: {sorted(R['tables'])}")
    evaluated = R["checkpoints"][args.label]["model_id"]
    if evaluated != ck.model_id:
        ap.error(f"{args.results} scored model {evaluated} under {args.label!r}, not {args.checkpoint} ({ck.model_id})")
    rows = learning_curve(Path(args.metrics)) if args.metrics else []
    text = card(ck, R, args.label, rows, args.hardware, args.wall_time, args.command)
    if ident:
        text = update_identity(text, ident)
    atomic_write_bytes(args.out, text.encode("utf-8"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

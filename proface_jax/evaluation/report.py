"""report.md: the results laid out like the paper's tables, section by section."""
from __future__ import annotations

import math
from pathlib import Path

from proface_jax import obfuscators
from proface_jax.evaluation.paper import PAPER, PAPER_OBF
from proface_jax.evaluation.robustness import PERTURBATIONS
from proface_jax.evaluation.scoring import METRICS, PSNR_CAP
from proface_jax.evaluation.tables import PROBE_LABEL


def fmt(v, metric: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return {"psnr": f"{v:.2f}", "ssim": f"{v:.3f}", "lpips": f"{v:.4f}"}.get(metric, f"{v:.3f}")


def _cells(d: dict | None, lpips_on: bool) -> list[str]:
    return [fmt(None if d is None else d.get(m), m) if (m != "lpips" or lpips_on) else "off" for m in METRICS]


def _paper_cells(table: str, mode: str, row: str) -> list[str]:
    ref = PAPER[table][mode].get(row)
    out = []
    for ds in ("LFW", "CelebA"):
        out += [fmt(v, m) for v, m in zip(ref[ds], METRICS)] if ref else ["–"] * 3
    return out


def paper_table(R: dict, table: str, group_of, title: str, arrows: str, models, lpips_on) -> list[str]:
    """One of Tables I–III: rows = checkpoint × (Avg., obfuscators), columns = ours (8-bit, float) and the paper."""
    a = arrows.split()
    head = (f"| Method | 8-bit PSNR {a[0]} | SSIM {a[1]} | LPIPS {a[2]} | float PSNR {a[0]} | SSIM {a[1]} | LPIPS {a[2]} "
            f"| paper LFW PSNR | SSIM | LPIPS | paper CelebA PSNR | SSIM | LPIPS |")
    lines = [title, "", head, "|" + "---|" * 13]
    for label, mode in models:
        g = group_of(mode)
        t = R["tables"][label]
        for obf in ["avg"] + [o for o in t["8bit"] if o != "avg"]:
            row = "Avg." if obf == "avg" else PAPER_OBF.get(obf, obf)
            name = f"{label} — {mode_name(mode)} ({'Avg.' if obf == 'avg' else obfuscators.LABELS.get(obf, obf)})"
            cells = _cells(t["8bit"][obf].get(g), lpips_on) + _cells(t["float"][obf].get(g), lpips_on)
            cells += _paper_cells(table, mode, row)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def mode_name(mode: str) -> str:
    return {"randwr": "RandWR", "obfswr": "ObfsWR"}.get(mode, mode)


def write_report(R: dict, out: Path) -> str:
    """Writes out/report.md from the results dict; returns its text."""
    L: list[str] = []
    for part in (_header, _section1, _section2, _section3, _section4, _section4b, _section5, _section6):
        L += part(R)
    text = "\n".join(L)
    (out / "report.md").write_text(text)
    return text


def _header(R: dict) -> list[str]:
    meta = R["meta"]
    lpips_on = meta["lpips"]
    L: list[str] = []
    add = L.append
    add("# PRO-Face S evaluation")
    add("")
    split = {"test": "test split", "all": "all faces (`--split all`)"}.get(meta["split"], f"{meta['split']} split")
    add(f"Data: `{meta['data']}`, {split}, **{meta['n_faces']} faces** (fixed sample, seed {meta['seed']}) at "
        f"{meta['size']}×{meta['size']}; obfuscators ({meta['preset']}, eval setting): "
        f"{', '.join(meta['obfuscators'])}; swap donors: {meta['donors']} faces of the "
        f"{meta.get('donor_split', 'validation')} split. "
        f"Device: {meta['device']}. {'Quick run (`--quick`): small samples, few attack steps. ' if meta['quick'] else ''}"
        f"LPIPS: {'on' if lpips_on else 'off (`--no-lpips`)'}. Written {meta['date']}.")
    add("")
    import shlex
    add("Command: `python -m experiments.evaluate " + " ".join(shlex.quote(a) for a in meta.get("argv", [])) + "`")
    add("")
    if meta.get("jitter"):
        j = meta["jitter"]
        add(f"**Jittered faces (`--jitter`):** every scored face was re-cropped once (seeded per face) with a random "
            f"scale {j['scale'][0]:g}–{j['scale'][1]:g} (log-uniform), shift ±{j['shift']:.0%} per axis, rotation "
            f"±{j['angle']:g}°, brightness / contrast ±{j['brightness']:.0%} / ±{j['contrast']:.0%}, saturation "
            f"±{j['saturation']:.0%} and per-channel gain ±{j['channel_gain']:.0%} (mirrored borders): faces unlike "
            "the aligned training crops. x, y, the gallery and every score use the jittered faces.")
        add("")
    for warning in meta.get("warnings", []):
        add(f"**Warning:** {warning}")
        add("")
    add("| checkpoint | mode | path | model id | blocks N | parameters | notes |")
    add("|---|---|---|---|---|---|---|")
    for label, c in R["checkpoints"].items():
        note = "untrained" if c["meta"].get("untrained") else ", ".join(
            f"{k}={v}" for k, v in c["meta"].items() if isinstance(v, (int, float, str)) and len(str(v)) < 30)[:120]
        add(f"| {label} | {mode_name(c['mode'])} | `{c['path']}` | {c['model_id']} | {c['config']['num_blocks']} | "
            f"{c['parameters']:,} | {note} |")
    add("")
    add("Scoring: **8-bit** = the protected image ŷ is stored as an 8-bit PNG before recovery and every output is "
        "quantised to 8 bits before scoring (what a user gets); **float** = ŷ fed to recovery as floats, outputs "
        "scored as clamped floats. Images are clamped to the valid range, never renormalised; LPIPS-VGG sees [-1, 1]. "
        f"Per-image PSNR is capped at {PSNR_CAP:g} dB (identical images). Keys: a fresh seeded ±1 map per face "
        "(right key) and an independent one (wrong key). Avg. = mean over obfuscators. The paper's rows (LFW, CelebA, "
        "Tables I–III) are quoted beside ours; our swap row is a classical face swap and is compared with the paper's "
        "FaceShifter (FS) row, template with SimSwap (SS). The paper's numbers were measured on other data at "
        "112×112; ours on UTKFace.")
    add("")
    return L


def _section1(R: dict) -> list[str]:
    meta = R["meta"]
    lpips_on = meta["lpips"]
    models = [(label, R["checkpoints"][label]["mode"]) for label in R["checkpoints"]]
    L: list[str] = []
    add = L.append
    add("## 1. Tables I–III: protection, correct recovery, wrong recovery")
    add("")
    L += paper_table(R, "privacy", lambda m: "privacy",
                     "### Table I analogue — relative privacy: protected ŷ vs pre-obfuscated y", "↑ ↑ ↓", models, lpips_on)
    add("")
    L += paper_table(R, "recovery", lambda m: "recovery",
                     "### Table II analogue — correct recovery: x̌ (right key) vs original x", "↑ ↑ ↓", models, lpips_on)
    add("")
    rand = [mm for mm in models if mm[1] == "randwr"]
    obfs = [mm for mm in models if mm[1] == "obfswr"]
    if rand:
        L += paper_table(R, "wrong", lambda m: "wrong_vs_x",
                         "### Table III analogue (RandWR) — wrong recovery ẍ (wrong key) vs original x: lower is better",
                         "↓ ↓ ↑", rand, lpips_on)
        add("")
    if obfs:
        L += paper_table(R, "wrong", lambda m: "wrong_vs_y",
                         "### Table III analogue (ObfsWR) — wrong recovery ẍ (wrong key) vs pre-obfuscated y: higher is better",
                         "↑ ↑ ↓", obfs, lpips_on)
        add("")
    add("The other reference, for every model (8-bit, Avg.): how close the wrong recovery ẍ is to x and to y.")
    add("")
    add("| Method | ẍ vs x PSNR | SSIM | LPIPS | ẍ vs y PSNR | SSIM | LPIPS |")
    add("|---|---|---|---|---|---|---|")
    for label, mode in models:
        a = R["tables"][label]["8bit"]["avg"]
        add(f"| {label} | " + " | ".join(_cells(a.get("wrong_vs_x"), lpips_on) + _cells(a.get("wrong_vs_y"), lpips_on)) + " |")
    add("")
    return L


def _skipped(R: dict, key: str, title: str) -> list[str] | None:
    """The report section of a section left out with --skip (None when it ran)."""
    if R.get(key):
        return None
    return [title, "", f"Skipped in this run (`--skip {key}`).", ""]


def _section2(R: dict) -> list[str]:
    if (sk := _skipped(R, "security", "## 2. Security analysis")) is not None:
        return sk
    meta = R["meta"]
    lpips_on = meta["lpips"]
    models = [(label, R["checkpoints"][label]["mode"]) for label in R["checkpoints"]]
    L: list[str] = []
    add = L.append
    add("## 2. Security analysis")
    add("")
    add("### 2a. Malicious recovery attempts (passwords → maps with the `paper` KDF)")
    add("")
    s0 = next(iter(R["security"].values()))
    add(f"{s0['right']['faces']} faces (obfuscators in turn), each protected with its own random 12-character "
        f"password; {s0['one_bit']['per_face']} passwords one bit away (a flipped bit of the UTF-8 bytes), "
        f"{s0['one_char']['per_face']} one character away and {s0['other_password']['per_face']} unrelated ones per "
        "face, and the spoofing attack (recover fed the 8-bit pre-obfuscated y instead of ŷ, right password). "
        f"An attempt **fails** (the privacy goal) when: RandWR — PSNR to x < {meta['fail_psnr']:g} dB; ObfsWR — it is "
        "closer to y than to x (PSNR to y > PSNR to x). For the right password, the fail fraction should be 0. "
        "Worst = the attempt closest to x (RandWR: highest PSNR to x; ObfsWR: highest PSNR to x minus PSNR to y). "
        "Scores from 8-bit images. Re-id: thumbnail top-1 of the attempts against all "
        f"{meta['n_faces']} test originals (chance {1 / meta['n_faces']:.3f}).")
    add("")
    add("| Model | attempt | tries | failed | PSNR→x mean / max | SSIM→x mean / max | LPIPS→x mean / min | "
        "PSNR→y mean | map bits = right | re-id top-1 | worst case |")
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, mode in models:
        for g in ("right", "one_bit", "one_char", "other_password", "spoof"):
            d = R["security"][label][g]
            w = d["worst"]
            lp = (f"{fmt(d.get('lpips_x_mean'), 'lpips')} / {fmt(d.get('lpips_x_min'), 'lpips')}" if lpips_on else "off")
            name = {"right": "right password", "one_bit": "1 bit away", "one_char": "1 char away",
                    "other_password": "unrelated password", "spoof": "spoofing: recover(y)"}[g]
            add(f"| {label} | {name} | {d['attempts']} | {d['fail_fraction']:.1%} | "
                f"{fmt(d['psnr_x_mean'], 'psnr')} / {fmt(d['psnr_x_max'], 'psnr')} | "
                f"{fmt(d['ssim_x_mean'], 'ssim')} / {fmt(d['ssim_x_max'], 'ssim')} | {lp} | "
                f"{fmt(d['psnr_y_mean'], 'psnr')} | {d['map_bits_agreeing']:.3f} | "
                f"{d['reid']['thumbnail']['top1']:.3f} | face {w['face']} ({w['obfuscator']}): "
                f"{fmt(w['psnr_x'], 'psnr')} dB to x, {fmt(w['psnr_y'], 'psnr')} dB to y |")
    add("")
    add("### 2b. Byproducts: how much of x they reveal")
    add("")
    add("x̂ = protection byproduct (discarded by design), y̌ = recovery byproduct (right key), and the byproduct of a "
        "wrong-key recovery; each scored against the original x (8-bit, Avg. over obfuscators) and attacked with the "
        f"re-identification matchers (gallery {meta['n_faces']}, chance top-1 {1 / meta['n_faces']:.3f}). "
        "For reference: the pre-obfuscated y vs x.")
    add("")
    add("| Model | byproduct | PSNR→x | SSIM→x | LPIPS→x | thumbnail top-1 | deep top-1 |")
    add("|---|---|---|---|---|---|---|")
    for label, mode in models:
        for b in ("byproduct_protect", "byproduct_recover", "byproduct_wrong", "pre_obfuscated"):
            sc = R["security"][label]["byproducts"][b]
            at = R["attacks"][label]["avg"].get(b, {})
            add(f"| {label} | {PROBE_LABEL[b]} | " + " | ".join(_cells(sc, lpips_on)) + " | "
                f"{fmt(at.get('thumbnail', {}).get('top1'), 'ssim')} | {fmt(at.get('deep', {}).get('top1'), 'ssim')} |")
    add("")
    add(f"Pictures: [Fig. 9 analogue]({R['figures'].get('fig9')}).")
    add("")
    return L


def _section3(R: dict) -> list[str]:
    meta = R["meta"]
    lpips_on = meta["lpips"]
    models = [(label, R["checkpoints"][label]["mode"]) for label in R["checkpoints"]]
    n = meta["n_faces"]
    L: list[str] = []
    add = L.append
    add("## 3. Re-identification attacks")
    add("")
    add(f"Each probe is matched to its own original among the gallery of all {n} test originals. "
        "Thumbnail: 16×16 grayscale, clamped, mean-removed, |correlation|. Deep: LPIPS-VGG16 activations, unit-normalised "
        "per position, averaged over positions, per-layer L2-normalised, cosine similarity"
        f"{'' if lpips_on else ' (off: needs the LPIPS weights)'}. Ties count against the attacker. "
        f"Chance: top-1 {1 / n:.3f}, top-5 {min(1, 5 / n):.3f}. Averages over obfuscators; y (pre-obfuscated) is the "
        "baseline the paper assumes privacy-free: an ObfsWR wrong recovery should re-identify no better than y.")
    add("")
    add("| Model | probe | thumbnail top-1 | top-5 | deep top-1 | top-5 |")
    add("|---|---|---|---|---|---|")
    for label, mode in models:
        av = R["attacks"][label]["avg"]
        for p in av:
            t, dp = av[p].get("thumbnail", {}), av[p].get("deep", {})
            add(f"| {label} | {PROBE_LABEL.get(p, p)} | {fmt(t.get('top1'), 'ssim')} | {fmt(t.get('top5'), 'ssim')} | "
                f"{fmt(dp.get('top1'), 'ssim')} | {fmt(dp.get('top5'), 'ssim')} |")
    add("")
    obf_names = meta["obfuscators"]
    add("Per obfuscator (thumbnail top-1 / deep top-1):")
    add("")
    add("| Model | probe | " + " | ".join(obfuscators.LABELS.get(o, o) for o in obf_names) + " |")
    add("|---|---|" + "---|" * len(obf_names))
    for label, mode in models:
        A = R["attacks"][label]
        for p in A["avg"]:
            cells = []
            for o in obf_names:
                d = A["per_obfuscator"].get(o, {}).get(p, {})
                cells.append(f"{fmt(d.get('thumbnail', {}).get('top1'), 'ssim')} / {fmt(d.get('deep', {}).get('top1'), 'ssim')}")
            add(f"| {label} | {PROBE_LABEL.get(p, p)} | " + " | ".join(cells) + " |")
    add("")
    for label, mode in models:
        av = R["attacks"][label]["avg"]
        if mode == "obfswr" and "pre_obfuscated" in av:
            for kind in av["wrong_recovery"]:
                a, b = av["wrong_recovery"][kind]["top1"], av["pre_obfuscated"][kind]["top1"]
                verdict = "no better than y" if a <= b + 2 * math.sqrt(max(b * (1 - b), 1 / n) / n) else "BETTER than y (leak)"
                add(f"- {label}, {kind}: ẍ top-1 {a:.3f} vs y top-1 {b:.3f} → {verdict} (2σ binomial tolerance).")
    add("")
    return L


def _section4(R: dict) -> list[str]:
    if (sk := _skipped(R, "keyless", "## 4. Keyless attacker")) is not None:
        return sk
    meta = R["meta"]
    lpips_on = meta["lpips"]
    models = [(label, R["checkpoints"][label]["mode"]) for label in R["checkpoints"]]
    n = meta["n_faces"]
    L: list[str] = []
    add = L.append
    K = R["keyless"]
    add("## 4. Keyless attacker")
    add("")
    add(f"An attacker with the model and {K['train_pairs']} pairs (x, 8-bit ŷ) from the train split (obfuscators in "
        f"turn, random keys) but no password trains a small U-Net (width {K['width']}, {K['steps']} Adam steps, batch "
        f"{K['batch']}, L1) to map ŷ → x; evaluated on the {n} test faces (8-bit, Avg. over obfuscators). Compared "
        "with recovering with a random key (ẍ vs x), with ŷ itself, and with the same network trained on y → x "
        "(what the pre-obfuscation alone leaks).")
    add("")
    add("| Model | estimate of x | PSNR→x | SSIM→x | LPIPS→x | thumbnail top-1 | deep top-1 |")
    add("|---|---|---|---|---|---|---|")
    for label, mode in models:
        km = K["models"][label]
        for what, name in (("attacker", "attacker(ŷ)"), ("random_key", "recover(ŷ, random key)"),
                           ("identity", "ŷ itself"), ("baseline", "y→x network on y"), ("pre_obfuscated", "y itself")):
            d = km["avg"][what]
            add(f"| {label} | {name} | " + " | ".join(_cells(d, lpips_on)) + " | "
                f"{fmt(d.get('thumbnail_top1'), 'ssim')} | {fmt(d.get('deep_top1'), 'ssim')} |")
    add("")
    add(f"Pictures: [attacker outputs]({R['figures'].get('keyless')}).")
    add("")
    return L


IDENTITY_ROWS = (("pre_obfuscated", "y pre-obfuscated (the baseline)"), ("protected", "ŷ protected"),
                 ("wrong_recovery", "ẍ wrong-key recovery"), ("byproduct_protect", "x̂ protection byproduct"),
                 ("byproduct_recover", "y̌ recovery byproduct"), ("byproduct_wrong", "wrong-key recovery byproduct"),
                 ("attacker", "keyless attacker's estimate from ŷ"),
                 ("attacker_baseline", "y → x network's estimate from y"), ("correct_recovery", "x̌ right password"))


def _ci(d: dict) -> str:
    lo, hi = d["ci95"]
    return f"{d['rate']:.3f} [{lo:.2f}, {hi:.2f}]"


def _section4b(R: dict) -> list[str]:
    title = "## 4b. Identity-level privacy: a face recognizer, with y as the baseline"
    I = R.get("identity")
    if not I:
        why = "`--skip`" if "identity" in R["meta"].get("skipped", []) else "`--recognizer off`"
        return [title, "", f"Not run ({why}).", ""]
    n = I["gallery"]
    L: list[str] = [title, ""]
    add = L.append
    add(f"Recognizer: dlib's ResNet face descriptor (99.38 % on LFW; 128-d, Euclidean distance) after its 5-landmark "
        f"alignment inside a fixed box (the median dlib detector box on UTKFace crops: {I['box']}); no detector, so "
        f"obfuscated images are never skipped. **Identification**: each probe against the gallery of the {n} original "
        f"faces (chance top-1 {I['chance']['top1']:.3f}, top-5 {I['chance']['top5']:.3f}). **Verification** against "
        f"the probe's own original at FAR {I['far']:g}: threshold {I['threshold']:.3f} from {I['impostor_pairs']:,} "
        f"impostor pairs among {I['impostor_faces']} faces (the originals and {I['impostor_validation_faces']} "
        f"{I.get('impostor_split', 'validation')} faces, each file taken as a distinct person; dlib's own 0.6 rule accepts "
        f"{I['dlib_rule_0.6_far']:.1%} of them). Rates are pooled over {n} faces × {len(I['obfuscators'])} "
        "obfuscators with Wilson 95 % intervals.")
    add("")
    add("**Baseline = y, not chance**: y is shown openly, and ẍ, the byproducts of a wrong recovery and a keyless "
        "attacker's output are computable from ŷ without the password. An image *leaks* only if it identifies more "
        "people than y does on the same faces: exact one-sided McNemar test against y's hits, p < 0.05 → "
        "**leaks**, else **no more than y**. For x̌ (right password) the question is the reverse: it should be the "
        f"same person (verification rate ≥ {0.95:.0%}).")
    add("")
    add("| Model | probe | top-1 [95 % CI] | p vs y | top-5 [95 % CI] | p vs y | verified @FAR 1e-3 [95 % CI] | p vs y "
        "| verdict |")
    add("|---|---|---|---|---|---|---|---|---|")
    y = I["pre_obfuscated"]
    add(f"| all | chance | {I['chance']['top1']:.3f} | | {I['chance']['top5']:.3f} | | {I['far']:g} | | |")
    add(f"| all | y pre-obfuscated (the baseline) | {_ci(y['top1'])} | | {_ci(y['top5'])} | | {_ci(y['verify'])} | | "
        "baseline |")
    if "attacker_baseline" in I:
        d = I["attacker_baseline"]
        add(f"| all | y → x network's estimate from y | " + " | ".join(
            f"{_ci(d[k])} | {d[k]['mcnemar']['p']:.3g}" for k in ("top1", "top5", "verify")) + " | "
            "(a learned attacker on y: what y alone gives away) |")
    for label, rows in I["models"].items():
        for key, name in IDENTITY_ROWS:
            if key not in rows:
                continue
            d = rows[key]
            if key == "correct_recovery":
                add(f"| {label} | {name} | {_ci(d['top1'])} | | {_ci(d['top5'])} | | {_ci(d['verify'])} | | "
                    f"**{d['verdict']}** |")
                continue
            leaks = [k for k in ("top1", "top5", "verify") if d[k]["verdict"] == "leaks"]
            verdict = f"**leaks** ({', '.join(leaks)})" if leaks else "no more than y"
            extra = ""
            if "vs_y_network" in d:
                extra = "; vs the y → x network: p " + " / ".join(f"{d['vs_y_network'][k]['p']:.3g}"
                                                               for k in ("top1", "top5", "verify"))
            add(f"| {label} | {name} | " + " | ".join(
                f"{_ci(d[k])} | {d[k]['mcnemar']['p']:.3g}" for k in ("top1", "top5", "verify")) + f" | {verdict}{extra} |")
    add("")
    obf = I["obfuscators"]
    add("Per obfuscator, top-1 / verified (y first, then each probe):")
    add("")
    add("| Model | probe | " + " | ".join(obfuscators.LABELS.get(o, o).split(",")[0] for o in obf) + " |")
    add("|---|---|" + "---|" * len(obf))
    cell = lambda d, o: f"{d['per_obfuscator'][o]['top1']:.2f} / {d['per_obfuscator'][o]['verify']:.2f}"
    add("| all | y pre-obfuscated | " + " | ".join(cell(y, o) for o in obf) + " |")
    for label, rows in I["models"].items():
        for key, name in IDENTITY_ROWS:
            if key in rows:
                add(f"| {label} | {name} | " + " | ".join(cell(rows[key], o) for o in obf) + " |")
    add("")
    return L


def _section5(R: dict) -> list[str]:
    if (sk := _skipped(R, "robustness", "## 5. Robustness of recovery")) is not None:
        return sk
    meta = R["meta"]
    lpips_on = meta["lpips"]
    models = [(label, R["checkpoints"][label]["mode"]) for label in R["checkpoints"]]
    L: list[str] = []
    add = L.append
    add("## 5. Robustness of recovery")
    add("")
    add(f"The stored 8-bit ŷ is altered, then recovered with the right key; x̌ vs x (8-bit, Avg. over obfuscators, "
        f"{R['robustness_faces']} faces). 'ŷ′ vs ŷ' says how much the alteration changed the protected image.")
    add("")
    add("| Model | alteration | ŷ′ vs ŷ PSNR | x̌ PSNR→x | SSIM→x | LPIPS→x |")
    add("|---|---|---|---|---|---|")
    for label, mode in models:
        for kind, desc in PERTURBATIONS.items():
            d = R["robustness"][label][kind]["avg"]
            add(f"| {label} | {desc} | {fmt(d.get('input_psnr'), 'psnr')} | " + " | ".join(_cells(d, lpips_on)) + " |")
    add("")
    add(f"Pictures: [recoveries after alterations]({R['figures'].get('robustness')}).")
    add("")
    return L


def _section6(R: dict) -> list[str]:
    L: list[str] = []
    add = L.append
    add("## 6. Figures")
    add("")
    F = R["figures"]
    add("Fig. 5 analogue — per obfuscator: original x, pre-obfuscated y, then for each checkpoint protected ŷ, "
        "correct recovery x̌, wrong-key recovery ẍ:")
    add("")
    add(f"![Fig. 5 analogue]({F['fig5']})")
    add("")
    if "fig9" in F:
        add("Fig. 9 analogue — malicious recovery attempts and byproducts (x, y; per checkpoint: ŷ, right password, "
            "1 bit away, 1 char away, unrelated password, recover(y), x̂, y̌, wrong-key byproduct):")
        add("")
        add(f"![Fig. 9 analogue]({F['fig9']})")
        add("")
    if "robustness" in F:
        add(f"![Robustness]({F['robustness']})")
        add("")
    if "keyless" in F:
        add(f"![Keyless attacker]({F['keyless']})")
        add("")
    add("## Timings")
    add("")
    add("| section | wall s |")
    add("|---|---|")
    for k, v in R["timings"].items():
        add(f"| {k} | {v:.1f} |")
    add("")
    return L

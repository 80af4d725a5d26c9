"""Evaluating PRO-Face S checkpoints: the paper's Tables I–III, security, attacks, robustness.

    python -m experiments.evaluate --checkpoint PATH [--checkpoint PATH2 ...] --data SOURCE \
        --out DIR [--split test|all] [--n 1000] [--size 112] [--seed 0] [--quick] [--no-lpips] [--template-dir DIR]
        [--jitter] [--recognizer on|off] [--impostors 300] [--skip security|keyless|robustness]

(`main(argv)` here is that command; `evaluation.options` its flags.)

Writes DIR/results.json (every number), DIR/report.md (tables laid out like the paper's, with
its averaged LFW/CelebA rows, spec §9, and its per-obfuscator rows beside ours) and the PNG
figures the report links. Several checkpoints are evaluated side by side on the same faces,
obfuscations and keys, labelled by file name (the shortest unique path suffix) and mode.

Protocol
--------
* Faces: a fixed-seed sample of n faces (`input_pipeline.test_sample`; all if fewer) of the
  source's test split, with `--split validation` of its validation split (to choose between
  models or settings without looking at test faces), or with `--split all` of all its faces (a
  folder of your own: the hash split would score only about a tenth of it), centre-cropped and resized to size×size. The
  report says which split and how many faces, and warns below `options.FEW_FACES`. With
  `--jitter` every face is then re-cropped once, seeded per face (`input_pipeline.augment`:
  scale 0.8–1.25, shift ±10 %, rotation ±10°, colour): faces unlike the aligned training crops.
* Pre-obfuscation: each obfuscator in its eval setting (`--preset`, default paper112): blur,
  pixelate, median, mask, swap (donors: the validation split of the same source, or its train
  split when the validation split is scored; never scored faces), and template (precomputed outputs) only with `--template-dir`.
* Keys: a fresh seeded uniform ±1 map per face and obfuscator (right key), and an independent
  one (wrong key), as in training; the security section derives maps from passwords with the
  `paper` KDF (PBKDF2, spec §3).
* Two scorings, both reported and labelled: "8-bit" (what a user has: ŷ is quantised to the
  8-bit PNG levels before recovery, every output is quantised before scoring) and "float"
  (ŷ fed to recovery as a float, outputs scored as clamped floats). Metrics: PSNR, SSIM,
  LPIPS-VGG per `proface_jax.metrics` (clamped, never renormalised). Identical images would
  have PSNR = ∞; per-image PSNR is capped at 100 dB so that means stay finite.
* Averages over obfuscators are means of the per-obfuscator means (the paper's "Avg.").

Sections (each shows a progress bar with the time left, and prints its wall time), one module each:
1. `tables` — Tables I–III; 2. `security` — passwords one bit / one character away, spoofing
with y, byproducts; 3. `reid` — re-identification attacks (matchers in `attacks`: 16×16
thumbnail correlation, LPIPS-VGG deep features; top-1/top-5 vs chance); 4. `keyless` — a keyless
attacker (U-Net trained on (ŷ, x) pairs of the train split) against a random-key recovery, with
a y -> x network as the no-protection baseline; 4b. `identity` — a real face recognizer
(`recognizer`: dlib's ResNet) on y, ŷ, x̌, ẍ, the byproducts and both attackers' outputs: top-1 /
top-5 re-identification and verification at FAR 1e-3 against the original, Wilson intervals, and an
exact McNemar test against y (the baseline: y is public, and ẍ or an attacker's output needs no
password), with a verdict per row ("no more than y" / "leaks"); 5. `robustness` — recovery after JPEG, resizing
and ±1-level noise; 6. `figures` — Fig.-5- and Fig.-9-style grids, robustness, attacker. The
report is `report`, the scoring `scoring`, the model `model` (the shared forward of
`proface_jax.protocol`), the inputs `faces`.

`--quick` shrinks everything (8 faces, a few attack steps, no recognizer unless `--recognizer on`)
for a CPU smoke run of a few minutes. `--skip` leaves out the security, keyless or robustness
section (the report says so; the recognizer then has no attacker rows without keyless).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from proface_jax import checkpoint as ckpt_lib
from proface_jax import flow, images, input_pipeline
from proface_jax.input_pipeline import augment
from proface_jax.evaluation import figures, identity, keyless, recognizer, reid, robustness, security, tables
from proface_jax.evaluation.faces import build_obfuscators, load_faces, obfuscate, random_maps, unique_labels
from proface_jax.evaluation.model import Model
from proface_jax.evaluation.options import FEW_FACES, donor_split, parse_args
from proface_jax.evaluation.paper import PAPER
from proface_jax.evaluation.report import write_report
from proface_jax.evaluation.scoring import PSNR_CAP, Scorer, features_all, score_all, summary


class Sections:
    """Times each section, prints it, shows a progress bar with the time left, and keeps the times."""

    def __init__(self, progress: bool = True):
        self.seconds: dict[str, float] = {}
        self.progress = progress

    def __call__(self, name: str, total: int):
        return _Section(self, name, total)


class _Section:
    def __init__(self, owner: Sections, name: str, total: int):
        self.owner, self.name, self.total = owner, name, total

    def __enter__(self):
        from tqdm import tqdm

        print(f"[evaluate] {self.name} ...", flush=True)
        self.t = time.perf_counter()
        self.bar = tqdm(total=self.total, desc=f"[evaluate] {self.name}", disable=not self.owner.progress,
                        dynamic_ncols=True, leave=False)
        return self.bar

    def __exit__(self, *exc):
        self.bar.close()
        dt = time.perf_counter() - self.t
        self.owner.seconds[self.name] = dt
        print(f"[evaluate] {self.name}: {dt:.1f} s", flush=True)


@dataclasses.dataclass
class Context:
    """What the sections share: the inputs (faces, obfuscations, keys, models) and what earlier
    sections leave for later ones (stored ŷ, samples, probe features, pictures)."""

    args: Any
    data: str
    size: int
    batch: int
    out: Path
    models: list
    x_u8: np.ndarray
    names: list
    x: np.ndarray
    donors: Any
    obfs: dict
    obf_names: list
    Y: dict
    MAPS: dict
    scorer: Scorer
    gallery: dict
    R: dict = dataclasses.field(default_factory=dict)
    STORED: dict = dataclasses.field(default_factory=dict)
    SAMPLES: dict = dataclasses.field(default_factory=dict)
    PROBE_FEATS: dict = dataclasses.field(default_factory=dict)
    SEC_PICS: dict = dataclasses.field(default_factory=dict)
    ATT_PICS: dict = dataclasses.field(default_factory=dict)
    ROB_PICS: dict = dataclasses.field(default_factory=dict)
    IMAGES: dict = dataclasses.field(default_factory=dict)  # (label, obf) -> {key: uint8 images} (identity)
    ATT_EST: dict = dataclasses.field(default_factory=dict)  # label | '_baseline' -> {obf: uint8 estimates}
    y_vs_x: dict = dataclasses.field(default_factory=dict)
    y_feats: dict = dataclasses.field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.x)


class NoFaces(ValueError):
    """The split to score has no faces (a small folder's hash-chosen test split can be empty)."""


def setup(args, out: Path, data: str) -> Context:
    """LPIPS, checkpoints, faces, donors, obfuscations, keys and the gallery; raises CheckpointError or NoFaces."""
    size, batch = args.size, args.batch
    lp = None
    if not args.no_lpips:
        from proface_jax.lpips import load_params
        lp = load_params()
    cks = [ckpt_lib.load_checkpoint(p) for p in args.checkpoint]
    labels = args.label or unique_labels([c.path for c in cks], [c.mode for c in cks])
    models = [Model(c, lab) for c, lab in zip(cks, labels)]
    try:
        x_u8, names = load_faces(data, args.split, args.n, args.seed, size)
    except ValueError as e:
        hint = "; `--split all` scores every face of the source" if args.split != "all" else ""
        raise NoFaces(f"{e}{hint}") from None
    if args.jitter:
        x_u8, _ = augment.jitter_faces(x_u8, args.seed)
    x = images.to_unit(x_u8)
    try:
        donors, _ = load_faces(data, donor_split(args.split), args.donor_limit, args.seed, size)
    except ValueError as e:
        print(f"[evaluate] no donors: {e}", flush=True)
        donors = None
    wanted = [s.strip() for s in args.obfuscators.split(",") if s.strip()]
    if args.template_dir and "template" not in wanted:
        wanted.append("template")
    obfs = build_obfuscators(wanted, args.preset, donors, args.template_dir)
    obf_names = list(obfs)
    Y, MAPS = {}, {}
    for i, name in enumerate(obf_names):
        Y[name] = obfuscate(obfs[name], name, args.preset, jax.random.fold_in(jax.random.key(args.seed), 1000 + i),
                            x, names, batch)
        MAPS[name] = (random_maps(args.seed, 2 * i, len(x), size), random_maps(args.seed, 2 * i + 1, len(x), size))
    scorer = Scorer(lp)
    gallery = features_all(scorer, x, batch)
    return Context(args=args, data=data, size=size, batch=batch, out=out, models=models, x_u8=x_u8, names=names,
                   x=x, donors=donors, obfs=obfs, obf_names=obf_names, Y=Y, MAPS=MAPS, scorer=scorer,
                   gallery=gallery)


def warnings_for(args, n: int) -> list[str]:
    """What a reader must know before trusting the numbers (printed, and at the top of the report)."""
    out = []
    if n < FEW_FACES:
        more = " (`--split all` scores every face of a folder)" if args.split == "test" else ""
        out.append(f"only {n} faces scored{more}: with fewer than {FEW_FACES}, averages are noisy and "
                   f"re-identification rates move in steps of 1/{n} = {1 / n:.3f}.")
    if args.split == "all":
        out.append("`--split all`: the scored faces include the train and validation splits, from which the keyless "
                   "attacker's training pairs and the swap donors are drawn, so those two sections are optimistic "
                   "for the attacker.")
    return out


def results_skeleton(ctx: Context, argv) -> dict:
    args, m0 = ctx.args, jax.devices()[0]
    meta = {"data": ctx.data, "split": args.split, "n_faces": ctx.n, "n_requested": args.n, "size": ctx.size,
            "seed": args.seed, "quick": args.quick, "preset": args.preset, "obfuscators": ctx.obf_names,
            "donors": 0 if ctx.donors is None else int(len(ctx.donors)), "donor_split": donor_split(args.split),
            "lpips": ctx.scorer.lpips_params is not None,
            "device": f"{m0.platform}: {m0.device_kind} ({os.cpu_count()} CPU cores)", "jax": jax.__version__,
            "python": platform.python_version(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "batch": ctx.batch, "psnr_cap_db": PSNR_CAP, "fail_psnr": args.fail_psnr,
            "argv": sys.argv[1:] if argv is None else list(argv), "faces": [str(nm) for nm in ctx.names],
            "jitter": dataclasses.asdict(augment.EVAL_JITTER) if args.jitter else False, "skipped": list(args.skip),
            "recognizer": args.recognizer,
            "warnings": warnings_for(args, ctx.n)}
    return {
        "meta": meta,
        "paper": PAPER,
        "checkpoints": {m.label: {"path": m.ck.path, "mode": m.mode, "model_id": m.ck.model_id,
                                  "config": m.cfg.to_dict(), "meta": m.ck.meta,
                                  "parameters": flow.param_count(m.ck.params)} for m in ctx.models},
        "tables": {}, "security": {}, "attacks": {}, "keyless": {}, "identity": {}, "robustness": {}, "figures": {},
    }


def score_pre_obfuscated(ctx: Context) -> None:
    """y vs x and y's attack features, the no-protection baseline of sections 2–4."""
    for name in ctx.obf_names:
        sc, ctx.y_feats[name] = score_all(ctx.scorer, ctx.Y[name], ctx.x, ctx.batch, features=True)
        ctx.y_vs_x[name] = summary(sc)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    T = Sections(progress=not args.no_progress)
    t_all = time.perf_counter()
    if args.recognizer == "on" and not recognizer.available():
        try:
            recognizer.model_dir()
        except recognizer.RecognizerMissing as e:
            print(f"error: {e} (or leave the section out: --recognizer off)", file=sys.stderr)
            return 2
    m0 = jax.devices()[0]
    print(f"[evaluate] device {m0.platform}: {m0.device_kind} ({os.cpu_count()} CPU cores); jax {jax.__version__}",
          flush=True)
    with T("setup (faces, obfuscations, keys)", total=1):
        try:
            ctx = setup(args, out, input_pipeline.resolve_data(args.data))
        except (ckpt_lib.CheckpointError, NoFaces) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"[evaluate] {ctx.n} faces ({args.split} split), {len(ctx.donors) if ctx.donors is not None else 0} "
              f"donors, obfuscators {ctx.obf_names}, checkpoints {[m.label for m in ctx.models]}", flush=True)
    ctx.R = results_skeleton(ctx, argv)
    for w in ctx.R["meta"]["warnings"]:
        print(f"[evaluate] WARNING: {w}", flush=True)
    k, o = len(ctx.models), len(ctx.obf_names)
    with T("1. Tables I-III", total=k * o) as bar:
        tables.run_section(ctx, bar)
    score_pre_obfuscated(ctx)
    for name, section, total in (("2. security", security, k), ("3. re-identification attacks", reid, k),
                                 ("4. keyless attacker", keyless, k + 1), ("4b. face recognizer", identity, k + 1),
                                 ("5. robustness", robustness, k * o), ("6. figures", figures, 4)):
        if section.__name__.rsplit(".", 1)[-1] in args.skip:
            print(f"[evaluate] {name}: skipped (--skip)", flush=True)
            continue
        with T(name, total=total) as bar:
            section.run_section(ctx, bar)
    T.seconds["total"] = time.perf_counter() - t_all
    R = ctx.R
    R["timings"] = dict(T.seconds)
    (out / "results.json").write_text(json.dumps(to_json(R), indent=1, allow_nan=False))
    write_report(R, out)
    print(f"[evaluate] wrote {out / 'results.json'} and {out / 'report.md'} ({T.seconds['total']:.1f} s)", flush=True)
    return 0


def to_json(o):
    if isinstance(o, dict):
        return {str(k): to_json(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_json(v) for v in o]
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, np.ndarray):
        return to_json(o.tolist())
    return o

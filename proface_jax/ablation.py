"""Ablation of flow variants: train each with the same data order, seed, step budget, schedule
and loss, evaluate all on the same held-apart faces and keys, write a Table-IV-style report.

    python -m experiments.ablate --variants paper,additive,film,keyless --steps 600 --size 64 \
        --data folder:PATH --out DIR [--batch 4] [--jobs 2] [--eval-n 64] [--lpips]

Training is `proface_jax.training` with the `fast` preset (the schedule measured on CPU) at one
size (no small first stage), LPIPS off unless `--lpips`; only `config.flow` differs between
variants (`proface_jax.variants`). Each variant trains in its own process, `--jobs` at a time
(`--pin-cores`: each pinned to one core), in DIR/<variant>/; a variant whose model.pfj already has
the step budget is skipped, and an interrupted one resumes from its orbax checkpoint.
Evaluation is `proface_jax.evaluation` (Tables I–III from the 8-bit PNG, and the
re-identification attacks) on all checkpoints side by side. Outputs: DIR/results.json,
DIR/report.md, DIR/curves.png (one panel per metric, against training seconds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

@dataclasses.dataclass
class Settings:
    variants: list[str]
    steps: int
    size: int
    data: str
    out: str
    batch: int = 4
    seed: int = 0
    jobs: int = 1
    mode: str = "randwr"
    preset: str = "fast"
    lpips: bool = False
    eval_n: int = 64
    eval_split: str = "test"
    eval_batch: int = 8
    obfuscators: str = "blur,pixelate,median,mask,swap"
    log_every: int = 10
    eval_every: int = 0  # 0: steps // 6
    progress_every_s: float = 30.0
    pin_cores: bool = False

    def to_argv(self) -> list[str]:
        a = ["--variants", ",".join(self.variants), "--steps", str(self.steps), "--size", str(self.size),
             "--data", self.data, "--out", self.out, "--batch", str(self.batch), "--seed", str(self.seed),
             "--mode", self.mode, "--preset", self.preset, "--eval-n", str(self.eval_n),
             "--eval-split", self.eval_split, "--eval-batch", str(self.eval_batch),
             "--obfuscators", self.obfuscators, "--log-every", str(self.log_every),
             "--eval-every", str(self.eval_every)]
        return a + (["--lpips"] if self.lpips else [])


def train_config(s: Settings, variant: str):
    """The training config of one variant: everything but `flow` is the same for all."""
    from proface_jax import variants
    from proface_jax.training import config as tconfig

    c = tconfig.get(s.preset, s.mode)
    c.data = s.data
    c.seed = s.seed
    c.image_size = s.size
    c.small_size = c.small_size_steps = 0
    c.batch_size = s.batch
    c.eval_batch_size = s.eval_batch
    c.num_train_steps = s.steps
    c.optim.warmup_steps = min(c.optim.warmup_steps, max(1, s.steps // 10))
    c.loss.use_lpips = c.eval_lpips = s.lpips
    c.log_every = s.log_every
    c.eval_every = c.sample_every = c.checkpoint_every = s.eval_every or max(1, s.steps // 6)
    c.progress_bar = False
    c.num_workers = 1
    c.prefetch = 2
    c.donor_limit = min(c.donor_limit, 64)
    for k, v in variants.get(variant).to_dict().items():
        c.flow[k] = v
    return c


def workdir(s: Settings, variant: str) -> Path:
    return Path(s.out) / variant


def finished(s: Settings, variant: str) -> bool:
    from proface_jax import checkpoint

    p = workdir(s, variant) / "model.pfj"
    if not p.exists():
        return False
    try:
        return checkpoint.load_checkpoint(p).meta.get("steps") == s.steps
    except checkpoint.CheckpointError:
        return False


def train_one(s: Settings, variant: str) -> None:
    """Trains (or resumes) one variant in this process."""
    import logging

    from proface_jax.training.loop import logger, train_and_evaluate

    logging.getLogger("absl").setLevel(logging.WARNING)
    logger.setLevel(logging.WARNING)
    wd = workdir(s, variant)
    wd.mkdir(parents=True, exist_ok=True)
    train_and_evaluate(train_config(s, variant), str(wd))


def _records(wd: Path) -> list[dict]:
    p = wd / "metrics.jsonl"
    if not p.exists():
        return []
    out = []
    for ln in p.read_text().splitlines():
        try:
            out.append(json.loads(ln))
        except ValueError:
            pass  # a line being written
    return out


def _progress_line(s: Settings, variant: str) -> str:
    tr = [r for r in _records(workdir(s, variant)) if r.get("kind") == "train"]
    if not tr:
        return f"{variant}: starting"
    r = tr[-1]
    return f"{variant}: step {r['step']}/{s.steps}, loss {r.get('loss', float('nan')):.4f}, " \
           f"{r.get('steps_per_s', 0):.2f} steps/s"


def train_all(s: Settings) -> dict[str, float]:
    """Trains every unfinished variant, `jobs` processes at a time; returns wall seconds per variant."""
    todo = [v for v in s.variants if not finished(s, v)]
    for v in s.variants:
        if v not in todo:
            print(f"[ablate] {v}: finished earlier ({s.steps} steps), skipped", flush=True)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    running: dict[str, tuple[subprocess.Popen, float, int]] = {}
    wall: dict[str, float] = {}
    last = 0.0
    while todo or running:
        free = [c for c in (cores or [None]) if c not in {slot for _, _, slot in running.values()}]
        while todo and len(running) < s.jobs:
            v = todo.pop(0)
            slot = free.pop(0) if (s.jobs > 1 and free) else None
            wd = workdir(s, v)
            wd.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "proface_jax.ablation", *s.to_argv(), "--train-one", v]
            if slot is not None and s.pin_cores:
                cmd += ["--core", str(slot), "--pin-cores"]
            log = open(wd / "train.log", "a")
            where = f" on core {slot}" if slot is not None and s.pin_cores else ""
            print(f"[ablate] {v}: training{where} (log {wd / 'train.log'})",
                  flush=True)
            env = dict(os.environ)  # the child imports this very proface_jax (a checkout need not be installed)
            env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1])]
                                                + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
            running[v] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), time.time(),
                          slot if slot is not None else -1)
        time.sleep(1.0)
        for v, (proc, t0, _) in list(running.items()):
            if proc.poll() is not None:
                del running[v]
                wall[v] = time.time() - t0
                if proc.returncode != 0:
                    tail = (workdir(s, v) / "train.log").read_text()[-2000:]
                    raise RuntimeError(f"variant {v} failed (exit {proc.returncode}); end of its log:\n{tail}")
                print(f"[ablate] {v}: done in {wall[v]:.0f} s", flush=True)
        if running and time.time() - last > s.progress_every_s:
            last = time.time()
            print("[ablate] " + " | ".join(_progress_line(s, v) for v in running), flush=True)
    return wall


# ---------------------------------------------------------------- measurements

def flops_per_face(params, cfg, size: int) -> float:
    """XLA's FLOP count of one jitted `protect` of one size×size face."""
    import jax
    import jax.numpy as jnp

    from proface_jax import flow

    x = jnp.zeros((1, size, size, 3), jnp.float32)
    K = jnp.zeros((1, size // 2, size // 2, 4), jnp.float32)
    compiled = jax.jit(flow.protect, static_argnums=4).lower(params, x, x, K, cfg).compile()
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    return float(ca.get("flops", float("nan")))


def curves(wd: Path) -> dict:
    """Train and eval records against cumulative training seconds (from each window's steps/s)."""
    recs = _records(wd)
    t, last_step, train, evals, secs_at = 0.0, 0, [], [], {}
    for r in recs:
        if r.get("kind") == "train":
            sps = r.get("steps_per_s") or 0
            t += (r["step"] - last_step) / sps if sps > 0 else 0.0
            last_step = r["step"]
            secs_at[r["step"]] = t
            train.append({"step": r["step"], "seconds": t, **{k: v for k, v in r.items()
                                                               if isinstance(v, (int, float))}})
        elif r.get("kind") == "eval":
            evals.append({"seconds": secs_at.get(r["step"], t), **{k: v for k, v in r.items()
                                                                    if isinstance(v, (int, float))}})
    rates = [r["steps_per_s"] for r in train[1:] if r.get("steps_per_s")]  # the first window holds the compile
    return {"train": train, "eval": evals, "steps_per_s": statistics.median(rates) if rates else None,
            "train_seconds": t}


def evaluate_all(s: Settings) -> dict:
    """Tables I–III (8-bit) and the re-identification attacks of every variant on the same faces and keys."""
    from proface_jax import input_pipeline
    from proface_jax.evaluation import reid, tables
    from proface_jax.evaluation.options import parse_args
    from proface_jax.evaluation.run import Sections, results_skeleton, score_pre_obfuscated, setup

    out = Path(s.out) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    argv = []
    for v in s.variants:
        argv += ["--checkpoint", str(workdir(s, v) / "model.pfj"), "--label", v]
    argv += ["--data", s.data, "--out", str(out), "--n", str(s.eval_n), "--size", str(s.size), "--seed", str(s.seed),
             "--batch", str(s.eval_batch), "--split", s.eval_split, "--obfuscators", s.obfuscators,
             "--donor-limit", "64", "--keep", "2", "--no-progress"] + ([] if s.lpips else ["--no-lpips"])
    args = parse_args(argv)
    T = Sections(progress=False)
    with T("setup", total=1):
        ctx = setup(args, out, input_pipeline.resolve_data(s.data))
    ctx.R = results_skeleton(ctx, argv)
    with T("tables", total=len(ctx.models) * len(ctx.obf_names)) as bar:
        tables.run_section(ctx, bar)
    score_pre_obfuscated(ctx)
    with T("re-identification", total=len(ctx.models)) as bar:
        reid.run_section(ctx, bar)
    return {"meta": ctx.R["meta"], "tables": ctx.R["tables"], "attacks": ctx.R["attacks"],
            "pre_obfuscated_vs_x": _avg(ctx.y_vs_x), "seconds": T.seconds}


def _avg(d: dict) -> dict:
    from proface_jax.evaluation.scoring import average

    return average(list(d.values()))


def collect(s: Settings, ev: dict, wall: dict) -> dict:
    import jax

    from proface_jax import checkpoint, flow, variants

    rows = {}
    for v in s.variants:
        ck = checkpoint.load_checkpoint(workdir(s, v) / "model.pfj")
        cv = curves(workdir(s, v))
        t8 = ev["tables"][v]["8bit"]["avg"]
        att = ev["attacks"][v]["avg"]
        rows[v] = {
            "description": variants.describe().get(v, ""), "config": ck.config.to_dict(),
            "parameters": flow.param_count(ck.params),
            "flops_per_face": flops_per_face(jax.tree_util.tree_map(jax.numpy.asarray, ck.params), ck.config, s.size),
            "steps_per_s": cv["steps_per_s"], "train_seconds": cv["train_seconds"], "wall_seconds": wall.get(v),
            "privacy_psnr": t8["privacy"]["psnr"], "privacy_ssim": t8["privacy"]["ssim"],
            "recovery_psnr": t8["recovery"]["psnr"], "recovery_ssim": t8["recovery"]["ssim"],
            "wrong_vs_x_psnr": t8["wrong_vs_x"]["psnr"], "wrong_vs_y_psnr": t8["wrong_vs_y"]["psnr"],
            "reid_wrong_thumb_top1": att["wrong_recovery"]["thumbnail"]["top1"],
            "reid_protected_thumb_top1": att["protected"]["thumbnail"]["top1"],
            "reid_y_thumb_top1": att["pre_obfuscated"]["thumbnail"]["top1"],
            "final_val": {k: x for k, x in (cv["eval"][-1] if cv["eval"] else {}).items() if k.startswith("val/")},
            "curves": cv,
        }
    return {"settings": dataclasses.asdict(s), "command": command_line(s), "variants": rows,
            "evaluation": {k: ev[k] for k in ("meta", "pre_obfuscated_vs_x", "seconds")},
            "chance_top1": ev["attacks"]["chance"]["top1"]}


def command_line(s: Settings) -> str:
    a = s.to_argv()
    parts = []
    i = 0
    while i < len(a):
        parts.append(f"{a[i]} {a[i + 1]}" if i + 1 < len(a) and not a[i + 1].startswith("--") else a[i])
        i += 2 if i + 1 < len(a) and not a[i + 1].startswith("--") else 1
    return "python -m experiments.ablate " + " ".join(parts) + (f" --jobs {s.jobs}" if s.jobs > 1 else "")


def plot_curves(results: dict, path: Path) -> bool:
    """curves.png, one panel per metric; False (and no file) without matplotlib (the `train` extra)."""
    try:
        import matplotlib
    except ImportError:
        print("[ablate] matplotlib is not installed (pip install 'proface-jax[train]'): no curves.png", flush=True)
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("loss", "train", "training loss"), ("val/protect_psnr", "eval", "privacy: PSNR(ŷ, y) dB"),
              ("val/recover_psnr", "eval", "recovery: PSNR(x̌, x) dB"),
              ("val/wrong_psnr", "eval", "wrong key: PSNR(ẍ, x) dB (randwr; y for obfswr)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), dpi=80)
    for ax, (metric, kind, title) in zip(axes, panels):
        for v, row in results["variants"].items():
            recs = [r for r in row["curves"][kind] if any(k.startswith(metric) for k in r)]
            key = next((k for k in (recs[0] if recs else {}) if k.startswith(metric)), None)
            if key:
                ax.plot([r["seconds"] for r in recs], [r[key] for r in recs], label=v,
                        marker="." if kind == "eval" else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("training seconds (one core)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _fmt(v, spec):
    return "–" if v is None else format(v, spec)


def report_md(results: dict) -> str:
    s = results["settings"]
    rows = results["variants"]
    ev = results["evaluation"]["meta"]
    lines = [
        "# Flow variants: ablation", "",
        f"Each variant trained {s['steps']} steps at {s['size']}×{s['size']}, batch {s['batch']}, seed {s['seed']}, "
        f"mode {s['mode']}, the `{s['preset']}` schedule, LPIPS {'on' if s['lpips'] else 'off'}, same data order; "
        f"evaluated on the same {ev['n_faces']} held-apart faces ({ev['split']} split of `{ev['data']}`), obfuscators "
        f"{', '.join(ev['obfuscators'])}, the same right and wrong keys, ŷ stored as an 8-bit PNG. "
        f"Device: {ev['device']}.", "",
        "Command:", "", "```", results["command"], "```", "",
        "| variant | params | GFLOP/face | steps/s | privacy PSNR(ŷ, y) ↑ | recovery PSNR(x̌, x) ↑ | "
        "recovery SSIM ↑ | "
        "wrong vs x PSNR ↓ | wrong vs y PSNR | re-id ẍ top-1 ↓ | re-id ŷ top-1 ↓ |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for v, r in rows.items():
        lines.append(
            f"| {v} | {r['parameters']:,} | {_fmt(r['flops_per_face'] / 1e9, '.2f')} | "
            f"{_fmt(r['steps_per_s'], '.2f')} | "
            f"{r['privacy_psnr']:.2f} | {r['recovery_psnr']:.2f} | {r['recovery_ssim']:.3f} | "
            f"{r['wrong_vs_x_psnr']:.2f} | {r['wrong_vs_y_psnr']:.2f} | {r['reid_wrong_thumb_top1']:.3f} | "
            f"{r['reid_protected_thumb_top1']:.3f} |")
    lines += [
        "", f"Re-identification: 16×16 thumbnail correlation against the gallery of the {ev['n_faces']} originals; "
        f"chance top-1 = {results['chance_top1']:.3f}; the pre-obfuscated y itself is re-identified at "
        f"{_fmt(next(iter(rows.values()))['reid_y_thumb_top1'], '.3f')}. PSNR/SSIM are averages over obfuscators "
        "(8-bit scoring). steps/s: median over training windows after the first (one core each"
        f"{', two variants at a time' if s['jobs'] > 1 else ''}).", "",
        "Variants:", "",
    ]
    lines += [f"- `{v}`: {r['description']}" for v, r in rows.items()]
    lines += [""] + [f"![learning curves]({p})" for p in results.get("plots", [])] + [""]
    return "\n".join(lines)


def run(s: Settings) -> dict:
    from proface_jax import variants

    for v in s.variants:
        variants.get(v)  # unknown names fail before any training
    out = Path(s.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    wall = train_all(s)
    print(f"[ablate] training done ({time.time() - t0:.0f} s); evaluating {len(s.variants)} variants", flush=True)
    ev = evaluate_all(s)
    results = collect(s, ev, wall)
    results["total_seconds"] = time.time() - t0
    from proface_jax.evaluation.run import to_json

    (out / "results.json").write_text(json.dumps(to_json(results), indent=1, allow_nan=False))
    results["plots"] = ["curves.png"] if plot_curves(results, out / "curves.png") else []
    (out / "report.md").write_text(report_md(results))
    print(f"[ablate] wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'curves.png'} "
          f"({results['total_seconds']:.0f} s)", flush=True)
    return results


def parse_args(argv=None) -> tuple[Settings, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog="python -m experiments.ablate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", required=True, help="comma-separated names of proface_jax.variants")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--data", required=True, help="folder:PATH or tfds:NAME")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="variants trained at a time (one process, one core each)")
    ap.add_argument("--mode", default="randwr", choices=("randwr", "obfswr"))
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--lpips", action="store_true", help="LPIPS in the loss and evaluation (slower)")
    ap.add_argument("--eval-n", type=int, default=64)
    ap.add_argument("--eval-split", default="test", choices=("test", "all"))
    ap.add_argument("--eval-batch", type=int, default=8)
    ap.add_argument("--obfuscators", default="blur,pixelate,median,mask,swap")
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=0, help="validation/checkpoint interval (0: steps // 6)")
    ap.add_argument("--train-one", help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--pin-cores", action="store_true",
                    help="pin each training process to one core (on a machine shared with others, pinning can "
                         "leave a process on a busy core: off by default, the scheduler spreads the processes)")
    a = ap.parse_args(argv)
    names = [v.strip() for v in a.variants.split(",") if v.strip()]
    if not names or len(set(names)) != len(names):
        ap.error("--variants: give distinct names")
    if a.steps < 1 or a.size % 4 or a.size < 16 or a.jobs < 1:
        ap.error("--steps >= 1, --size a multiple of 4 (>= 16), --jobs >= 1")
    s = Settings(variants=names, steps=a.steps, size=a.size, data=a.data, out=a.out, batch=a.batch, seed=a.seed,
                 jobs=a.jobs, mode=a.mode, preset=a.preset, lpips=a.lpips, eval_n=a.eval_n, eval_split=a.eval_split,
                 eval_batch=a.eval_batch, obfuscators=a.obfuscators, log_every=a.log_every, eval_every=a.eval_every,
                 pin_cores=a.pin_cores)
    return s, a


def main(argv=None) -> int:
    s, a = parse_args(argv)
    if a.train_one:
        if a.core is not None and a.pin_cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {a.core})
        train_one(s, a.train_one)
        return 0
    from proface_jax import variants

    try:
        for v in s.variants:
            variants.get(v)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training loop: `train_and_evaluate(config, workdir)` (Flax-examples style; the entry
point is `python -m experiments.train`).

Determinism and exact resume: batch s is a pure function of (seed, s)
(`input_pipeline.make_iterator`), and every random draw of step s comes from
fold_in(train_root, s). A checkpoint holds the state (params, Adam state, step, lr scale) plus
JSON meta (`training.checkpoints`), so "n steps, stop, resume, n steps" equals 2n steps straight.

Wall-clock limit (`time_limit_s` > 0, e.g. a lent GPU for a few minutes): training stops after
the first step past the limit and treats it as the last (validation, checkpoint, model.pfj);
the lr schedule still runs to `num_train_steps`, so a resume continues it unchanged.

A step the explosion guard (`training.guard`) rejects is dropped: the last checkpoint is
restored, the lr scale is multiplied by `guard.lr_decay`, and the event is logged.

Several processes (`config.distributed`, `training.distributed`): jax.distributed is started
first; the mesh spans all processes' devices, each process decodes and obfuscates only its rows
of every global batch (the same global batches as one process), all processes take part in
steps, validation and orbax saves/restores (the workdir must be on a filesystem they share),
and process 0 alone writes metrics.jsonl, samples, config.json and the .pfj files.

Outputs in the workdir: checkpoints/ (orbax, last `keep_checkpoints`), best/ (orbax, best by
`best_metric`), metrics.jsonl, samples/step_XXXXXXX.png (rows: x, y, ŷ, x̌, ẍ, one per
obfuscator), config.json, best.pfj (at each new best) and model.pfj (at the end), the
single-file inference checkpoints of `proface_jax.checkpoint`.
"""
from __future__ import annotations

import collections
import json
import logging
import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from proface_jax import adversary, images, input_pipeline
from proface_jax.checkpoint import MODES, save_checkpoint
from proface_jax.input_pipeline.process_shard import make_process_iterator
from proface_jax.training import distributed
from proface_jax.training.checkpoints import checkpoint_managers, restore_state, save_state
from proface_jax.training.guard import LossGuard
from proface_jax.training.logs import JsonlWriter, config_json, host_scalars, save_grid
from proface_jax.training.mesh import make_mesh, process_rows, replicate, shard_batch, shard_local_batch
from proface_jax.training.obfuscation import PreObfuscators, obfuscator_names_for
from proface_jax.training.state import create_train_state, flow_config, loss_config
from proface_jax.training.step import make_train_step
from proface_jax.training.validation import Evaluator, open_split, validation_faces

logger = logging.getLogger("proface.train")


def size_at(config, step: int) -> int:
    if config.small_size > 0 and step < config.small_size_steps:
        return int(config.small_size)
    return int(config.image_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, lpips_params=None) -> dict:
    """Trains to config.num_train_steps (resuming from workdir's last checkpoint).

    `lpips_params`: the frozen LPIPS weights, loaded with `proface_jax.lpips.load_params()` when
    not given and needed (loss.use_lpips or eval_lpips). Returns a summary (final state,
    model id, last validation metrics, best value, rollbacks, lr scale).
    """
    distributed.initialize(config.get("distributed"))  # before any JAX computation; no-op for one process
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "samples").mkdir(exist_ok=True)
    config = ml_collections.ConfigDict(config.to_dict())  # private copy (no flag/placeholder links)
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    config.data = input_pipeline.resolve_data(config.data)
    lcfg = loss_config(config)
    logger.info("mode %s, data %s, %d×%d, batch %d, %d steps; wrong-recovery terms on %s ẍ", config.mode,
                config.data, config.image_size, config.image_size, config.batch_size, config.num_train_steps,
                "clamped" if lcfg.clamp_wrong else "raw")
    mesh = make_mesh(int(config.batch_size))
    logger.info("mesh: %d device(s) %s", mesh.size, [str(d) for d in mesh.devices.ravel()])
    if jax.process_count() > 1:
        logger.info("process %d of %d: rows %s of each batch", jax.process_index(), jax.process_count(),
                    process_rows(mesh, int(config.batch_size)))
    if not (config.loss.use_lpips or config.eval_lpips):
        lpips_params = None
    elif lpips_params is None:
        from proface_jax.lpips import load_params

        lpips_params = load_params()
    return _Run(config, workdir, mesh, lpips_params).run()


def _check_same_adversary(saved_config: Path, config) -> None:
    """The checkpoint holds a keyless attacker iff its run had one (of that width): say so plainly
    rather than let orbax fail on the tree."""
    if not saved_config.exists():
        return
    old = json.loads(saved_config.read_text()).get("adversary") or {}
    was = float(old.get("weight", 0.0)) > 0
    now = adversary.enabled(config)
    if was != now or (now and int(old.get("width", 0)) != int(config.adversary.width)):
        said = lambda on, w: f"adversary.weight > 0, width {w}" if on else "no adversary (weight 0)"
        raise ValueError(f"{saved_config.parent}: its checkpoints were trained with "
                         f"{said(was, old.get('width'))}, this config has {said(now, config.adversary.width)}; "
                         "resume with the run's own adversary settings, or start a new workdir "
                         "(--config.init_from=<its .pfj> keeps the flow)")


class _Run:
    """One call of `train_and_evaluate`: the state, the guard, the iterator and the bookkeeping."""

    def __init__(self, config, workdir: Path, mesh, lpips_params):
        self.config, self.workdir, self.mesh = config, workdir, mesh
        self.primary = distributed.is_primary()
        self.rows = process_rows(mesh, int(config.batch_size))  # this process's rows of each global batch
        self.train_src = open_split(config, "train")
        eval_x, donors = validation_faces(config, int(config.image_size))
        self.train_obfs = PreObfuscators(obfuscator_names_for(config, donors), config.obfuscator_preset, "train",
                                         donors)
        logger.info("train faces: %d; obfuscators: %s", len(self.train_src), ", ".join(self.train_obfs.names))
        init_rng, self.train_root, eval_root = jax.random.split(jax.random.key(int(config.seed)), 3)
        self.evaluator = Evaluator(config, mesh, lpips_params, eval_root, eval_x, donors)
        self.state = replicate(create_train_state(init_rng, config), mesh)
        self.guard = LossGuard.from_config(config)
        self.periodic, self.best_mgr = checkpoint_managers(workdir, config)
        self.best_value, self.rollbacks = None, 0
        self._resume()
        self.step_fn = make_train_step(config, mesh, lpips_params if config.loss.use_lpips else None)
        self.it, self.it_size = None, None
        self.nan_injected = False
        self.window: list[dict] = []
        self.last_val: dict = {}

    def meta_now(self) -> dict:
        return {"step": int(self.state.step), "iterator_step": int(self.state.step),
                "guard_history": list(self.guard.history), "best_value": self.best_value,
                "rollbacks": self.rollbacks, "lr_scale": float(self.state.lr_scale), "seed": int(self.config.seed),
                "data": self.config.data}

    def _resume(self) -> None:
        config, workdir = self.config, self.workdir
        latest = self.periodic.latest_step()
        if latest is not None:
            _check_same_adversary(workdir / "config.json", config)
            self.state, meta = restore_state(self.periodic, latest, self.state, self.mesh)
            self.guard = LossGuard.from_config(config, meta.get("guard_history", []))
            self.best_value, self.rollbacks = meta.get("best_value"), int(meta.get("rollbacks", 0))
            logger.info("resumed from step %d (lr scale %g)", latest, float(self.state.lr_scale))
            old = workdir / "config.json"
            if self.primary and old.exists():  # only process 0 writes it, so only it reads it back
                changed = {k for k, v in config_json(config).items() if json.loads(old.read_text()).get(k) != v}
                if changed - {"num_train_steps", "distributed"}:
                    logger.warning("config differs from the checkpoint's run in: %s", sorted(changed))
        else:
            save_state(self.periodic, self.state, self.meta_now())  # step 0: there is always a checkpoint to roll back to
        if self.primary:
            images.atomic_write_bytes(workdir / "config.json",
                                      json.dumps(config_json(config), indent=2, sort_keys=True).encode())
        self.writer = JsonlWriter(workdir / "metrics.jsonl", truncate_after=int(self.state.step),
                                  enabled=self.primary)

    def open_iterator(self, at: int) -> None:
        if self.it is not None:
            self.it.close()
        c = self.config
        self.it_size = size_at(c, at)
        self.it = make_process_iterator(self.train_src, int(c.batch_size), self.it_size, self.rows, seed=int(c.seed),
                                        start_step=at, num_workers=int(c.num_workers), prefetch=int(c.prefetch))

    def export(self, path: Path, val: dict):
        if not self.primary:
            return None
        meta = {"steps": int(self.state.step), "data": self.config.data, "config": config_json(self.config),
                "val": {k: v for k, v in val.items() if "/" not in k[4:]}}
        return save_checkpoint(path, jax.device_get(self.state.params), flow_config(self.config), self.config.mode,
                               meta)

    def run(self) -> dict:
        from tqdm import tqdm

        config = self.config
        step, total = int(self.state.step), int(config.num_train_steps)
        self.pbar = tqdm(total=total, initial=step, disable=not (config.progress_bar and self.primary),
                         dynamic_ncols=True, desc=f"train {config.mode}", smoothing=0.05)
        time_limit = float(config.get("time_limit_s", 0.0) or 0.0)
        t_start = self.t_log = time.perf_counter()
        out_of_time = False
        try:
            while step < total and not out_of_time:
                step, accepted = self.train_one(step)
                if not accepted:
                    continue
                # Process 0's clock decides, so all processes stop after the same step.
                out_of_time = time_limit > 0 and distributed.agree(time.perf_counter() - t_start > time_limit)
                last = step == total or out_of_time
                if out_of_time and step < total:
                    logger.info("step %d: time limit %.0f s reached; stopping", step, time_limit)
                    self.writer.write({"step": step, "kind": "time_limit", "time_limit_s": time_limit})
                self.after_step(step, last)
        finally:
            self.pbar.close()
            if self.it is not None:
                self.it.close()
            self.periodic.wait_until_finished()
            self.best_mgr.wait_until_finished()
        model_id = self.export(self.workdir / "model.pfj", self.last_val)
        distributed.barrier("proface train_and_evaluate: done")  # no process leaves while others still save
        summary = {"step": int(self.state.step), "model_id": model_id, "val": self.last_val,
                   "best_value": self.best_value, "rollbacks": self.rollbacks, "lr_scale": float(self.state.lr_scale)}
        self.periodic.close()
        self.best_mgr.close()
        return {"state": self.state, **summary}

    def train_one(self, step: int) -> tuple[int, bool]:
        """Step `step` -> (the next step, whether it was kept); a rejected step rolls back."""
        config = self.config
        if self.it is None or self.it_size != size_at(config, step):
            self.open_iterator(step)
        batch = next(self.it)
        assert batch["step"] == step, (batch["step"], step)
        x = batch["image"]
        obf_rng, rng = jax.random.split(jax.random.fold_in(self.train_root, step))
        b = int(config.batch_size)
        y, obf_name = self.train_obfs(obf_rng, x, self.rows, b)
        if config.debug.inject_nan_at_step == step and not self.nan_injected:
            x, y = np.full_like(x, np.nan), np.full(np.shape(y), np.nan, np.float32)
            self.nan_injected = True
        if len(x) == b:
            batch = shard_batch({"x": x, "y": y}, self.mesh)
        else:  # this process's rows only: the others come from the other processes
            batch = shard_local_batch({"x": x, "y": y}, self.mesh, b)
        new_state, m = self.step_fn(self.state, batch, rng)
        m = host_scalars(m)
        loss = m["loss"]
        reason = self.guard.check(loss) if config.guard.enabled else None
        if reason is None and config.guard.enabled and not math.isfinite(m.get("loss_adversarial", 0.0)):
            reason = f"non-finite loss with the adversary term ({m['loss_adversarial']})"
        if reason is not None:
            return self.roll_back(step, reason, obf_name), False
        self.state = new_state
        self.guard.update(loss)
        m["obfuscator"] = obf_name
        self.window.append(m)
        self.pbar.set_postfix(loss=f"{loss:.4f}", P=f"{m['L_P']:.4f}", R=f"{m['L_R']:.4f}", WR=f"{m['L_WR']:.4f}",
                              refresh=False)
        self.pbar.update(1)
        return step + 1, True

    def roll_back(self, step: int, reason: str, obf_name: str) -> int:
        """Restores the last periodic checkpoint with a lower lr scale; -> the step to continue from."""
        config = self.config
        self.rollbacks += 1
        if self.rollbacks > config.guard.max_rollbacks:
            raise RuntimeError(f"step {step}: {reason}; giving up after {config.guard.max_rollbacks} rollbacks")
        self.periodic.wait_until_finished()
        back = self.periodic.latest_step()
        new_scale = float(self.state.lr_scale) * float(config.guard.lr_decay)
        self.state, meta = restore_state(self.periodic, back, self.state, self.mesh)
        self.state = self.state.replace(lr_scale=replicate(jnp.asarray(new_scale, jnp.float32), self.mesh))
        self.guard = LossGuard.from_config(config, meta.get("guard_history", []))
        event = {"step": step, "kind": "rollback", "reason": reason, "restored_step": back,
                 "lr_scale": new_scale, "obfuscator": obf_name, "rollbacks": self.rollbacks}
        logger.warning("step %d: %s -> restored step %d, lr scale %g", step, reason, back, new_scale)
        self.writer.write(event)
        self.open_iterator(back)
        self.pbar.n = back
        self.pbar.refresh()
        self.window.clear()
        return back

    def after_step(self, step: int, last: bool) -> None:
        """Logging, validation, samples and checkpoints due after `step` steps."""
        config = self.config
        if step % config.log_every == 0 or last:
            now = time.perf_counter()
            rec = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0] if k != "obfuscator"}
            rec.update(step=step, kind="train", steps_per_s=len(self.window) / max(now - self.t_log, 1e-9),
                       obfuscators=collections.Counter(w["obfuscator"] for w in self.window))
            self.writer.write(rec)
            self.window.clear()
            self.t_log = now
        do_eval = step % config.eval_every == 0 or last
        do_sample = step % config.sample_every == 0 or last
        if do_eval or do_sample:
            val, rows = self.evaluator(self.state.params)
            if do_sample and self.primary:
                save_grid(self.workdir / "samples" / f"step_{step:07d}.png", rows)
            if do_eval:
                self.record_validation(step, val)
        if step % config.checkpoint_every == 0 or last:
            save_state(self.periodic, self.state, self.meta_now())

    def record_validation(self, step: int, val: dict) -> None:
        config = self.config
        self.last_val = val
        self.writer.write({"step": step, "kind": "eval", **val})
        value = val.get(config.best_metric)
        if value is None:
            raise KeyError(f"best_metric {config.best_metric!r} not among {sorted(val)}")
        best = self.best_value
        better = best is None or (value < best if config.best_mode == "min" else value > best)
        if better and math.isfinite(value):
            self.best_value = value
            save_state(self.best_mgr, self.state, self.meta_now(), {"value": value})
            self.export(self.workdir / "best.pfj", val)
            self.writer.write({"step": step, "kind": "best", config.best_metric: value})
        if self.primary:
            self.pbar.write(f"step {step}: " + ", ".join(
                f"{k[4:]} {v:.4g}" for k, v in sorted(val.items()) if k.count("/") == 1))

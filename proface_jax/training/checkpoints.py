"""Orbax checkpoints of the training state: the periodic ones (last `keep_checkpoints`) and the
best by `best_metric`, each with JSON meta (iterator position, the guard's loss history, the
best value), so "n steps, stop, resume, n steps" equals 2n steps straight."""
from __future__ import annotations

from pathlib import Path

import jax
from jax.sharding import Mesh

from proface_jax.training.mesh import replicated
from proface_jax.training.state import TrainState


def checkpoint_managers(workdir: Path, config):
    """(periodic, best) orbax CheckpointManagers under workdir/checkpoints and workdir/best."""
    import orbax.checkpoint as ocp

    periodic = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=int(config.keep_checkpoints), create=True),
        item_names=("state", "meta"))
    sign = 1.0 if config.best_mode == "max" else -1.0
    if config.best_mode not in ("min", "max"):
        raise ValueError(f"best_mode must be 'min' or 'max', got {config.best_mode!r}")
    best = ocp.CheckpointManager(
        workdir / "best",
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True, best_fn=lambda m: sign * m["value"],
                                             best_mode="max"),
        item_names=("state", "meta"))
    return periodic, best


def save_state(manager, state, meta: dict, metrics_: dict | None = None) -> None:
    import orbax.checkpoint as ocp

    step = int(state.step)
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                 metrics=metrics_)


def restore_state(manager, step: int, like: TrainState, mesh: Mesh):
    """(state, meta) of checkpoint `step`, placed replicated on `mesh`; `like` gives the tree."""
    import orbax.checkpoint as ocp

    rep = replicated(mesh)
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), like)
    r = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                      meta=ocp.args.JsonRestore()))
    return r.state, dict(r.meta)

"""Training PRO-Face S, as a library of small modules (the entry point is `python -m experiments.train`):

    config       base_config (every field documented) and the presets paper112 / authors256 / fast / smoke
    state        TrainState, the optimiser and its schedule, create_train_state
    step         train_step / eval_step over the shared forward (`proface_jax.protocol`), jitted on a mesh
    mesh         the 1-D data-parallel mesh and shardings (local devices, or all processes' devices)
    distributed  multi-process runs: jax.distributed from config.distributed, who writes files
    guard        the loss-explosion guard
    obfuscation  the pre-obfuscators, one per batch
    validation   the fixed validation batch and its metrics
    checkpoints  orbax checkpoints (periodic and best) with the resume meta
    logs         metrics.jsonl, config.json, sample grids
    loop         train_and_evaluate: resume, steps, rollbacks, validation, export of best.pfj / model.pfj
"""
from proface_jax.training.guard import LossGuard
from proface_jax.training.loop import train_and_evaluate
from proface_jax.training.mesh import make_mesh, replicate, shard_batch
from proface_jax.training.state import (TrainState, create_train_state, flow_config, learning_rate_schedule,
                                        loss_config, make_optimizer)
from proface_jax.training.step import eval_step, make_eval_step, make_train_step, train_step

__all__ = [
    "LossGuard", "TrainState", "create_train_state", "eval_step", "flow_config", "learning_rate_schedule",
    "loss_config", "make_eval_step", "make_mesh", "make_optimizer", "make_train_step", "replicate", "shard_batch",
    "train_and_evaluate", "train_step",
]

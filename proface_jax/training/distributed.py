"""Multi-process training on `jax.distributed`: starting it from `config.distributed`, and the
few facts the loop needs about the processes (who writes files, agreeing on a host decision).

One process per host (or per GPU, as a cluster launcher decides); all processes run the same
program on a global mesh (`training.mesh.make_mesh`), each reading only its rows of every global
batch (`input_pipeline.process_rows`). Single-process runs (the default: no coordinator, auto
off) never call `jax.distributed.initialize` and behave as before.

On CPU the processes talk through Gloo; the setting is harmless on GPU/TPU (it only affects
the CPU client), so it is always set before initialising.
"""
from __future__ import annotations

import logging

import jax

logger = logging.getLogger("proface.train")


def wanted(dcfg) -> bool:
    """Whether `dcfg` (a config's `distributed` block, or None) asks for jax.distributed; checks it."""
    if dcfg is None:
        return False
    coordinator = str(dcfg.get("coordinator", "") or "")
    auto = bool(dcfg.get("auto", False))
    num, pid = int(dcfg.get("num_processes", 1)), int(dcfg.get("process_id", 0))
    if auto and coordinator:
        raise ValueError("distributed: give either auto=True (cluster detection) or coordinator=HOST:PORT, not both")
    if auto:
        return True
    if not coordinator:
        if num != 1 or pid != 0:
            raise ValueError(f"distributed: num_processes={num}, process_id={pid} need coordinator=HOST:PORT "
                             "(or auto=True on a cluster jax.distributed detects)")
        return False
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"distributed.coordinator must be HOST:PORT, got {coordinator!r}")
    if num < 1 or not 0 <= pid < num:
        raise ValueError(f"distributed: need num_processes >= 1 and 0 <= process_id < num_processes, "
                         f"got num_processes={num}, process_id={pid}")
    return True


def initialize(dcfg) -> bool:
    """Starts jax.distributed as `dcfg` asks (once per process; must come before any JAX computation).

    Returns whether jax.distributed is running. A second call (say, train_and_evaluate after
    experiments.train already initialised) is a no-op.
    """
    if not wanted(dcfg):
        return jax.distributed.is_initialized()
    if jax.distributed.is_initialized():
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timeouts = dict(initialization_timeout=int(dcfg.get("timeout_s", 300)),
                    heartbeat_timeout_seconds=int(dcfg.get("heartbeat_timeout_s", 100)))
    if dcfg.auto:
        jax.distributed.initialize(**timeouts)  # SLURM, Cloud TPU, MPI (Open MPI), ... detected by JAX
    else:
        jax.distributed.initialize(str(dcfg.coordinator), int(dcfg.num_processes), int(dcfg.process_id), **timeouts)
    logger.info("jax.distributed: process %d of %d, %d local / %d global device(s)", jax.process_index(),
                jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def is_primary() -> bool:
    """Process 0: the one that writes logs, samples, config.json and the .pfj exports."""
    return jax.process_index() == 0


def agree(flag: bool) -> bool:
    """A host-side decision (a wall-clock limit) made by process 0 and followed by all, so every
    process runs the same collectives."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(jax.numpy.asarray(bool(flag))))


def barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)

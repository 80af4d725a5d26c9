"""Data parallelism: a 1-D `jax.sharding.Mesh` ("data") over the devices (as many as divide
the batch); the batch is sharded along it, params and optimiser state replicated, and jit
inserts the gradient all-reduce. No pmap.

One process: the mesh spans its local devices and host batches are `device_put` whole. Several
processes (`jax.distributed`): the mesh spans every process's devices, ordered by process, so
process p holds a contiguous block of rows of each global batch (`process_rows`); each process
hands in only those rows (`shard_local_batch`), and host values every process holds in full
(the replicated state, the fixed validation batch) are placed with `make_array_from_callback`.
"""
from __future__ import annotations

import logging
from typing import Iterable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

logger = logging.getLogger("proface.train")

DATA_AXIS = "data"


def make_mesh(batch_size: int, devices: Iterable | None = None) -> Mesh:
    """A 1-D data mesh over as many of `devices` as divide the batch.

    Default devices: the local ones in a single process; all processes' devices (the same number
    from each, ordered by process) under jax.distributed, where batch_size must be a multiple of
    the process count.
    """
    if devices is None and jax.process_count() > 1:
        return _global_mesh(batch_size)
    devices = list(jax.local_devices() if devices is None else devices)
    n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if n < len(devices):
        logger.warning("batch %d does not split over %d devices: using %d", batch_size, len(devices), n)
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def _global_mesh(batch_size: int) -> Mesh:
    procs = jax.process_count()
    if batch_size % procs:
        raise ValueError(f"batch_size {batch_size} must be a multiple of the process count {procs} "
                         "(each process feeds the same number of rows)")
    by_proc: dict[int, list] = {}
    for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_proc.setdefault(d.process_index, []).append(d)
    local = min(len(v) for v in by_proc.values())
    k = max(d for d in range(1, local + 1) if (batch_size // procs) % d == 0)
    if k < local:
        logger.warning("batch %d does not split over %d devices per process: using %d", batch_size, local, k)
    return Mesh(np.asarray([d for p in sorted(by_proc) for d in by_proc[p][:k]]), (DATA_AXIS,))


def is_multiprocess(mesh: Mesh) -> bool:
    """Whether the mesh has devices of other processes (then host arrays need the global placements)."""
    return any(d.process_index != jax.process_index() for d in mesh.devices.flat)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def _global_put(tree, sharding: NamedSharding):
    """Host values every process holds in full -> global arrays (each process fills its shards)."""
    def put(a):
        a = np.asarray(jax.device_get(a))
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree_util.tree_map(put, tree)


def replicate(tree, mesh: Mesh):
    if is_multiprocess(mesh):
        return _global_put(tree, replicated(mesh))
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    """A whole global batch (the same on every process) sharded along the data axis."""
    if is_multiprocess(mesh):
        return _global_put(batch, batch_sharding(mesh))
    return jax.device_put(batch, batch_sharding(mesh))


def process_rows(mesh: Mesh, global_batch: int) -> slice:
    """The rows of a global batch this process's devices hold (a contiguous block; all rows in one process)."""
    if global_batch % mesh.size:
        raise ValueError(f"batch {global_batch} does not split over the {mesh.size}-device mesh")
    idx = batch_sharding(mesh).addressable_devices_indices_map((global_batch,))
    starts = sorted({s[0].start or 0 for s in idx.values()})
    per = global_batch // mesh.size
    start, stop = starts[0], starts[-1] + per
    if stop - start != per * len(starts):
        raise ValueError(f"this process's rows of the batch are not contiguous: starts {starts}")
    return slice(start, stop)


def shard_local_batch(local, mesh: Mesh, global_batch: int):
    """This process's rows (`process_rows`) of each array -> global arrays of `global_batch` rows."""
    sharding = batch_sharding(mesh)

    def put(a):
        a = np.asarray(a)
        return jax.make_array_from_process_local_data(sharding, a, (global_batch, *a.shape[1:]))

    return jax.tree_util.tree_map(put, local)

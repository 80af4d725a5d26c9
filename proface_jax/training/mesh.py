"""Data parallelism: a 1-D `jax.sharding.Mesh` ("data") over the local devices (as many as divide
the batch); the batch is sharded along it, params and optimiser state replicated, and jit
inserts the gradient all-reduce. No pmap."""
from __future__ import annotations

import logging
from typing import Iterable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

logger = logging.getLogger("proface.train")

DATA_AXIS = "data"


def make_mesh(batch_size: int, devices: Iterable | None = None) -> Mesh:
    """A 1-D data mesh over as many of `devices` (default: all local) as divide the batch."""
    devices = list(jax.local_devices() if devices is None else devices)
    n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if n < len(devices):
        logger.warning("batch %d does not split over %d devices: using %d", batch_size, len(devices), n)
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    return jax.device_put(batch, batch_sharding(mesh))

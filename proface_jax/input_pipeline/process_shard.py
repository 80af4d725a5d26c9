"""One process's share of every global batch, for multi-process training (`jax.distributed`).

The global batch order stays `batches.batch_indices(seed, step)` whatever the process count;
process p decodes only rows `rows` of each global batch (a contiguous block: the rows its
devices hold, `training.mesh.process_rows`). So the shards of all processes are disjoint, their
union is the single-process batch, and resuming at step k (`start_step`) works as before.
"""
from __future__ import annotations

import numpy as np

from proface_jax.input_pipeline.batches import BatchIterator
from proface_jax.input_pipeline.sources import Source


class ProcessShardIterator(BatchIterator):
    """A `BatchIterator` yielding rows `rows` of each global batch of `batch_size`."""

    def __init__(self, source: Source, batch_size: int, size: int, rows: slice, **kwargs):
        start, stop, step = rows.indices(batch_size)
        if step != 1 or stop <= start:
            raise ValueError(f"rows must be a non-empty contiguous slice of a batch of {batch_size}, got {rows}")
        self.rows = slice(start, stop)
        super().__init__(source, batch_size, size, **kwargs)

    def _indices(self, step: int) -> np.ndarray:
        return super()._indices(step)[self.rows]


def make_process_iterator(source: Source, batch_size: int, size: int, rows: slice, seed: int = 0,
                          start_step: int = 0, **kwargs) -> BatchIterator:
    """`make_iterator`'s batches restricted to rows `rows` (all rows: the plain iterator)."""
    if rows.indices(batch_size) == (0, batch_size, 1):
        return BatchIterator(source, batch_size, size, seed=seed, start_step=start_step, **kwargs)
    return ProcessShardIterator(source, batch_size, size, rows, seed=seed, start_step=start_step, **kwargs)

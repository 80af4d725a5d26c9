"""Batches of faces: a deterministic, resumable order and a threaded decoder.

Global step s lives in epoch ``s // steps_per_epoch``; each epoch is a
permutation from ``np.random.default_rng([seed, epoch])``. Batch s is thus a
pure function of (seed, s): starting at ``start_step=k`` yields exactly the
batches a fresh run yields from its k-th on (resumable position: checkpoint
`iterator.step`). The last incomplete batch of each epoch is dropped
(``drop_remainder=True``, the default), so every batch has the same shape and
every epoch has the same length; evaluation passes use drop_remainder=False
(last batch smaller) and shuffle=False.

Decoding runs in a thread pool (PIL and OpenCV release the GIL while
decoding and resizing, and threads need no pickling of sources), with up to
`prefetch` batches submitted ahead of the consumer. A worker's exception is
re-raised, unchanged, by the `next()` that needs that batch. `close()` (or the
context manager) cancels pending work and joins the threads. grain was
considered: it would bring checkpointable iterators too, but adds a dependency
and process-based workers this small pipeline does not need; the order and
resumability it provides are the ~20 lines of `batch_indices` here.

Values: float32 [B, size, size, 3] in [-1, 1] via `images.to_unit`, resized
with PIL's bicubic filter (antialiased when shrinking).
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
from typing import Any, Iterator

import numpy as np

from proface_jax import images
from proface_jax.input_pipeline.sources import ArraySource, Source, preprocess


def steps_per_epoch(num_examples: int, batch_size: int, drop_remainder: bool = True) -> int:
    return num_examples // batch_size if drop_remainder else -(-num_examples // batch_size)


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The order of one epoch: a permutation from default_rng([seed, epoch]), or 0..n-1."""
    if not shuffle:
        return np.arange(num_examples, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch)]).permutation(num_examples).astype(np.int64)


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int, shuffle: bool = True,
                  drop_remainder: bool = True) -> np.ndarray:
    """Source indices of global batch `step`: a pure function of its arguments."""
    spe = steps_per_epoch(num_examples, batch_size, drop_remainder)
    epoch, k = divmod(step, spe)
    order = epoch_order(num_examples, seed, epoch, shuffle)
    return order[k * batch_size:(k + 1) * batch_size]


# --------------------------------------------------------------------------- iterator


class BatchIterator:
    """Batches {'image', 'name', 'index', 'step'} from a source; see `make_iterator`."""

    def __init__(self, source: Source, batch_size: int, size: int, seed: int = 0, start_step: int = 0,
                 shuffle: bool = True, num_workers: int | None = None, prefetch: int = 2,
                 num_epochs: int | None = None, drop_remainder: bool = True):
        n = len(source)
        if batch_size < 1 or size < 1:
            raise ValueError(f"batch_size and size must be >= 1, got {batch_size}, {size}")
        if start_step < 0 or prefetch < 0:
            raise ValueError(f"start_step and prefetch must be >= 0, got {start_step}, {prefetch}")
        self.steps_per_epoch = steps_per_epoch(n, batch_size, drop_remainder)
        if self.steps_per_epoch == 0:
            raise ValueError(f"a source of {n} images has no full batch of {batch_size}")
        self.source, self.batch_size, self.size, self.seed = source, batch_size, size, seed
        self.shuffle, self.drop_remainder = shuffle, drop_remainder
        self.end_step = None if num_epochs is None else num_epochs * self.steps_per_epoch
        self.prefetch = prefetch
        workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="input")
        self._pending: collections.deque = collections.deque()
        self._next_submit = start_step
        self._step = start_step  # the step the next batch will carry
        self._order_cache: tuple[int, np.ndarray] | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def step(self) -> int:
        """The global step of the next batch: save it, and resume with make_iterator(start_step=step)."""
        return self._step

    def _indices(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, epoch_order(len(self.source), self.seed, epoch, self.shuffle))
        return self._order_cache[1][k * self.batch_size:(k + 1) * self.batch_size]

    def _load(self, index: int) -> tuple[np.ndarray, str]:
        face = self.source[int(index)]
        return preprocess(face.image, self.size), face.name

    def _load_array(self, idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
        src: ArraySource = self.source  # type: ignore[assignment]
        return images.to_unit(src.images[idx]), [src.names[i] for i in idx]

    def _submit_one(self) -> None:
        step = self._next_submit
        idx = self._indices(step)
        src = self.source
        if isinstance(src, ArraySource) and src.images.shape[1:3] == (self.size, self.size):
            work: Any = self._pool.submit(self._load_array, idx)  # one gather per batch
        else:
            work = [self._pool.submit(self._load, i) for i in idx]
        self._pending.append((step, idx, work))
        self._next_submit += 1

    def _fill(self) -> None:
        while len(self._pending) <= self.prefetch and (self.end_step is None or self._next_submit < self.end_step):
            self._submit_one()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        with self._lock:
            if self._closed:
                raise RuntimeError("input iterator is closed")
            self._fill()
            if not self._pending:
                raise StopIteration
            step, idx, work = self._pending.popleft()
            try:
                if isinstance(work, list):
                    results = [f.result() for f in work]  # re-raises a worker's exception here
                    image = np.stack([r[0] for r in results])
                    names = [r[1] for r in results]
                else:
                    image, names = work.result()
            except BaseException:
                self._close_locked()
                raise
            augment = getattr(self.source, "augment_batch", None)  # input_pipeline.augment.Augmented
            if augment is not None:
                image = augment(image, step, idx)
            self._step = step + 1
            self._fill()  # keep the workers busy while the consumer computes
        return {"image": image, "name": np.asarray(names, dtype=str), "index": np.asarray(idx, np.int64),
                "step": step}

    def _close_locked(self) -> None:
        if not self._closed:
            self._closed = True
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Cancels queued work and joins the worker threads (idempotent)."""
        with self._lock:
            self._close_locked()

    def __enter__(self) -> "BatchIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self._pool.shutdown(wait=False, cancel_futures=True)
        except Exception:
            pass


def make_iterator(source: Source, batch_size: int, size: int, seed: int = 0, start_step: int = 0,
                  shuffle: bool = True, num_workers: int | None = None, prefetch: int = 2,
                  num_epochs: int | None = None, drop_remainder: bool = True) -> BatchIterator:
    """Batches of faces, deterministic in (seed, step), decoded in a thread pool.

    Yields {'image': float32 [B, size, size, 3] in [-1, 1], 'name': str array [B],
    'index': int64 [B] source indices, 'step': global step}. Endless unless
    `num_epochs` is given (counted from step 0, so a resumed run ends at the
    same step). `prefetch` batches beyond the one being consumed are decoded
    ahead. Use as a context manager or call close().
    """
    return BatchIterator(source, batch_size, size, seed=seed, start_step=start_step, shuffle=shuffle,
                         num_workers=num_workers, prefetch=prefetch, num_epochs=num_epochs,
                         drop_remainder=drop_remainder)


# --------------------------------------------------------------------------- cache


def cache_in_memory(source: Source, size: int, num_workers: int | None = None) -> ArraySource:
    """Decodes, crops and resizes every face once into uint8 [N, size, size, 3] (UTKFace at 112: ~370 MB).

    Batches from the result equal those from `source` (same resize, same
    rounding); the fast path gathers whole batches without per-image work.
    """
    n = len(source)
    out = np.empty((n, size, size, 3), np.uint8)
    names: list[str] = [""] * n

    def load(i: int) -> None:
        face = source[i]
        img = face.image
        if img.shape[:2] != (size, size):
            img = images.resize(np.ascontiguousarray(img), (size, size))
        out[i] = img
        names[i] = face.name

    workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for f in [pool.submit(load, i) for i in range(n)]:
            f.result()
    return ArraySource(out, names)

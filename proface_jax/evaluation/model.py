"""A checkpoint under evaluation, with the shared forward (`proface_jax.protocol`) jitted once
per flow config and batch shape."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import checkpoint as ckpt_lib
from proface_jax import images, protocol
from proface_jax.evaluation.faces import key_of
from proface_jax.evaluation.scoring import chunks, pad_to


class Model:
    """A checkpoint with its jitted forward passes (one compile per batch shape)."""

    def __init__(self, ck: ckpt_lib.Checkpoint, label: str):
        self.ck, self.label, self.mode, self.cfg = ck, label, ck.mode, ck.config
        self.params = jax.tree_util.tree_map(jnp.asarray, ck.params)

    def forward(self, x, y, K, K_wrong) -> dict:
        """`protocol.forward` with ŷ stored as the PNG levels, plus the recoveries from the float ŷ."""
        return jax.device_get(protocol.forward_jit(self.params, x, y, K, K_wrong, self.cfg, store="png",
                                                   float_recoveries=True))

    def protect(self, x, y, K):
        return jax.device_get(protocol.protect_jit(self.params, x, y, K, self.cfg))

    def recover(self, a, K):
        return jax.device_get(protocol.recover_jit(self.params, a, K, self.cfg))

    def protect_all(self, x, y, maps, batch) -> tuple[np.ndarray, np.ndarray]:
        """(stored ŷ as uint8, byproduct x̂ float) for a whole set, in padded batches."""
        stored = np.empty(x.shape, np.uint8)
        by = np.empty(x.shape, np.float32)
        for s, e in chunks(len(x), batch):
            p, b = self.protect(pad_to(x[s:e], batch), pad_to(y[s:e], batch), key_of(pad_to(maps[s:e], batch)))
            stored[s:e] = images.from_unit(np.asarray(p)[: e - s])
            by[s:e] = np.asarray(b)[: e - s]
        return stored, by

    def recover_all(self, a: np.ndarray, maps, batch) -> tuple[np.ndarray, np.ndarray]:
        rec, by = np.empty(a.shape, np.float32), np.empty(a.shape, np.float32)
        for s, e in chunks(len(a), batch):
            r, b = self.recover(pad_to(a[s:e], batch), key_of(pad_to(maps[s:e], batch)))
            rec[s:e], by[s:e] = np.asarray(r)[: e - s], np.asarray(b)[: e - s]
        return rec, by

"""The loss-explosion guard (HiNet-style blow-ups, spec §6): a step whose loss is NaN/Inf or above
`guard.factor` × the running median of recent losses is dropped; the loop then restores the last
checkpoint and multiplies the lr scale by `guard.lr_decay`."""
from __future__ import annotations

import collections
import math
import statistics
from typing import Iterable


class LossGuard:
    """Flags a loss that is not finite or exceeds factor × the running median of the last `window`."""

    def __init__(self, window: int, min_history: int, factor: float, history: Iterable[float] = ()):
        self.window, self.min_history, self.factor = int(window), int(min_history), float(factor)
        self.history: collections.deque = collections.deque(history, maxlen=self.window)

    @classmethod
    def from_config(cls, config, history: Iterable[float] = ()) -> "LossGuard":
        return cls(config.guard.window, config.guard.min_history, config.guard.factor, history)

    def check(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        if len(self.history) >= self.min_history:
            med = statistics.median(self.history)
            if loss > self.factor * med:
                return f"loss {loss:.4g} > {self.factor:g} × running median {med:.4g}"
        return None

    def update(self, loss: float) -> None:
        self.history.append(float(loss))

"""Pre-obfuscation for training: the configured obfuscators, one drawn per batch.

The batch y is made before the step: the JAX obfuscators (blur, pixelate, median) in their own
small jitted function (`obfuscators.jitted`), the numpy ones (mask, swap) on the host; so the
big step compiles once whatever the obfuscator."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from proface_jax import obfuscators


class PreObfuscators:
    """The configured obfuscators (train or eval setting), one applied per batch."""

    def __init__(self, names: list[str], preset: str, mode: str, donors=None):
        self.obfs = []
        for name in names:
            opts = {"donors": donors} if name == "swap" else {}
            self.obfs.append(obfuscators.make(name, preset=preset, mode=mode, **opts))
        if not self.obfs:
            raise ValueError("no obfuscators configured")
        self.preset, self.mode = preset, mode

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.obfs]

    def apply(self, obf, rng, x):
        if obf.jittable:
            return obfuscators.jitted(obf.name, self.preset, self.mode)(rng, jnp.asarray(x))
        return obf(rng, np.asarray(x))

    def __call__(self, rng, x):
        """One obfuscator drawn from `rng` for the whole batch -> (y, name)."""
        obf, use = obfuscators.choose(rng, self.obfs)
        return self.apply(obf, use, x), obf.name


def obfuscator_names(config) -> list[str]:
    names = [n.strip() for n in str(config.obfuscators).split(",") if n.strip()]
    unknown = sorted(set(names) - set(obfuscators.names()))
    if unknown:
        raise ValueError(f"unknown obfuscator(s) {unknown}; known: {obfuscators.names()}")
    return names


def obfuscator_names_for(config, donors) -> list[str]:
    """The configured names, without swap when there are no donor faces."""
    names = obfuscator_names(config)
    if "swap" in names and donors is None:
        names = [n for n in names if n != "swap"]
    return names

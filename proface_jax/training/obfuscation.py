"""Pre-obfuscation for training: the configured obfuscators, one drawn per batch.

The batch y is made before the step: the JAX obfuscators (blur, pixelate, median) in their own
small jitted function (`obfuscators.jitted`), the numpy ones (mask, swap) on the host; so the
big step compiles once whatever the obfuscator."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import obfuscators


class PreObfuscators:
    """The configured obfuscators (train or eval setting), one applied per batch."""

    def __init__(self, names: list[str], preset: str, mode: str, donors=None, weights=None):
        self.obfs = []
        for name in names:
            opts = {"donors": donors} if name == "swap" else {}
            self.obfs.append(obfuscators.make(name, preset=preset, mode=mode, **opts))
        if not self.obfs:
            raise ValueError("no obfuscators configured")
        self.preset, self.mode = preset, mode
        # training draws by weight (`config.obfuscator_weights`, carried by `obfuscator_names_for`'s list);
        # None: uniform, exactly as before
        w = weights if weights is not None else getattr(names, "weights", None)
        self.weights = None if w is None or len(set(w)) == 1 else np.asarray(w, np.float64) / np.sum(w)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.obfs]

    def apply(self, obf, rng, x):
        if obf.jittable:
            return obfuscators.jitted(obf.name, self.preset, self.mode)(rng, jnp.asarray(x))
        return obf(rng, np.asarray(x))

    def pick(self, rng):
        """(obfuscator, rng for it): uniform (`obfuscators.choose`) or by the training weights."""
        if self.weights is None:
            return obfuscators.choose(rng, self.obfs)
        pick, use = jax.random.split(rng)
        return self.obfs[int(jax.random.choice(pick, len(self.obfs), p=jnp.asarray(self.weights, jnp.float32)))], use

    def __call__(self, rng, x):
        """One obfuscator drawn from `rng` for the whole batch -> (y, name)."""
        obf, use = self.pick(rng)
        return self.apply(obf, use, x), obf.name


def obfuscator_names(config) -> list[str]:
    names = [n.strip() for n in str(config.obfuscators).split(",") if n.strip()]
    unknown = sorted(set(names) - set(obfuscators.names()))
    if unknown:
        raise ValueError(f"unknown obfuscator(s) {unknown}; known: {obfuscators.names()}")
    return names


class WeightedNames(list):
    """Obfuscator names with their training draw weights (`.weights`, None: uniform)."""

    weights: list[float] | None = None


def obfuscator_weights(config, names: list[str]) -> list[float] | None:
    """`config.obfuscator_weights` ("mask=2,blur=0.5"; unnamed obfuscators weigh 1) for `names`."""
    spec = str(getattr(config, "obfuscator_weights", "") or "").strip()
    if not spec:
        return None
    w = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        name, _, val = part.partition("=")
        name = name.strip()
        if name not in obfuscators.names():
            raise ValueError(f"obfuscator_weights: unknown obfuscator {name!r}; known: {obfuscators.names()}")
        try:
            w[name] = float(val)
        except ValueError:
            raise ValueError(f"obfuscator_weights: {part!r} is not name=number") from None
        if not w[name] > 0:
            raise ValueError(f"obfuscator_weights: {name} must weigh more than 0, got {val}")
    return [w.get(n, 1.0) for n in names]


def obfuscator_names_for(config, donors) -> list[str]:
    """The configured names, without swap when there are no donor faces, carrying the configured
    training draw weights (`WeightedNames.weights`)."""
    names = obfuscator_names(config)
    if "swap" in names and donors is None:
        names = [n for n in names if n != "swap"]
    out = WeightedNames(names)
    out.weights = obfuscator_weights(config, names)
    return out

"""Pre-obfuscation for training: the configured obfuscators, one drawn per batch.

The batch y is made before the step: the JAX obfuscators (blur, pixelate, median) in their own
small jitted function (`obfuscators.jitted`), the numpy ones (mask, swap) on the host; so the
big step compiles once whatever the obfuscator.

Multi-process training obfuscates each process's rows of the global batch (`rows`): the
per-image draws are those of the whole batch, sliced, so the result does not depend on the
process count.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from proface_jax import obfuscators
from proface_jax.obfuscators.base import from_uint8_batch, to_uint8_batch
from proface_jax.obfuscators.filters import _Filter


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

    def __call__(self, rng, x, rows: slice | None = None, global_batch: int | None = None):
        """One obfuscator drawn from `rng` for the whole batch -> (y, name).

        With `rows` and `global_batch`: x holds rows `rows` of a global batch of `global_batch`
        images and y is what the whole batch's obfuscation gives for those rows.
        """
        obf, use = self.pick(rng)
        if rows is None or rows.indices(int(global_batch)) == (0, int(global_batch), 1):  # the whole batch
            return self.apply(obf, use, x), obf.name
        return self.apply_rows(obf, use, x, rows, int(global_batch)), obf.name

    def apply_rows(self, obf, rng, x, rows: slice, global_batch: int):
        """`obf` on rows `rows` of a global batch, with the per-image draws of the whole batch."""
        x = np.asarray(x, np.float32)
        if len(x) != len(range(*rows.indices(global_batch))):
            raise ValueError(f"{len(x)} images for rows {rows} of a batch of {global_batch}")
        if isinstance(obf, _Filter):  # strengths [B] drawn, then a pure per-image filter
            strengths = obf.draw(rng, global_batch, x.shape[1], x.shape[2])[rows]
            return _jitted_apply(obf.name, self.preset, self.mode)(jnp.asarray(x), strengths)
        if obf.name == "mask":
            params = obf.draw(rng, global_batch)[rows]
            u8 = to_uint8_batch(x, obf.name)
            return from_uint8_batch(np.stack([obf.composite(im, *p) for im, p in zip(u8, params)]))
        if obf.name == "swap":
            from proface_jax.obfuscators.swap import swap_face

            params = obf.draw(rng, global_batch)[rows]
            u8 = to_uint8_batch(x, obf.name)
            return from_uint8_batch(
                np.stack([swap_face(t, obf._donor_for(t, i), s) for t, (i, s) in zip(u8, params)]))
        # Any other obfuscator: run it on a whole-batch array (this process's rows in place, the
        # others filled with copies of them): correct for per-image obfuscators, at B/len(x) the cost.
        full = np.resize(x, (global_batch, *x.shape[1:]))
        full[rows] = x
        return np.asarray(self.apply(obf, rng, full))[rows]


@functools.lru_cache(maxsize=None)
def _jitted_apply(name: str, preset: str, mode: str):
    return jax.jit(obfuscators.make(name, preset=preset, mode=mode).apply)


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

"""A small bijector protocol (distrax / flowjax style), `Chain`, the Haar DWT as a bijection,
and the mixing layers between blocks.

A bijector is a frozen dataclass of static choices with three pure methods:

    init(rng, z, cond)            -> params            (z, cond: example inputs; shapes only)
    forward(params, z, cond)      -> (z', log_det)
    inverse(params, z', cond)     -> (z, log_det)      log_det of the inverse map (= −forward's)

`z` is any pytree of NHWC arrays (here the pair of streams (X, Y)); `log_det` is per
sample, shape [B]. `Chain(steps)` runs its steps in order; its inverse runs each step's
inverse in reverse order — derived here once, never written per level.

A step of a chain has a name or `None`: a named step reads `params[name]`; an unnamed one
shares the chain's own params dict (a parameterless step, or two couplings of one block
whose subnets sit side by side, as in the authors' checkpoints: block_i/{omega,phi,rho,eta}).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

from proface_jax.dwt import haar_dwt, haar_iwt

HIGHEST = lax.Precision.HIGHEST


def per_sample_zeros(z) -> jnp.ndarray:
    leaf = jax.tree_util.tree_leaves(z)[0]
    return jnp.zeros(leaf.shape[:1], leaf.dtype)


def sum_per_sample(a) -> jnp.ndarray:
    return jnp.sum(a, axis=tuple(range(1, a.ndim)))


@dataclasses.dataclass(frozen=True)
class Chain:
    """Steps in order: ((name or None, bijector), ...). Inverse = inverses in reverse order."""

    steps: tuple[tuple[str | None, Any], ...]

    @staticmethod
    def _p(params, name):
        return params if name is None else params[name]

    def init(self, rng, z, cond) -> dict:
        params: dict = {}
        for i, (name, step) in enumerate(self.steps):
            p = step.init(jax.random.fold_in(rng, i), z, cond)
            if name is None:
                clash = set(p) & set(params)
                if clash:
                    raise ValueError(f"unnamed chain steps share param names {sorted(clash)}")
                params.update(p)
            else:
                params[name] = p
            z, _ = step.forward(p, z, cond)  # the next step's example input
        return params

    def forward(self, params, z, cond):
        ld = per_sample_zeros(z)
        for name, step in self.steps:
            z, d = step.forward(self._p(params, name), z, cond)
            ld = ld + d
        return z, ld

    def inverse(self, params, z, cond):
        ld = per_sample_zeros(z)
        for name, step in reversed(self.steps):
            z, d = step.inverse(self._p(params, name), z, cond)
            ld = ld + d
        return z, ld


@dataclasses.dataclass(frozen=True)
class Invert:
    """The inverse of a bijector as a bijector."""

    bijector: Any

    def init(self, rng, z, cond):
        return self.bijector.init(rng, z, cond)  # a parameterless bijector; shapes of z are its output's

    def forward(self, params, z, cond):
        return self.bijector.inverse(params, z, cond)

    def inverse(self, params, z, cond):
        return self.bijector.forward(params, z, cond)


@dataclasses.dataclass(frozen=True)
class HaarPair:
    """(x, y) -> (DWT x, DWT y): orthonormal, so volume preserving (log_det 0). Fixed, no params."""

    def init(self, rng, z, cond):
        return {}

    def forward(self, params, z, cond):
        return tuple(haar_dwt(a) for a in z), per_sample_zeros(z)

    def inverse(self, params, z, cond):
        return tuple(haar_iwt(a) for a in z), per_sample_zeros(z)


# ---- mixing between blocks: a 1×1 map of the 2·12 channels of (X, Y), split back after ----

def _join(z):
    return jnp.concatenate(z, axis=-1), z[0].shape[-1]


def _split(v, c):
    return v[..., :c], v[..., c:]


def fixed_permutation(channels: int, index: int) -> np.ndarray:
    """The constant permutation of mixer `index`: numpy's default_rng(index).permutation (not a param)."""
    return np.random.default_rng(index).permutation(channels)


@dataclasses.dataclass(frozen=True)
class Permute:
    """A fixed channel permutation of [X‖Y] (volume preserving)."""

    index: int = 0

    def init(self, rng, z, cond):
        return {}

    def forward(self, params, z, cond):
        v, c = _join(z)
        return _split(v[..., fixed_permutation(v.shape[-1], self.index)], c), per_sample_zeros(z)

    def inverse(self, params, z, cond):
        v, c = _join(z)
        return _split(v[..., np.argsort(fixed_permutation(v.shape[-1], self.index))], c), per_sample_zeros(z)


@dataclasses.dataclass(frozen=True)
class Inv1x1:
    """Glow's invertible 1×1 conv of [X‖Y], LU-parametrised: W = P·L·(U + diag(e^log_s)).

    P is the constant `fixed_permutation` (not a param; sign of the diagonal +1); L is unit
    lower-, U strictly upper-triangular. Init L = U = 0, log_s = 0: W = P. log|det W| = Σ log_s
    per position."""

    index: int = 0

    def init(self, rng, z, cond):
        c = sum(a.shape[-1] for a in z)
        return {"lower": jnp.zeros((c, c)), "upper": jnp.zeros((c, c)), "log_s": jnp.zeros((c,))}

    def _lu(self, p):
        c = p["log_s"].shape[0]
        L = jnp.tril(p["lower"], -1) + jnp.eye(c, dtype=p["lower"].dtype)
        U = jnp.triu(p["upper"], 1) + jnp.diag(jnp.exp(p["log_s"]))
        return fixed_permutation(c, self.index), L, U

    def forward(self, params, z, cond):
        v, c = _join(z)
        perm, L, U = self._lu(params)
        w = jnp.matmul(L, U, precision=HIGHEST)[perm]  # P·L·U: row i of W is row perm[i] of L·U
        out = jnp.einsum("...c,dc->...d", v, w.astype(v.dtype), precision=HIGHEST)
        hw = v.shape[1] * v.shape[2]
        return _split(out, c), jnp.broadcast_to(hw * jnp.sum(params["log_s"]).astype(v.dtype), v.shape[:1])

    def inverse(self, params, z, cond):
        v, c = _join(z)
        perm, L, U = self._lu(params)
        flat = v.reshape(-1, v.shape[-1]).T  # [C, n]: W·flat_in = flat
        u = jnp.zeros_like(flat).at[perm].set(flat)  # Pᵀ
        u = solve_triangular(L.astype(v.dtype), u, lower=True, unit_diagonal=True)
        u = solve_triangular(U.astype(v.dtype), u, lower=False)
        hw = v.shape[1] * v.shape[2]
        return _split(u.T.reshape(v.shape), c), jnp.broadcast_to(-hw * jnp.sum(params["log_s"]).astype(v.dtype),
                                                                  v.shape[:1])


MIXERS = {"none": None, "permute": Permute, "inv1x1": Inv1x1}


def mixer(name: str, index: int):
    return None if MIXERS[name] is None else MIXERS[name](index)


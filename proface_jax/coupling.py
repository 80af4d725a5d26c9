"""Coupling steps and the Secure Affine Coupling Block (spec §4), as bijectors.

A coupling step updates one stream of the state (X, Y) from the other and the key K:

    target' = target · e(scale(cond)) + shift(cond)      inverse: (target' − shift) / e(scale)

with cond = the other stream (and K, per the key injection). `kind` picks e:

    affine           e(s) = exp(clamp · tanh(s / 2))   the paper's soft clamp (= exp(clamp·2·(σ(s) − ½)))
    additive         e = 1: no scale subnet, volume preserving (NICE)
    affine_sigmoid   e(s) = σ(s + 2)                    Glow's scale

log_det of a step is Σ log e over the updated stream. The SACB is the chain of two steps: Y
from X (subnets ω scale, φ shift), then X from the new Y (ρ, η); its inverse is derived by
`bijectors.Chain`. Forward and inverse of a step share `_scale_shift`, so they cannot drift.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp

from proface_jax.bijectors import Chain, per_sample_zeros, sum_per_sample
from proface_jax.subnet import CONDITIONERS

SUBNETS = ("omega", "phi", "rho", "eta")  # the authors' p, f, r, y
COUPLINGS = ("affine", "additive", "affine_sigmoid")
KEY_INJECTIONS = ("concat", "film", "none")


def log_scale(s: jnp.ndarray, clamp: float) -> jnp.ndarray:
    # clamp·2·(sigmoid(s) − ½) written as tanh: the same function, without the
    # cancellation of sigmoid(s) − ½ near s = 0.
    return clamp * jnp.tanh(0.5 * s)


def _with_key(z, K):
    return jnp.concatenate([z, jnp.broadcast_to(K, z.shape[:-1] + K.shape[-1:])], axis=-1)


@dataclasses.dataclass(frozen=True)
class Coupling:
    """Updates stream `update` ("y": Y from X; "x": X from Y). Params {scale_name, shift_name}."""

    update: str
    scale_name: str
    shift_name: str
    kind: str = "affine"
    conditioner: str = "dense"
    key_injection: str = "concat"
    clamp: float = 2.0
    init_scale: float = 0.01
    precision: str = "highest"

    @property
    def names(self) -> tuple[str, ...]:
        return (self.shift_name,) if self.kind == "additive" else (self.scale_name, self.shift_name)

    def _net(self, channels):
        return CONDITIONERS[self.conditioner](out_channels=channels, init_scale=self.init_scale,
                                              precision=self.precision)

    def _split(self, z):
        X, Y = z
        return (X, Y) if self.update == "y" else (Y, X)  # (cond, target)

    def _join(self, cond, target):
        return (cond, target) if self.update == "y" else (target, cond)

    def _inputs(self, cond, K):
        if self.key_injection == "concat":
            return _with_key(cond, K), None
        return cond, (K if self.key_injection == "film" else None)

    def _scale_shift(self, p, cond, K, channels):
        """(log e, shift): log e is None for additive."""
        inp, key = self._inputs(cond, K)
        net = self._net(channels)
        a = None
        if self.kind != "additive":
            s = net.apply({"params": p[self.scale_name]}, inp, key)
            a = log_scale(s, self.clamp) if self.kind == "affine" else -jax.nn.softplus(-(s + 2.0))
        return a, net.apply({"params": p[self.shift_name]}, inp, key)

    def init(self, rng, z, K):
        """rng: one key, or one per subnet (`names`) as a key array (the flow's authors' init)."""
        cond, target = self._split(z)
        inp, key = self._inputs(cond, K)
        keys = rng if getattr(rng, "shape", ()) == (len(self.names),) else jax.random.split(rng, len(self.names))
        net = self._net(target.shape[-1])
        return {n: net.init(k, inp, key)["params"] for n, k in zip(self.names, keys)}

    def forward(self, p, z, K):
        cond, target = self._split(z)
        a, t = self._scale_shift(p, cond, K, target.shape[-1])
        if a is None:
            return self._join(cond, target + t), per_sample_zeros(z)
        return self._join(cond, target * jnp.exp(a) + t), sum_per_sample(a)

    def inverse(self, p, z, K):
        cond, target = self._split(z)
        a, t = self._scale_shift(p, cond, K, target.shape[-1])
        if a is None:
            return self._join(cond, target - t), per_sample_zeros(z)
        return self._join(cond, (target - t) * jnp.exp(-a)), -sum_per_sample(a)

    def rebuild_vjp(self, p, z_out, K, g_out, forward: bool):
        """Reversible backprop of one step: its input rebuilt from its output, and the VJP
        (grads of its own subnets, of the input streams, of K), with one subnet pass."""
        cond, out = self._split(z_out)
        g_cond, g = self._split(g_out)
        ch = out.shape[-1]
        (a, t), vjp = jax.vjp(lambda sp, c, k: self._scale_shift(sp, c, k, ch),
                              {n: p[n] for n in self.names}, cond, K)
        if a is None:  # out = in ± t
            sign = 1.0 if forward else -1.0
            inp, g_in, g_a, g_t = out - sign * t, g, None, sign * g
        elif forward:  # out = in·e^a + t  ->  in = (out − t)·e^−a
            inp = (out - t) * jnp.exp(-a)
            g_in = g * jnp.exp(a)
            g_a, g_t = g * (out - t), g
        else:  # out = (in − t)·e^−a  ->  in = out·e^a + t
            inp = out * jnp.exp(a) + t
            g_in = g * jnp.exp(-a)
            g_a, g_t = -g * out, -g_in
        g_p, g_c, g_K = vjp((g_a, g_t))
        return self._join(cond, inp), g_p, self._join(g_cond + g_c, g_in), g_K


def sacb(clamp: float = 2.0, precision: str = "highest", kind: str = "affine", conditioner: str = "dense",
         key_injection: str = "concat", init_scale: float = 0.01) -> Chain:
    """The SACB: Y from X (ω, φ), then X from the new Y (ρ, η); params side by side in one dict."""
    kw = dict(kind=kind, conditioner=conditioner, key_injection=key_injection, clamp=clamp, init_scale=init_scale,
              precision=precision)
    return Chain(((None, Coupling("y", "omega", "phi", **kw)), (None, Coupling("x", "rho", "eta", **kw))))


def sacb_forward(p: Mapping, X, Y, K, *, clamp, precision="highest"):
    """(Xⁱ, Yⁱ) -> (Xⁱ⁺¹, Yⁱ⁺¹) of the paper's SACB."""
    return sacb(clamp, precision).forward(p, (X, Y), K)[0]


def sacb_inverse(p: Mapping, X, Y, K, *, clamp, precision="highest"):
    """(Xⁱ⁺¹, Yⁱ⁺¹) -> (Xⁱ, Yⁱ): the chain's derived inverse."""
    return sacb(clamp, precision).inverse(p, (X, Y), K)[0]

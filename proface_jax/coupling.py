"""One affine coupling step and the Secure Affine Coupling Block (spec §4).

    e(s) = exp(clamp · 2 · (sigmoid(s) − 0.5)) = exp(clamp · tanh(s / 2))

Forward and inverse of each step sit side by side and share their subnet calls;
the block is two steps, and its inverse runs the inverse steps in reverse.
Everything is a pure function of (params, inputs, K).
"""
from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp

from proface_jax.subnet import DenseSubnet

SUBNETS = ("omega", "phi", "rho", "eta")  # the authors' p, f, r, y


def log_scale(s: jnp.ndarray, clamp: float) -> jnp.ndarray:
    # clamp·2·(sigmoid(s) − ½) written as tanh: the same function, without the
    # cancellation of sigmoid(s) − ½ near s = 0.
    return clamp * jnp.tanh(0.5 * s)


def subnet(params, inputs, *, out_channels: int, precision: str):
    return DenseSubnet(out_channels=out_channels, precision=precision).apply({"params": params}, inputs)


def _scale_shift(scale_params, shift_params, cond, clamp, precision, channels):
    s = subnet(scale_params, cond, out_channels=channels, precision=precision)
    t = subnet(shift_params, cond, out_channels=channels, precision=precision)
    return log_scale(s, clamp), t


def scale_shift(scale_params, shift_params, cond, *, clamp, channels, precision="highest"):
    """(log e(scale(cond)), shift(cond)): the two subnet outputs one coupling step uses."""
    return _scale_shift(scale_params, shift_params, cond, clamp, precision, channels)


def coupling_forward(scale_params, shift_params, cond, target, *, clamp, precision="highest"):
    """target · e(scale(cond)) + shift(cond)."""
    a, t = _scale_shift(scale_params, shift_params, cond, clamp, precision, target.shape[-1])
    return target * jnp.exp(a) + t


def coupling_inverse(scale_params, shift_params, cond, target, *, clamp, precision="highest"):
    """(target − shift(cond)) / e(scale(cond)): the exact inverse of `coupling_forward`."""
    a, t = _scale_shift(scale_params, shift_params, cond, clamp, precision, target.shape[-1])
    return (target - t) * jnp.exp(-a)


def _with_key(z, K):
    return jnp.concatenate([z, jnp.broadcast_to(K, z.shape[:-1] + K.shape[-1:])], axis=-1)


def sacb_forward(p: Mapping, X, Y, K, *, clamp, precision="highest"):
    """(Xⁱ, Yⁱ) -> (Xⁱ⁺¹, Yⁱ⁺¹): Y is updated from X, then X from the new Y."""
    Y = coupling_forward(p["omega"], p["phi"], _with_key(X, K), Y, clamp=clamp, precision=precision)
    X = coupling_forward(p["rho"], p["eta"], _with_key(Y, K), X, clamp=clamp, precision=precision)
    return X, Y


def sacb_inverse(p: Mapping, X, Y, K, *, clamp, precision="highest"):
    """(Xⁱ⁺¹, Yⁱ⁺¹) -> (Xⁱ, Yⁱ): the two steps of `sacb_forward` undone in reverse order."""
    X = coupling_inverse(p["rho"], p["eta"], _with_key(Y, K), X, clamp=clamp, precision=precision)
    Y = coupling_inverse(p["omega"], p["phi"], _with_key(X, K), Y, clamp=clamp, precision=precision)
    return X, Y

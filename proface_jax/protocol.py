"""The PRO-Face S protocol, written once: protect → store as an 8-bit image → recover with the
right key and with a wrong one.

    out = forward(params, x, y, K, K_wrong, flow_config, store=...)

`store` says what happens to the protected image ŷ between protection and recovery:

* ``"straight_through"`` (training): rounded to 8 bits in the forward pass, gradient of the clamp
  only (`straight_through_quantize`), so a model learns to recover from a real PNG file;
* ``"round"`` (training's validation): `images.quantize`, the same rounding without a gradient;
* ``"png"`` (evaluation): `metrics.quantize8`, bit-for-bit the levels a reloaded PNG holds;
* ``"float"``: ŷ goes to recovery unrounded.

`float_recoveries=True` adds the recoveries from the unrounded ŷ as well (the evaluation's
"float" scoring). Every consumer calls these functions — `training.step` inside its jitted
train/eval steps, `evaluation.model.Model` through `forward_jit`, the CLI's `photo` and the
invertibility checker through `protect_jit` / `recover_jit` — so the protocol cannot drift
between what is trained, what is scored and what a user runs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from proface_jax import flow, images, metrics

STORES = ("straight_through", "round", "png", "float")


def straight_through_quantize(x):
    """8-bit rounding in the forward pass; the gradient of the clamp to [-1, 1], straight through the rounding.

    Only the rounding is passed straight through. An identity gradient through the clamp too would
    tell ŷ that pushing a pixel past ±1 still changes the recovery, when the stored file cannot
    hold it: such a model drives ŷ out of range without end.
    """
    clamped = jnp.clip(x, -1.0, 1.0)
    return clamped + jax.lax.stop_gradient(images.quantize(x) - clamped)


_STORE_FNS = {"straight_through": straight_through_quantize, "round": images.quantize,
              "png": metrics.quantize8, "float": lambda a: a}


def store_as(protected, store: str):
    """ŷ as recovery sees it (see the module docstring for the four kinds of `store`)."""
    if store not in _STORE_FNS:
        raise ValueError(f"store must be one of {STORES}, got {store!r}")
    return _STORE_FNS[store](protected)


def forward(params, x, y, K, K_wrong, config=None, *, store: str = "png", float_recoveries: bool = False,
            paired: bool = False) -> dict:
    """{'protected', 'byproduct', 'stored', 'recovered', 'recovered_byproduct', 'wrong',
    'wrong_byproduct'} (+ 'recovered_float', 'wrong_float' with float_recoveries).

    `paired`: the right- and wrong-key recoveries as one inverse pass over the stacked batch
    (`flow.recover_keys`: larger convolutions, one traced flow); False (default): two
    `flow.recover` calls, which XLA:CPU ran faster (benchmarks/bench_train_step.py). The same
    values up to float32 rounding (the convolutions' batch differs)."""
    cfg = flow.FlowConfig.from_any(config)
    protected, byproduct = flow.protect(params, x, y, K, cfg)
    stored = store_as(protected, store)
    if paired:
        (recovered, recovered_by), (wrong, wrong_by) = flow.recover_keys(params, stored, (K, K_wrong), cfg)
    else:
        recovered, recovered_by = flow.recover(params, stored, K, cfg)
        wrong, wrong_by = flow.recover(params, stored, K_wrong, cfg)
    out = {"protected": protected, "byproduct": byproduct, "stored": stored, "recovered": recovered,
           "recovered_byproduct": recovered_by, "wrong": wrong, "wrong_byproduct": wrong_by}
    if float_recoveries:
        out["recovered_float"], _ = flow.recover(params, protected, K, cfg)
        out["wrong_float"], _ = flow.recover(params, protected, K_wrong, cfg)
    return out


# The jitted entry points (the flow config is static: one compile per config and batch shape).
forward_jit = jax.jit(forward, static_argnums=(5,), static_argnames=("store", "float_recoveries", "paired"))
protect_jit = jax.jit(flow.protect, static_argnums=(4,))
recover_jit = jax.jit(flow.recover, static_argnums=(3,))
unprotect_jit = jax.jit(flow.unprotect, static_argnums=(4,))

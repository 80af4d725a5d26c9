"""One training step and one validation step, pure and jitted.

`train_step`: a fresh uniform ±1 key per sample and an independent wrong key per sample, the
shared forward (`proface_jax.protocol.forward`: ŷ = protect(x, y; K), ŷ rounded to 8 bits with
a straight-through gradient, x̌ = recover(ŷ; K), ẍ = recover(ŷ; K')), the losses of
`proface_jax.losses`, one optimiser update scaled by the state's `lr_scale` (and, with
config.adversary on, the keyless attacker's own update: `proface_jax.adversary`). `make_train_step`
binds the config, the mesh and the frozen LPIPS params.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import optax
from jax.sharding import Mesh

from proface_jax import adversary, keys, losses, protocol
from proface_jax.training.mesh import batch_sharding, is_multiprocess, replicate, replicated
from proface_jax.training.state import (TrainState, flow_config, learning_rate_schedule, loss_config, make_optimizer,
                                        step_config)


def forward(params, x, y, K, K_wrong, config, *, straight_through: bool = True) -> dict:
    """The shared forward with this run's flow config and storage of ŷ (8-bit if quantize_protected)."""
    store = ("straight_through" if straight_through else "round") if config.quantize_protected else "float"
    return protocol.forward(params, x, y, K, K_wrong, flow_config(config), store=store,
                            paired=bool(config.get("paired_recovery", False)))


def step_keys(rng, batch_size: int, height: int, width: int):
    """(K, K_wrong): independent fresh ±1 maps per sample."""
    k1, k2 = jax.random.split(rng)
    return keys.random_key(k1, batch_size, height, width), keys.random_key(k2, batch_size, height, width)


def loss_fn(params, batch, rng, lpips_params, config, attacker_params=None):
    """(total, (terms, stored ŷ)); with `attacker_params`, the total (terms["loss_adversarial"]; terms["loss"]
    stays the losses' own) adds adversary.weight × the keyless attacker's advantage from ŷ over y
    (`proface_jax.adversary.advantage`)."""
    x, y = batch["x"], batch["y"]
    b, h, w, _ = x.shape
    K, K_wrong = step_keys(rng, b, h, w)
    out = forward(params, x, y, K, K_wrong, config)
    total, terms = losses.total_loss(x, y, out["protected"], out["recovered"], out["wrong"], lpips_params,
                                     loss_config(config))
    if attacker_params is not None:
        adv = adversary.advantage(attacker_params, out["stored"], y, x, int(config.adversary.width))
        # "loss" stays the flow's own objective (logged, and what the explosion guard watches: the
        # attacker finding the leak makes this term jump, which is the game, not a blow-up)
        total = total + float(config.adversary.weight) * adv
        terms = dict(terms, loss_adversarial=total, adv_advantage=adv)
    return total, (terms, out["stored"])


def train_step(state: TrainState, batch, rng, lpips_params, config):
    """One update. Pure: (state, {'x', 'y'}, rng, frozen LPIPS params or None) -> (state, scalar metrics).
    With config.adversary on, the keyless attacker then takes its step(s) on this batch's ŷ."""
    tx = make_optimizer(config)
    grads_fn = jax.value_and_grad(loss_fn, has_aux=True)
    playing = adversary.enabled(config)
    (_, (terms, stored)), grads = grads_fn(state.params, batch, rng, lpips_params, config,
                                           state.adversary["params"] if playing else None)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree_util.tree_map(lambda u: u * state.lr_scale, updates)
    params = optax.apply_updates(state.params, updates)
    lr = learning_rate_schedule(config)(state.step) * state.lr_scale
    m = dict(terms, grad_norm=optax.tree.norm(grads), lr=lr)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    if playing:
        attacker, m["adv_l1"] = adversary.update(state.adversary, stored, batch["x"], config)
        new = new.replace(adversary=attacker)
    return new, m


def eval_step(params, batch, lpips_params, config):
    """Forward with the batch's keys and real 8-bit rounding: images and the loss terms."""
    x, y = batch["x"], batch["y"]
    out = forward(params, x, y, batch["K"], batch["K_wrong"], config, straight_through=False)
    _, terms = losses.total_loss(x, y, out["protected"], out["recovered"], out["wrong"], lpips_params,
                                 loss_config(config))
    return dict(out, **{f"loss/{k}": v for k, v in terms.items()})


@functools.lru_cache(maxsize=None)
def _jitted_steps(mesh: Mesh):
    rep, bat = replicated(mesh), batch_sharding(mesh)
    # config (the last positional argument) is static; in_shardings cover the others.
    train = jax.jit(train_step, static_argnums=(4,), in_shardings=(rep, bat, rep, rep), out_shardings=(rep, rep))
    # Across processes the eval outputs are gathered (replicated), so each process can read them whole.
    evaluate = jax.jit(eval_step, static_argnums=(3,), in_shardings=(rep, bat, rep),
                       **({"out_shardings": rep} if is_multiprocess(mesh) else {}))
    return train, evaluate


def make_train_step(config, mesh: Mesh, lpips_params=None) -> Callable:
    """`train_step(state, batch, rng) -> (state, metrics)`, jitted on `mesh`: batch sharded along
    its first axis, state and LPIPS params replicated. `lpips_params` is needed iff loss.use_lpips."""
    jitted = _jitted_steps(mesh)[0]
    cfg = step_config(config)
    lp = None if lpips_params is None else replicate(lpips_params, mesh)
    return lambda state, batch, rng: jitted(state, batch, rng, lp, cfg)


def make_eval_step(config, mesh: Mesh, lpips_params=None) -> Callable:
    """`eval_step(params, batch with K and K_wrong) -> outputs`, jitted on `mesh`."""
    jitted = _jitted_steps(mesh)[1]
    cfg = step_config(config)
    lp = None if lpips_params is None else replicate(lpips_params, mesh)
    return lambda params, batch: jitted(params, batch, lp, cfg)

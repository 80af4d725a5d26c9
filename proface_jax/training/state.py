"""The training state and what builds it: the optimiser, its learning-rate schedule, and the
frozen slice of the config a jitted step reads."""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from proface_jax import adversary, losses
from proface_jax.checkpoint import load_checkpoint
from proface_jax.flow import FlowConfig, init_params


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    lr_scale: jax.Array  # multiplies every update; lowered by the explosion guard
    adversary: Any = None  # {'params', 'opt_state'} of the keyless attacker (config.adversary), or None


# What a step reads from the config. Steps are jitted with this (frozen, hashable) part as a
# static argument, so runs in one process that differ elsewhere (paths, step counts, logging)
# share compiled steps.
STEP_KEYS = ("mode", "flow", "loss", "quantize_protected", "paired_recovery", "optim", "adversary")


def step_config(config) -> ml_collections.FrozenConfigDict:
    d = {k: config[k] for k in STEP_KEYS if k in config}  # configs saved before a key existed lack it
    if config.optim.schedule != "constant":
        d["num_train_steps"] = config.num_train_steps
    return ml_collections.FrozenConfigDict(d)


def flow_config(config) -> FlowConfig:
    return FlowConfig.from_any(config.flow)


def loss_config(config) -> losses.LossConfig:
    return losses.LossConfig.from_train_config(config)


def learning_rate_schedule(config) -> optax.Schedule:
    o = config.optim
    if o.schedule == "constant":
        return optax.constant_schedule(o.lr)
    if o.schedule == "warmup_cosine":
        total = max(int(config.num_train_steps), int(o.warmup_steps) + 1)
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=o.lr, warmup_steps=int(o.warmup_steps), decay_steps=total,
            end_value=o.lr * o.final_lr_ratio)
    raise ValueError(f"unknown optim.schedule {o.schedule!r}; use 'constant' or 'warmup_cosine'")


def make_optimizer(config) -> optax.GradientTransformation:
    """[global-norm clip] -> [L2 weight decay, PyTorch Adam style] -> Adam -> -lr(step)."""
    o = config.optim
    parts = []
    if o.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip))
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay))
    parts.append(optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps))
    parts.append(optax.scale_by_learning_rate(learning_rate_schedule(config)))
    return optax.chain(*parts)


def create_train_state(rng, config) -> TrainState:
    """Fresh params, or those of `config.init_from` (a .pfj of the same flow config) with a fresh optimiser;
    a fresh keyless attacker when config.adversary.weight > 0."""
    params = init_params(rng, flow_config(config))
    if config.get("init_from", ""):
        ck = load_checkpoint(config.init_from)
        if ck.config != flow_config(config):
            raise ValueError(f"init_from {config.init_from}: its flow config {ck.config} differs from this run's "
                             f"{flow_config(config)}")
        params = jax.tree_util.tree_map(jnp.asarray, ck.params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=make_optimizer(config).init(params),
                      lr_scale=jnp.ones((), jnp.float32),
                      adversary=adversary.init_state(config) if adversary.enabled(config) else None)

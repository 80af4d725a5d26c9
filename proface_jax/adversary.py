"""The keyless attacker: a network that reads x from the protected image ŷ without the password.

`AttackNet` (a small U-Net, Flax) is what the evaluation's keyless attacker trains after the fact
(`proface_jax.evaluation.keyless`). Training can also play against one while the flow learns
(`config.adversary.weight > 0`, issue 24's (b): no keyless attacker may get more from ŷ than
from y):

* the attacker takes `updates` Adam steps per training step on the batch's stored ŷ (gradient
  stopped), L1 to x — the evaluation attacker's objective, on fresh faces every step;
* the flow pays `weight · advantage`, where, per image,

      advantage = max(L1(A(y), x) − L1(A(ŷ), x), 0)        (A's params held fixed)

  is how much closer to x the attacker gets from ŷ than the same network gets from y, the
  obfuscated face anyone sees. Zero when the residual ŷ − y tells A nothing it can use; the
  hinge gives no reward for fooling A beyond that, so the flow is not pushed to make ŷ
  adversarial, only uninformative.

Pure functions of (attacker params, images); the attacker's params and Adam state live in the
training state (`TrainState.adversary`), so checkpoints and resumes carry them.
"""
from __future__ import annotations

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from proface_jax.losses import l1_per_image


class AttackNet(nn.Module):
    """A small U-Net (two down/up levels, skip connections, residual output): ŷ -> x estimate."""

    width: int = 32

    @nn.compact
    def __call__(self, x):
        c = self.width
        act = nn.leaky_relu
        conv = lambda f, s=1: nn.Conv(f, (3, 3), strides=(s, s), padding="SAME")
        e1 = act(conv(c)(act(conv(c)(x))))
        e2 = act(conv(2 * c)(act(conv(2 * c, 2)(e1))))
        e3 = act(conv(4 * c)(act(conv(4 * c, 2)(e2))))

        def up(a, like):
            return jax.image.resize(a, (a.shape[0], like.shape[1], like.shape[2], a.shape[3]), "nearest")

        d2 = act(conv(2 * c)(act(conv(2 * c)(jnp.concatenate([up(e3, e2), e2], -1)))))
        d1 = act(conv(c)(act(conv(c)(jnp.concatenate([up(d2, e1), e1], -1)))))
        return x + conv(3)(d1)


def init_params(width: int, input_shape, seed: int) -> dict:
    """He-normal kernels, zero biases, drawn with numpy from the shapes `init` would give.

    (Flax's own init compiles a PRNG program per parameter: ~20 s of XLA compile on a busy CPU.)
    The params do not depend on the image size (the net is fully convolutional).
    """
    shapes = jax.eval_shape(AttackNet(width).init, jax.random.key(0), jnp.zeros((1,) + tuple(input_shape), jnp.float32))
    g = np.random.default_rng([seed, 11])

    def draw(leaf):
        if len(leaf.shape) == 4:  # HWIO
            fan_in = leaf.shape[0] * leaf.shape[1] * leaf.shape[2]
            return jnp.asarray(g.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape), jnp.float32)
        return jnp.zeros(leaf.shape, jnp.float32)

    return jax.tree_util.tree_map(draw, shapes["params"])


def apply(params, images, width: int):
    return AttackNet(width).apply({"params": params}, images)


def advantage(params, stored, y, x, width: int):
    """Batch mean of max(L1(A(y), x) − L1(A(ŷ), x), 0), A's params held fixed; gradient reaches ŷ only."""
    params = jax.lax.stop_gradient(params)
    from_y = jax.lax.stop_gradient(l1_per_image(apply(params, y, width), x))
    from_stored = l1_per_image(apply(params, stored, width), x)
    return jnp.mean(jax.nn.relu(from_y - from_stored))


# --------------------------------------------------------------------------- in training


def enabled(config) -> bool:
    """Whether a training config plays against an attacker (configs from before it existed: no)."""
    a = config.get("adversary", None)
    return a is not None and float(a.weight) > 0


def optimizer(config) -> optax.GradientTransformation:
    return optax.adam(float(config.adversary.lr))


def init_state(config) -> dict:
    """{'params', 'opt_state'} of the attacker for this training config: fresh (seeded by config.seed),
    or the params of `adversary.init_from` (a file of `save_params`) with a fresh Adam state."""
    a = config.adversary
    if int(a.width) < 1 or int(a.updates) < 1 or float(a.lr) <= 0:
        raise ValueError(f"adversary: width and updates must be >= 1 and lr > 0, got {dict(a)}")
    params = init_params(int(a.width), (int(config.image_size), int(config.image_size), 3), int(config.seed) + 24)
    if a.get("init_from", ""):
        params = load_params(a.init_from, like=params)
    return {"params": params, "opt_state": optimizer(config).init(params)}


def save_params(path, params) -> None:
    """An attacker's params as msgpack (flax.serialization), written atomically."""
    import flax.serialization

    from proface_jax.images import atomic_write_bytes

    atomic_write_bytes(path, flax.serialization.msgpack_serialize(jax.device_get(params)))


def load_params(path, like: dict) -> dict:
    """Params saved by `save_params`, checked leaf by leaf against `like` (an AttackNet of the wanted
    width): a file of another width, a truncated or foreign file is refused by name."""
    import flax.serialization

    try:
        raw = flax.serialization.msgpack_restore(Path(path).read_bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"adversary.init_from: no such file {path}") from None
    except Exception as e:  # msgpack raises several kinds on corrupt input
        raise ValueError(f"adversary.init_from {path}: not an attacker params file ({type(e).__name__}: {e})") from None
    want = jax.tree_util.tree_flatten_with_path(like)[0]
    try:
        got = jax.tree_util.tree_flatten_with_path(raw)[0]
    except Exception:
        got = []
    want_shapes = {jax.tree_util.keystr(k): np.shape(v) for k, v in want}
    got_shapes = {jax.tree_util.keystr(k): np.shape(v) for k, v in got}
    if want_shapes != got_shapes:
        raise ValueError(f"adversary.init_from {path}: its params do not fit an attacker of width {like['Conv_0']['bias'].shape[0]}"
                         f" (leaves/shapes differ: {sorted(set(want_shapes.items()) ^ set(got_shapes.items()))[:4]})")
    return jax.tree_util.tree_map(lambda _, v: jnp.asarray(v, jnp.float32), like, raw)


def update(adv_state: dict, stored, x, config):
    """`config.adversary.updates` Adam steps of the attacker on (ŷ -> x), L1. -> (state, L1 before the last step)."""
    width, tx = int(config.adversary.width), optimizer(config)
    stored = jax.lax.stop_gradient(stored)

    def loss(p):
        return jnp.mean(l1_per_image(apply(p, stored, width), x))

    # A Python loop (unrolled), not lax.scan: XLA:CPU ran the convolutions' weight gradients
    # inside a scan body ~25× slower than the same steps unrolled (2 updates, b12 @64: 23.9 vs 0.94 s).
    params, opt_state = adv_state["params"], adv_state["opt_state"]
    for _ in range(int(config.adversary.updates)):
        value, g = jax.value_and_grad(loss)(params)
        upd, opt_state = tx.update(g, opt_state, params)
        params = optax.apply_updates(params, upd)
    return {"params": params, "opt_state": opt_state}, value

"""Re-identification attacks and a keyless attacker, for `experiments.evaluate`.

Matchers (closed-set identification): each probe i is compared with a gallery of N candidate
originals, of which gallery[i] is its own original; the attack succeeds at rank k when the
true original is among the k most similar. Chance is k / N. Ties count against the attacker
(rank = number of *other* gallery faces at least as similar as the true one), so a matcher
that sees nothing (all similarities equal) scores 0, never 1.

* `thumbnail_features`: the attack of spec §6. Clamp to [-1, 1], grayscale (ITU-R BT.601
  luma), 16×16 area-average thumbnail, mean removed, unit L2 norm. Similarity = |correlation|
  (absolute: a wrong recovery that shows the face in negative still counts as a match).
* `deep_features`: the LPIPS VGG16 trunk (ImageNet-trained, `proface_jax.lpips`): at each of
  the five taps the activations are unit-normalised along channels (as LPIPS does), averaged
  over positions, and L2-normalised; the five vectors are concatenated (each tap weighted
  equally) and L2-normalised again. Similarity = cosine.

Keyless attacker (`train_attacker`): someone who has the model and pairs (x, ŷ) but not the
password trains a small U-Net (`AttackNet`, Flax) to map the stored protected image ŷ to the
original x with an L1 loss and Adam (optax). Its test-set output is scored like a recovery.
"""
from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from proface_jax import losses
from proface_jax.lpips import distance as lpips_distance
from proface_jax.lpips import vgg

THUMB = 16
LUMA = (0.299, 0.587, 0.114)


# --------------------------------------------------------------------------- features


@functools.partial(jax.jit, static_argnames=("size",))
def thumbnail_features(images, size: int = THUMB):
    """NHWC [-1, 1] -> [B, size²] float32: mean-removed, unit-norm grayscale thumbnails."""
    x = jnp.clip(jnp.asarray(images, jnp.float32), -1.0, 1.0)
    g = jnp.tensordot(x, jnp.asarray(LUMA, jnp.float32), axes=([-1], [0]))
    t = losses.area_resize(g, size).reshape(x.shape[0], -1)
    t = t - t.mean(axis=1, keepdims=True)
    n = jnp.linalg.norm(t, axis=1, keepdims=True)
    return jnp.where(n > 0, t / jnp.maximum(n, 1e-12), 0.0)


def pool_taps(taps):
    """Unit-normalised LPIPS taps [B, h, w, C] (list) -> [B, 1472] deep features (see module doc)."""
    parts = []
    for f in taps:
        f = f.mean(axis=(1, 2))
        parts.append(f / (jnp.linalg.norm(f, axis=1, keepdims=True) + 1e-10))
    v = jnp.concatenate(parts, axis=1)
    return v / (jnp.linalg.norm(v, axis=1, keepdims=True) + 1e-10)


@jax.jit
def lpips_taps(lpips_params, images):
    """The LPIPS-VGG trunk's five taps, unit-normalised along channels, for clamped NHWC [-1, 1] input."""
    x = jnp.clip(jnp.asarray(images, jnp.float32), -1.0, 1.0)
    feats = vgg.features(jax.lax.stop_gradient(lpips_params["vgg"]), lpips_distance.scale_input(x))
    return [lpips_distance._unit_normalise(f) for f in feats]


@jax.jit
def deep_features(lpips_params, images):
    """NHWC [-1, 1] -> [B, 1472] float32: pooled, normalised LPIPS-VGG activations (see module doc)."""
    return pool_taps(lpips_taps(lpips_params, images))


def features_batched(fn: Callable, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """`fn` over fixed-size chunks (last one padded by repetition: one compiled shape)."""
    images = np.asarray(images)
    n = len(images)
    out = []
    for i in range(0, n, batch):
        chunk = images[i:i + batch]
        k = len(chunk)
        if k < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - k, axis=0)])
        out.append(np.asarray(fn(chunk))[:k])
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------- matching


def similarity(probe_feats, gallery_feats, absolute: bool = False) -> np.ndarray:
    """[P, D] × [G, D] -> [P, G] dot products (|·| if `absolute`)."""
    s = np.asarray(probe_feats, np.float64) @ np.asarray(gallery_feats, np.float64).T
    return np.abs(s) if absolute else s


def ranks(sim: np.ndarray, true_index) -> np.ndarray:
    """0-based rank of each probe's true gallery entry; ties count against the attacker."""
    sim = np.asarray(sim)
    true_index = np.asarray(true_index, np.int64)
    rows = np.arange(sim.shape[0])
    true_sim = sim[rows, true_index]
    at_least = (sim >= true_sim[:, None]).sum(axis=1) - 1  # minus the true entry itself
    return at_least


def identification(probe_feats, gallery_feats, true_index=None, absolute: bool = False,
                   ks=(1, 5)) -> dict:
    """Top-k identification rates (and chance) of probes against a gallery."""
    probe_feats, gallery_feats = np.asarray(probe_feats), np.asarray(gallery_feats)
    n_gallery = gallery_feats.shape[0]
    if true_index is None:
        true_index = np.arange(probe_feats.shape[0])
    r = ranks(similarity(probe_feats, gallery_feats, absolute), true_index)
    out = {"probes": int(len(r)), "gallery": int(n_gallery), "mean_rank": float(r.mean() + 1)}
    for k in ks:
        out[f"top{k}"] = float(np.mean(r < k))
        out[f"chance_top{k}"] = float(min(1.0, k / n_gallery))
    return out


MATCHERS = ("thumbnail", "deep")


def match(kind: str, probe_feats, gallery_feats, true_index=None) -> dict:
    if kind == "thumbnail":
        return identification(probe_feats, gallery_feats, true_index, absolute=True)
    if kind == "deep":
        return identification(probe_feats, gallery_feats, true_index, absolute=False)
    raise ValueError(f"unknown matcher {kind!r}; choose one of {MATCHERS}")


class Featurizer:
    """Both matchers' features for NHWC [-1, 1] batches; the deep one only with LPIPS weights."""

    def __init__(self, lpips_params=None, batch: int = 64):
        self.lpips_params = lpips_params
        self.batch = batch

    @property
    def kinds(self) -> tuple[str, ...]:
        return MATCHERS if self.lpips_params is not None else ("thumbnail",)

    def __call__(self, images) -> dict[str, np.ndarray]:
        images = np.asarray(images, np.float32)
        out = {"thumbnail": features_batched(thumbnail_features, images, self.batch)}
        if self.lpips_params is not None:
            out["deep"] = features_batched(lambda a: deep_features(self.lpips_params, a), images, self.batch)
        return out


# --------------------------------------------------------------------------- keyless attacker


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


class Attacker(NamedTuple):
    params: dict
    width: int
    losses: list  # (step, mean L1 over the last few steps)
    seconds: float

    def apply(self, images, batch: int = 32) -> np.ndarray:
        """The attacker's estimates of x, clamped to [-1, 1]."""
        fn = _apply_fn(self.width)
        return features_batched(lambda a: fn(self.params, a), np.asarray(images, np.float32), batch)


@functools.lru_cache(maxsize=None)
def _apply_fn(width: int):
    net = AttackNet(width)
    return jax.jit(lambda p, a: jnp.clip(net.apply({"params": p}, a), -1.0, 1.0))


def init_attacker(width: int, input_shape, seed: int) -> dict:
    """He-normal kernels, zero biases, drawn with numpy from the shapes `init` would give.

    (Flax's own init compiles a PRNG program per parameter: ~20 s of XLA compile on a busy CPU.)
    """
    shapes = jax.eval_shape(AttackNet(width).init, jax.random.key(0), jnp.zeros((1,) + tuple(input_shape), jnp.float32))
    g = np.random.default_rng([seed, 11])

    def draw(leaf):
        if len(leaf.shape) == 4:  # HWIO
            fan_in = leaf.shape[0] * leaf.shape[1] * leaf.shape[2]
            return jnp.asarray(g.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape), jnp.float32)
        return jnp.zeros(leaf.shape, jnp.float32)

    return jax.tree_util.tree_map(draw, shapes["params"])


@functools.lru_cache(maxsize=None)
def _train_step_fn(width: int, lr: float):
    net = AttackNet(width)
    tx = optax.adam(lr)

    def loss_fn(p, a, b):
        return jnp.mean(jnp.abs(net.apply({"params": p}, a) - b))

    @jax.jit
    def step(p, opt, a, b):
        loss, g = jax.value_and_grad(loss_fn)(p, a, b)
        upd, opt = tx.update(g, opt, p)
        return optax.apply_updates(p, upd), opt, loss

    return net, tx, step


def train_attacker(inputs: np.ndarray, targets: np.ndarray, steps: int, batch: int = 16, lr: float = 1e-3,
                   width: int = 32, seed: int = 0, log_every: int = 50) -> Attacker:
    """Fits AttackNet on pairs (inputs -> targets), NHWC [-1, 1], by Adam on the L1 loss."""
    inputs, targets = np.asarray(inputs, np.float32), np.asarray(targets, np.float32)
    if inputs.shape != targets.shape or inputs.ndim != 4:
        raise ValueError(f"attacker pairs must be two NHWC batches of one shape, got {inputs.shape}, {targets.shape}")
    n = len(inputs)
    batch = min(batch, n)
    net, tx, step = _train_step_fn(width, float(lr))
    params = init_attacker(width, inputs.shape[1:], seed)
    opt = jax.jit(tx.init)(params)
    order = np.random.default_rng([seed, 7])
    t0 = time.perf_counter()
    hist, recent = [], []
    perm, pos = order.permutation(n), 0
    for s in range(int(steps)):
        if pos + batch > n:
            perm, pos = order.permutation(n), 0
        idx = perm[pos:pos + batch]
        pos += batch
        params, opt, loss = step(params, opt, inputs[idx], targets[idx])
        recent.append(loss)
        if (s + 1) % log_every == 0 or s + 1 == steps:
            hist.append((s + 1, float(np.mean(jax.device_get(recent)))))
            recent = []
    jax.block_until_ready(params)
    return Attacker(params, width, hist, time.perf_counter() - t0)

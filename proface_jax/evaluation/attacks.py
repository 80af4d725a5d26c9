"""Re-identification attacks (evaluation section 3 and the probes of the other sections).

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
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

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

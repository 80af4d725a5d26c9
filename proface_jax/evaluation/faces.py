"""What every section is fed: the faces, their pre-obfuscations, the seeded keys, the labels."""
from __future__ import annotations

import collections
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from proface_jax import input_pipeline, keys, obfuscators
from proface_jax.evaluation.scoring import chunks, pad_to


def load_faces(spec: str, split: str, n: int, seed: int, size: int):
    """(uint8 [m, size, size, 3], names) for a fixed-seed sample of n faces of `split` (all if fewer)."""
    src = input_pipeline.open_source(spec, split)
    idx = input_pipeline.test_sample(src, n, seed)
    cached = input_pipeline.cache_in_memory(input_pipeline.Subset(src, idx), size, num_workers=2)
    return cached.images, cached.names


def obfuscate(obf, name: str, preset: str, rng, x: np.ndarray, names: list[str], batch: int) -> np.ndarray:
    """Pre-obfuscated faces (float32 [-1, 1]); numpy obfuscators see the whole set at once so that
    their per-image draws (sticker, donor) do not depend on the batch size."""
    if obf.jittable:
        fn = obfuscators.jitted(name, preset, "eval")
        out = np.empty_like(x)
        for s, e in chunks(len(x), batch):
            out[s:e] = np.asarray(fn(rng, jnp.asarray(pad_to(x[s:e], batch))))[: e - s]
        return out
    return np.asarray(obf(rng, x, names=[Path(n).name for n in names]), np.float32)


def build_obfuscators(names: list[str], preset: str, donors, template_dir) -> dict:
    out = {}
    for name in names:
        opts = {}
        if name == "swap":
            if donors is None or len(donors) == 0:
                print("[evaluate] swap skipped: no donor faces", flush=True)
                continue
            opts["donors"] = donors
        if name == "template":
            if not template_dir:
                continue
            opts["folder"] = template_dir
        out[name] = obfuscators.make(name, preset=preset, mode="eval", **opts)
    return out


def random_maps(seed: int, tag: int, n: int, size: int) -> np.ndarray:
    """n seeded uniform ±1 maps [n, size, size] (int8)."""
    g = np.random.default_rng([int(seed), 17, int(tag)])
    return (g.integers(0, 2, (n, size, size), dtype=np.int8) * 2 - 1).astype(np.int8)


def key_of(maps: np.ndarray) -> jnp.ndarray:
    return keys.key_from_map(np.asarray(maps, np.float32))


def unique_labels(paths: list[str], modes: list[str]) -> list[str]:
    """Shortest path suffixes (file name first) that tell distinct files apart, with the mode:
    'randwr_s1/best.pfj (randwr)'. The same file twice gets '#2'."""
    parts = []
    for p in paths:
        r = Path(p).resolve()
        parts.append(r.relative_to(r.anchor).parts or (str(p),))
    distinct = len(set(parts))
    depth = 1
    while depth < max(len(pp) for pp in parts) and len({pp[-depth:] for pp in parts}) < distinct:
        depth += 1
    out, seen = [], collections.Counter()
    for pp, m in zip(parts, modes):
        label = f"{'/'.join(pp[-depth:])} ({m})"
        seen[label] += 1
        out.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return out

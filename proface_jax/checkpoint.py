"""Single-file inference checkpoints: params + config + mode, versioned and hashed.

Layout: MAGIC (8 bytes) | header length (uint32, big-endian) | header JSON |
payload (flax msgpack of the params). The header carries the format version,
the flow config, the wrong-recovery mode, the payload's length and SHA-256,
and free-form metadata (a model card's numbers). Loading checks each of them,
and the params' shapes against the config, so a corrupt, truncated or
mismatched file fails with a message that says which.

Training state (optimizer, step) lives in orbax checkpoints; this file is what
ships and what `protect`/`recover` need. The model id recorded in protected
PNGs is the first 16 hex digits of the payload hash.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np
from flax import serialization

from proface_jax.flow import FlowConfig, init_params
from proface_jax.images import atomic_write_bytes

MAGIC = b"PFJCKPT\x01"
FORMAT = "proface-jax-checkpoint"
VERSION = 1
MODES = ("randwr", "obfswr")
WEIGHTS_DIR = Path(__file__).parent / "weights"
SUFFIX = ".pfj"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, not ours, corrupt, truncated or mismatched."""


class Checkpoint(NamedTuple):
    params: dict
    config: FlowConfig
    mode: str
    model_id: str
    meta: dict
    path: str


def model_id_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike, params, config: FlowConfig | Mapping | None = None,
                    mode: str = "randwr", meta: Mapping[str, Any] | None = None) -> str:
    """Writes params atomically; returns the model id."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    cfg = FlowConfig.from_any(config)
    host = jax.tree_util.tree_map(lambda a: np.asarray(a, dtype=np.float32), params)
    _check_shapes(host, cfg, str(path))
    payload = serialization.msgpack_serialize(host)
    header = {
        "format": FORMAT, "version": VERSION, "config": cfg.to_dict(), "mode": mode,
        "payload_bytes": len(payload), "payload_sha256": hashlib.sha256(payload).hexdigest(),
        "meta": dict(meta or {}),
    }
    hbytes = json.dumps(header, sort_keys=True).encode("utf-8")
    atomic_write_bytes(path, MAGIC + struct.pack(">I", len(hbytes)) + hbytes + payload)
    return model_id_of(payload)


def untrained_checkpoint(mode: str = "randwr", seed: int = 0, config: FlowConfig | Mapping | None = None) -> Checkpoint:
    """Freshly initialised params (each block the identity): for demos and tests before training."""
    cfg = FlowConfig.from_any(config)
    params = jax.tree_util.tree_map(np.asarray, init_params(jax.random.key(seed), cfg))
    payload = serialization.msgpack_serialize(params)
    return Checkpoint(params, cfg, mode, model_id_of(payload), {"untrained": True, "seed": seed}, "<untrained>")


def shipped_names() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob(f"*{SUFFIX}"))


def resolve(path_or_name: str | os.PathLike) -> Path:
    """A path, or the name of a checkpoint shipped in the package ('randwr', 'obfswr')."""
    p = Path(path_or_name)
    if p.exists() or p.suffix or os.sep in str(path_or_name):
        return p
    shipped = WEIGHTS_DIR / f"{path_or_name}{SUFFIX}"
    if not shipped.exists():
        have = ", ".join(shipped_names()) or "none"
        raise CheckpointError(
            f"no shipped model named {str(path_or_name)!r} in this install (shipped: {have}); "
            f"pass a checkpoint path, or train one: python -m experiments.train --mode={path_or_name}")
    return shipped


def load_checkpoint(path_or_name: str | os.PathLike) -> Checkpoint:
    path = resolve(path_or_name)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; pass the .pfj file (orbax training dirs: "
                              "a run writes best.pfj and model.pfj in its workdir; to export one stopped early, "
                              "rerun it with --config.num_train_steps=<its last step>)")
    data = path.read_bytes()
    if len(data) < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path}: not a proface-jax checkpoint (bad magic bytes)")
    (hlen,) = struct.unpack(">I", data[len(MAGIC): len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if len(data) < start + hlen:
        raise CheckpointError(f"{path}: truncated checkpoint (header cut off)")
    try:
        header = json.loads(data[start: start + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint header ({e})") from None
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a proface-jax checkpoint (format {header.get('format')!r})")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {header.get('version')} is not supported "
                              f"(this proface-jax reads version {VERSION})")
    payload = data[start + hlen:]
    if len(payload) != header["payload_bytes"]:
        kind = "truncated" if len(payload) < header["payload_bytes"] else "corrupt (trailing bytes)"
        raise CheckpointError(f"{path}: {kind} checkpoint: payload is {len(payload)} bytes, "
                              f"header says {header['payload_bytes']}")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise CheckpointError(f"{path}: corrupt checkpoint (payload SHA-256 mismatch)")
    try:
        cfg = FlowConfig.from_any(header["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid config in checkpoint: {e}") from None
    if header.get("mode") not in MODES:
        raise CheckpointError(f"{path}: unknown mode {header.get('mode')!r}")
    params = serialization.msgpack_restore(payload)
    _check_shapes(params, cfg, str(path))
    params = jax.tree_util.tree_map(np.asarray, params)
    return Checkpoint(params, cfg, header["mode"], model_id_of(payload), header.get("meta", {}), str(path))


def _check_shapes(params, cfg: FlowConfig, where: str) -> None:
    """Compares the params' tree and shapes with what `cfg` implies (without allocating)."""
    want = jax.eval_shape(lambda: init_params(jax.random.key(0), cfg))
    want_flat = {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_leaves_with_path(want)}
    try:
        got_flat = {jax.tree_util.keystr(k): np.shape(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}
    except Exception as e:  # noqa: BLE001 - anything unreadable is a mismatch
        raise CheckpointError(f"{where}: params are not a tree of arrays ({e})") from None
    missing = sorted(set(want_flat) - set(got_flat))
    extra = sorted(set(got_flat) - set(want_flat))
    if missing or extra:
        raise CheckpointError(f"{where}: params do not match config (num_blocks={cfg.num_blocks}): "
                              f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                              f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''}")
    for k, shape in want_flat.items():
        if tuple(got_flat[k]) != tuple(shape):
            raise CheckpointError(f"{where}: param {k} has shape {tuple(got_flat[k])}, config expects {tuple(shape)}")

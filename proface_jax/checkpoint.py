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
import math
import os
import stat
import struct
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np
from flax import serialization

from proface_jax.flow import CHOICES as FLOW_CHOICES
from proface_jax.flow import FlowConfig, init_params
from proface_jax.errors import ProfaceError, one_line
from proface_jax.images import atomic_write_bytes

MAGIC = b"PFJCKPT\x01"
FORMAT = "proface-jax-checkpoint"
# Version 2: a flow variant (a variant axis of FlowConfig off the paper's value). The paper's
# network is still written as version 1 (same payload, same model id as before variants); files by
# older writers stay readable; an older reader refuses a variant's file instead of running it
# as the paper (a noise stand-in or a permutation has no params to mismatch).
VERSION = 2
VERSIONS = (1, 2)
MODES = ("randwr", "obfswr")
WEIGHTS_DIR = Path(__file__).parent / "weights"
SUFFIX = ".pfj"


MAX_HEADER_BYTES = 1 << 20
MAX_CHECKPOINT_BYTES = 1 << 31  # 2 GiB: N = 3 is 4.3 MB; a larger file is not one of ours
MAX_BLOCKS = 64


class CheckpointError(ProfaceError):
    """A checkpoint that cannot be used: missing, not ours, corrupt, truncated or mismatched."""


class Checkpoint(NamedTuple):
    params: dict
    config: FlowConfig
    mode: str
    model_id: str
    meta: dict
    path: str


def _is_variant(cfg: FlowConfig) -> bool:
    return any(getattr(cfg, name) != getattr(FlowConfig(), name) for name in FLOW_CHOICES)


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
        "format": FORMAT, "version": VERSION if _is_variant(cfg) else 1, "config": cfg.to_dict(), "mode": mode,
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


def load_shipped(name: str) -> Checkpoint:
    """A model shipped in the package, by name only: never a path (names may come from a file)."""
    if name not in shipped_names():
        have = ", ".join(shipped_names()) or "none"
        raise CheckpointError(f"no shipped model named {one_line(name, 40)!r} in this install (shipped: {have}); "
                              f"pass --checkpoint PATH, or train one: python -m experiments.train --mode={name}")
    return load_checkpoint(WEIGHTS_DIR / f"{name}{SUFFIX}")


def _read_file(path: Path) -> bytes:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{path}: is a directory; pass the .pfj file (orbax training dirs: "
                              "a run writes best.pfj and model.pfj in its workdir; to export one stopped early, "
                              "rerun it with --config.num_train_steps=<its last step>)")
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointError(f"{path}: not a regular file")
    if st.st_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: {st.st_size:,} bytes is too large for a proface-jax checkpoint")
    try:
        return path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e.strerror})") from None


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_header(header, path: Path) -> None:
    """Types and ranges of every header field before any is used."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt checkpoint header (not a JSON object)")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a proface-jax checkpoint (format {one_line(header.get('format'), 40)!r})")
    if not _is_int(header.get("version")) or header.get("version") not in VERSIONS:
        raise CheckpointError(f"{path}: checkpoint version {one_line(header.get('version'), 20)} is not supported "
                              f"(this proface-jax reads versions {VERSIONS})")
    missing = [k for k in ("config", "mode", "payload_bytes", "payload_sha256") if k not in header]
    if missing:
        raise CheckpointError(f"{path}: corrupt checkpoint header: missing {missing}")
    if not _is_int(header["payload_bytes"]) or header["payload_bytes"] < 0:
        raise CheckpointError(f"{path}: corrupt checkpoint header: payload_bytes must be a non-negative integer")
    sha = header["payload_sha256"]
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise CheckpointError(f"{path}: corrupt checkpoint header: payload_sha256 must be 64 lowercase hex digits")
    if header["mode"] not in MODES:
        raise CheckpointError(f"{path}: unknown mode {one_line(header['mode'], 40)!r} (one of {MODES})")
    if not isinstance(header.get("meta", {}), dict):
        raise CheckpointError(f"{path}: corrupt checkpoint header: meta must be an object")
    cfg = header["config"]
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: invalid config in checkpoint: not an object")
    if "num_blocks" in cfg and not (_is_int(cfg["num_blocks"]) and 1 <= cfg["num_blocks"] <= MAX_BLOCKS):
        raise CheckpointError(f"{path}: invalid config in checkpoint: num_blocks must be an integer in 1..{MAX_BLOCKS}")
    for name in ("clamp", "init_scale"):
        if name in cfg and not (_is_number(cfg[name]) and 0 < cfg[name] <= 100):
            raise CheckpointError(f"{path}: invalid config in checkpoint: {name} must be a finite number in (0, 100]")
    if "precision" in cfg and not isinstance(cfg["precision"], str):
        raise CheckpointError(f"{path}: invalid config in checkpoint: precision must be a string")
    if "reversible_backprop" in cfg and not isinstance(cfg["reversible_backprop"], bool):
        raise CheckpointError(f"{path}: invalid config in checkpoint: reversible_backprop must be true or false")
    # the variant axes (issue 21): enums; a header without them (files before variants) is the paper's
    for name, allowed in FLOW_CHOICES.items():
        if name in cfg and cfg[name] not in allowed:
            raise CheckpointError(f"{path}: invalid config in checkpoint: {name} must be one of {allowed}, "
                                  f"got {one_line(cfg[name], 40)!r}")


def load_checkpoint(path_or_name: str | os.PathLike) -> Checkpoint:
    """A checkpoint by path or shipped name; every field, shape and weight is checked."""
    path = resolve(path_or_name)
    data = _read_file(path)
    if len(data) < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
        raise CheckpointError(f"{path}: not a proface-jax checkpoint (bad magic bytes)")
    (hlen,) = struct.unpack(">I", data[len(MAGIC): len(MAGIC) + 4])
    start = len(MAGIC) + 4
    if hlen > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: corrupt checkpoint (header length {hlen:,} bytes)")
    if len(data) < start + hlen:
        raise CheckpointError(f"{path}: truncated checkpoint (header cut off)")
    try:
        header = json.loads(data[start: start + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: corrupt checkpoint header ({one_line(e, 120)})") from None
    _check_header(header, path)
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
        raise CheckpointError(f"{path}: invalid config in checkpoint: {one_line(e, 120)}") from None
    try:
        params = serialization.msgpack_restore(payload)
    except Exception as e:  # noqa: BLE001 - msgpack on bytes we did not write: any failure is corruption
        raise CheckpointError(f"{path}: corrupt checkpoint payload ({type(e).__name__})") from None
    _check_shapes(params, cfg, str(path))
    params = jax.tree_util.tree_map(np.asarray, params)
    bad = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(params)
           if v.dtype.kind != "f" or not np.all(np.isfinite(v))]
    if bad:
        raise CheckpointError(f"{path}: checkpoint weights are not finite floats (NaN/inf or wrong dtype) in "
                              f"{bad[:2]}{'…' if len(bad) > 2 else ''}; the run that wrote it diverged")
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
        raise CheckpointError(f"{where}: params do not match config (num_blocks={cfg.num_blocks}, "
                              f"coupling={cfg.coupling}, conditioner={cfg.conditioner}, "
                              f"key_injection={cfg.key_injection}, mixing={cfg.mixing}): "
                              f"missing {missing[:3]}{'…' if len(missing) > 3 else ''}, "
                              f"unexpected {extra[:3]}{'…' if len(extra) > 3 else ''}")
    for k, shape in want_flat.items():
        if tuple(got_flat[k]) != tuple(shape):
            raise CheckpointError(f"{where}: param {k} has shape {tuple(got_flat[k])}, config expects {tuple(shape)}")

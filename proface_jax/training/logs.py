"""What a run writes besides checkpoints: metrics.jsonl records, config.json, sample grids."""
from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np

from proface_jax import images


class JsonlWriter:
    """Appends JSON records to `path`; `enabled=False` (the processes other than 0) writes nothing."""

    def __init__(self, path: Path, truncate_after: int | None = None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if enabled and truncate_after is not None and path.exists():
            # Resuming: drop records of steps after the restored checkpoint (they will be redone).
            kept = [ln for ln in path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= truncate_after]
            path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=json_default) + "\n")


def json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def host_scalars(tree) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def config_json(config) -> dict:
    return json.loads(config.to_json())


def save_grid(path: Path, rows) -> None:
    images.save_png(path, images.grid([[images.from_unit(im) for im in row] for row in rows]))

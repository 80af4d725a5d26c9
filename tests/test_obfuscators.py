"""Pre-obfuscators (spec §7): interface, strengths, determinism, privacy on real faces, bad input."""
from __future__ import annotations

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from proface_jax import images, obfuscators as O
from proface_jax.obfuscators import geometry
from proface_jax.obfuscators.filters import median_filter
from proface_jax.obfuscators.stickers import generate_sticker, prepare_sticker

cv2 = pytest.importorskip("cv2")

ALL = ["blur", "pixelate", "median", "mask", "swap", "template"]
JAX_ONES = ["blur", "pixelate", "median"]


# ---------------------------------------------------------------- helpers / fixtures
@pytest.fixture(scope="module")
def faces112(utkface_faces):
    return utkface_faces(24, 112)[:8]  # protected faces: files 0..7


@pytest.fixture(scope="module")
def donors112(utkface_faces):
    return utkface_faces(24, 112)[8:24]  # donor pool: files 8..23, apart from the protected ones


def psnr(a_u8, b_u8) -> np.ndarray:
    mse = ((a_u8.astype(np.float64) - b_u8) ** 2).reshape(len(a_u8), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))


def build(name, tmp_path_factory=None, donors=None, preset="paper112", mode="eval", faces=None, names=None):
    """make(name) with what each one needs; for template, a folder of precomputed outputs."""
    opts = {}
    if name == "swap":
        opts["donors"] = donors
    if name == "template":
        folder = tmp_path_factory.mktemp("template")
        swap = O.make("swap", donors=donors)
        outs = images.from_unit(swap(jax.random.key(99), images.to_unit(faces)))
        for n, im in zip(names, outs):
            images.save_png(folder / f"{n}.png", im)
        opts["folder"] = folder
    return O.make(name, preset=preset, mode=mode, **opts)


_JITTED: dict = {}


def run(obf, key, x, names=None):
    if obf.jittable:
        # One jit per obfuscator object: a fresh jax.jit(bound method) would recompile every call.
        _, fn = _JITTED.setdefault(id(obf), (obf, jax.jit(obf.__call__)))
        return np.asarray(fn(key, jnp.asarray(x)))
    return obf(key, x, names=names)


# ---------------------------------------------------------------- registry
def test_registry_names_and_flags():
    assert O.names() == ALL
    for name in JAX_ONES:
        assert O.make(name).jittable is True
    assert O.make("mask").jittable is False


@pytest.mark.parametrize("kwargs, words", [
    (dict(name="sharpen"), "unknown obfuscator"),
    (dict(name="blur", preset="paper224"), "unknown preset"),
    (dict(name="blur", mode="test"), "unknown mode"),
    (dict(name="blur", strength=3), "unknown option"),
])
def test_make_rejects_bad_arguments(kwargs, words):
    with pytest.raises(ValueError, match=words):
        O.make(**kwargs)


# ---------------------------------------------------------------- shapes, both modes, both sizes
@pytest.mark.parametrize("size, batch", [(112, 3), (256, 2)])
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("name", ALL)
def test_shape_dtype_range(name, mode, size, batch, utkface_faces, tmp_path_factory):
    faces = utkface_faces(batch, size)
    donors = utkface_faces(batch + 4, size)[batch:]
    names = [f"img{i}.jpg" for i in range(batch)]
    preset = "paper112" if size == 112 else "authors256"
    obf = build(name, tmp_path_factory, donors, preset, mode, faces, names)
    x = images.to_unit(faces)
    y = run(obf, jax.random.key(1), jnp.asarray(x) if not obf.jittable else x, names)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.all(y >= -1.0) and np.all(y <= 1.0)
    assert not np.allclose(y, x, atol=0.05)


# ---------------------------------------------------------------- determinism under a seed
@pytest.mark.parametrize("name", ALL)
def test_same_key_same_output_and_train_varies(name, faces112, donors112, tmp_path_factory):
    names = [f"f{i}.jpg" for i in range(2)]
    x = images.to_unit(faces112[:2])
    obf = build(name, tmp_path_factory, donors112, mode="train", faces=faces112[:2], names=names)
    a = run(obf, jax.random.key(7), x, names)
    b = run(obf, jax.random.key(7), x, names)
    np.testing.assert_array_equal(a, b)
    if name != "template":  # template has nothing random
        outs = [run(obf, jax.random.key(k), x, names) for k in (8, 9, 10)]
        assert any(not np.array_equal(a, o) for o in outs), "train mode ignores the key"


def test_typed_and_raw_keys_both_work(faces112):
    obf = O.make("mask", mode="train")
    x = images.to_unit(faces112[:2])
    a = obf(jax.random.PRNGKey(3), x)
    b = obf(jax.random.key(3), x)
    np.testing.assert_array_equal(a, b)  # same key words -> same numpy seed


# ---------------------------------------------------------------- strengths
SPEC = {  # (preset, name): (eval value at the reference size, train support at the reference size)
    ("paper112", "blur"): (8.0, (6.0, 10.0)),
    ("authors256", "blur"): (15.0, (9.0, 21.0)),
    ("paper112", "pixelate"): (9, tuple(range(5, 14))),
    ("authors256", "pixelate"): (20, tuple(range(14, 27, 2))),
    ("paper112", "median"): (15, tuple(range(8, 23))),
    ("authors256", "median"): (23, tuple(range(17, 30, 2))),
}


@pytest.mark.parametrize("preset, name", list(SPEC))
def test_strengths_match_spec_at_reference_size(preset, name):
    ref = O.PRESETS[preset].reference_size
    eval_value, support = SPEC[(preset, name)]
    ev = O.make(name, preset=preset, mode="eval")
    assert np.all(np.asarray(ev.draw(jax.random.key(0), 4, ref, ref)) == eval_value)
    tr = O.make(name, preset=preset, mode="train", per_sample=True)
    draws = np.asarray(tr.draw(jax.random.key(0), 3000, ref, ref))
    if name == "blur":
        assert tr.kernel_size(ref, ref) == (21 if preset == "paper112" else 61)
        lo, hi = support
        assert draws.min() >= lo and draws.max() <= hi
        assert draws.min() < lo + 0.1 and draws.max() > hi - 0.1  # fills the range
    else:
        assert set(draws.tolist()) == set(support)  # every value drawn, nothing else


@pytest.mark.parametrize("preset", ["paper112", "authors256"])
@pytest.mark.parametrize("size", [112, 256, 64])
def test_strengths_scale_with_resolution(preset, size):
    s = size / O.PRESETS[preset].reference_size
    blur = O.make("blur", preset=preset)
    assert blur.eval_strength(size, size) == pytest.approx(SPEC[(preset, "blur")][0] * s)
    assert blur.kernel_size(size, size) % 2 == 1
    pix = O.make("pixelate", preset=preset, mode="train")
    assert max(pix.train_support(size, size)) == round(max(SPEC[(preset, "pixelate")][1]) * s + 1e-9)
    med = O.make("median", preset=preset, mode="train")
    support = med.train_support(size, size)
    assert abs(np.mean(support) - np.mean(SPEC[(preset, "median")][1]) * s) <= 1.0
    if preset == "authors256":
        assert all(k % 2 == 1 for k in support)  # the authors' code only uses odd kernels


@pytest.mark.parametrize("name", JAX_ONES)
def test_train_strength_is_per_batch_unless_asked(name):
    per_batch = np.asarray(O.make(name, mode="train").draw(jax.random.key(5), 16, 112, 112))
    assert np.all(per_batch == per_batch[0])
    per_image = np.asarray(O.make(name, mode="train", per_sample=True).draw(jax.random.key(5), 16, 112, 112))
    assert len(set(per_image.tolist())) > 1


def test_stronger_filters_remove_more_detail(faces112):
    """Monotone in strength: a sanity check that the strength actually drives the filter."""
    x = jnp.asarray(images.to_unit(faces112[:2]))
    for name, weak, strong in [("blur", 2.0, 10.0), ("pixelate", 3, 13), ("median", 3, 21)]:
        apply = jax.jit(O.make(name).apply)  # one compile: the strength is traced
        dt = jnp.float32 if name == "blur" else jnp.int32
        p_weak = psnr(faces112[:2], images.from_unit(np.asarray(apply(x, jnp.full(2, weak, dt)))))
        p_strong = psnr(faces112[:2], images.from_unit(np.asarray(apply(x, jnp.full(2, strong, dt)))))
        assert np.all(p_strong < p_weak - 2), name


# ---------------------------------------------------------------- filters vs references
def _ref_median(img, k):
    h, w, c = img.shape
    out = np.empty_like(img)
    for i in range(h):
        for j in range(w):
            win = img[max(0, i - k // 2):min(h, i - k // 2 + k), max(0, j - k // 2):min(w, j - k // 2 + k)]
            out[i, j] = np.median(win.reshape(-1, c), axis=0)  # numpy: mean of the two middles if even
    return out


@settings(max_examples=20, deadline=None)
@given(k1=st.integers(1, 12), k2=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_median_matches_numpy_median_any_kernel(k1, k2, seed):
    x = np.random.default_rng(seed).integers(0, 256, (2, 9, 10, 3)).astype(np.float32) / 127.5 - 1.0
    y = np.asarray(_median_jit(jnp.asarray(x), jnp.array([k1, k2])))
    for im, out, k in zip(x, y, (k1, k2)):
        np.testing.assert_allclose(out, _ref_median(im, k), atol=1e-6)


_median_jit = jax.jit(median_filter)


def test_median_even_kernel_on_a_real_face(faces112):
    small = np.stack([images.resize(f, (24, 24)) for f in faces112[:3]])
    x = images.to_unit(small)
    kernels = (8, 15, 22)  # the paper's train range is 8..22: both ends, even
    y = np.asarray(_median_jit(jnp.asarray(x), jnp.array(kernels)))
    for im, out, k in zip(x, y, kernels):
        np.testing.assert_allclose(out, _ref_median(im, k), atol=1e-6)


def test_median_odd_kernel_matches_opencv_inside(faces112):
    """At the real size and eval kernel: OpenCV's medianBlur (odd kernels only; it replicates
    borders, so only pixels whose whole window is inside the image are compared)."""
    x = images.to_unit(faces112[:2])
    y = images.from_unit(np.asarray(_median_jit(jnp.asarray(x), jnp.array([15, 15]))))
    r = 15 // 2
    for im, out in zip(faces112[:2], y):
        ref = cv2.medianBlur(im, 15)
        np.testing.assert_array_equal(out[r:-r, r:-r], ref[r:-r, r:-r])


def test_blur_matches_opencv_with_reflected_borders(faces112):
    x = images.to_unit(faces112[:2])
    y = np.asarray(O.make("blur").apply(jnp.asarray(x), jnp.array([8.0, 6.0])))
    for im, out, sigma in zip(x, y, (8.0, 6.0)):
        ref = cv2.GaussianBlur(im, (21, 21), sigma, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(out, ref, atol=1e-5)


def test_pixelate_is_block_mean(faces112):
    x = images.to_unit(faces112[:2])
    y = np.asarray(O.make("pixelate").apply(jnp.asarray(x), jnp.array([9, 13])))
    for im, out, b in zip(x, y, (9, 13)):
        ref = im.copy()
        for i in range(0, 112, b):
            for j in range(0, 112, b):
                ref[i:i + b, j:j + b] = im[i:i + b, j:j + b].mean((0, 1))
        np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("name", JAX_ONES)
def test_jit_equals_eager(name, faces112):
    obf = O.make(name, mode="train", per_sample=True)
    x = jnp.asarray(images.to_unit(faces112[:2]))
    np.testing.assert_allclose(np.asarray(jax.jit(obf.__call__)(jax.random.key(4), x)),
                               np.asarray(obf(jax.random.key(4), x)), atol=1e-5)


# ---------------------------------------------------------------- privacy on real faces
@pytest.mark.parametrize("name", ALL)
def test_eval_setting_is_far_from_the_original(name, faces112, donors112, tmp_path_factory):
    names = [f"face{i}.jpg" for i in range(len(faces112))]
    obf = build(name, tmp_path_factory, donors112, faces=faces112, names=names)
    y = images.from_unit(run(obf, jax.random.key(0), images.to_unit(faces112), names))
    p = psnr(faces112, y)
    assert np.all(p < 30.0), f"{name}: PSNR {p.round(1)} dB"
    ssim = np.mean([_ssim(a, b) for a, b in zip(faces112, y)])
    assert ssim < 0.9, f"{name}: SSIM {ssim:.3f}"


def _ssim(a, b):
    from skimage.metrics import structural_similarity

    return structural_similarity(a, b, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False)


def test_swap_differs_from_target_and_donor_and_carries_donor_detail(faces112, donors112):
    obf = O.make("swap", donors=donors112)
    key = jax.random.key(2)
    y = images.from_unit(obf(key, images.to_unit(faces112)))
    donors = np.stack([donors112[i] for i, _ in obf.draw(key, len(faces112))])
    assert np.all(psnr(faces112, y) < 30) and np.all(psnr(donors, y) < 30)
    # Inside the face mask the fine structure (Laplacian) comes from the donor, not the target.
    inside = geometry.face_ellipse_mask(112, 112, 0.9) > 0.5
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F)[inside]
    corr = lambda a, b: np.corrcoef(lap(a), lap(b))[0, 1]
    to_donor = np.array([corr(o, d) for o, d in zip(y, donors)])
    to_target = np.array([corr(o, t) for o, t in zip(y, faces112)])
    assert np.all(to_donor > to_target), (to_donor.round(2), to_target.round(2))
    # Outside it, the target is kept (the background is not the donor's).
    outside = geometry.face_ellipse_mask(112, 112, 1.25) < 0.5
    assert np.abs(y.astype(int) - faces112)[:, outside].mean() < 3


def test_swap_skips_a_donor_that_is_the_target(faces112):
    obf = O.make("swap", donors=np.concatenate([faces112[:1], faces112[1:2]]))
    y = images.from_unit(obf(jax.random.key(0), images.to_unit(faces112[:1])))
    assert psnr(faces112[:1], y)[0] < 30
    alone = O.make("swap", donors=faces112[:1])
    with pytest.raises(ValueError, match="protected face itself"):
        alone(jax.random.key(0), images.to_unit(faces112[:1]))


def test_mask_covers_the_inner_face(faces112):
    y = images.from_unit(O.make("mask")(jax.random.key(0), images.to_unit(faces112)))
    inner = geometry.face_ellipse_mask(112, 112, 0.8) > 0.5
    changed = (np.abs(y.astype(int) - faces112).max(-1) > 10)[:, inner].mean()
    assert changed > 0.8


# ---------------------------------------------------------------- stickers
def test_generated_stickers_are_distinct_reproducible_cartoon_cutouts():
    family = np.stack([generate_sticker(0, i, 64) for i in range(200)]).astype(np.float32)
    hashes = {hashlib.sha1(a.tobytes()).hexdigest() for a in family}
    assert len(hashes) == 200
    # Distinct to the eye, not just in a few pixels: colour over transparent black, every pair
    # differs by a root-mean-square of > 5 levels (seen: closest pair 11.7 among the first 300,
    # differing in eyes, mouth and moustache).
    flat = (family[..., :3] * family[..., 3:] / 255.0).reshape(200, -1)
    sq = (flat ** 2).sum(1)
    rms = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * flat @ flat.T, 0) / flat.shape[1])
    np.fill_diagonal(rms, np.inf)
    assert rms.min() > 5.0, np.unravel_index(rms.argmin(), rms.shape)
    a = generate_sticker(5, 17, 96)
    np.testing.assert_array_equal(a, generate_sticker(5, 17, 96))
    assert not np.array_equal(a, generate_sticker(6, 17, 96))
    assert a.shape == (96, 96, 4) and a.dtype == np.uint8
    assert a[0, 0, 3] == 0 and a[-1, 0, 3] == 0 and a[48, 48, 3] == 255  # transparent corners, opaque face
    opaque = a[..., 3] == 255
    assert len(np.unique(a[opaque][:, :3], axis=0)) > 8  # many colours: features, not a flat blob


def test_prepare_sticker_crops_alpha_box_and_squares():
    core = np.zeros((30, 20, 4), np.uint8)
    core[..., 0], core[..., 3] = 255, 255
    padded = np.zeros((100, 80, 4), np.uint8)
    padded[40:70, 10:30] = core
    a, b = prepare_sticker(core, 40), prepare_sticker(padded, 40)
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert a.shape == (40, 40, 4)
    assert a[20, 0, 3] < 0.05 and a[20, 20, 3] > 0.99  # narrower side padded (centred), transparent


def test_sticker_folder_is_used(tmp_path, faces112):
    red = np.zeros((50, 50, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 255
    padded = np.zeros((80, 80, 4), np.uint8)
    padded[15:65, 15:65] = red
    images.atomic_write_bytes(tmp_path / "s.png", _png_rgba(padded))
    y = images.from_unit(O.make("mask", stickers=tmp_path)(jax.random.key(0), images.to_unit(faces112[:2])))
    c = 112 // 2
    assert np.all(y[:, c, c] == [255, 0, 0])  # sticker pasted over the face centre
    np.testing.assert_array_equal(y[:, 0, 0], faces112[:2, 0, 0])  # corner untouched (box 0.95 × 112)


def _png_rgba(a):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- template
def test_template_reads_outputs_by_name(tmp_path, faces112, donors112):
    images.save_png(tmp_path / "a.jpg.png", donors112[0])        # <name>.png
    images.save_png(tmp_path / "b.png", donors112[1])            # <stem>.png
    images.save_png(tmp_path / "c.jpg", np.zeros((10, 10, 3), np.uint8))  # not PNG, but an image
    images.save_png(tmp_path / "d.png", images.resize(donors112[2], (200, 200)))  # other size: resized
    obf = O.make("template", folder=tmp_path)
    y = images.from_unit(obf(jax.random.key(0), images.to_unit(faces112[:3]), names=["a.jpg", "dir/b.jpg", "d.jpg"]))
    np.testing.assert_array_equal(y[0], donors112[0])
    np.testing.assert_array_equal(y[1], donors112[1])
    assert psnr(y[2:3], donors112[2:3])[0] > 30
    with pytest.raises(ValueError, match="no precomputed output for image 'zzz.jpg'"):
        obf(jax.random.key(0), images.to_unit(faces112[:1]), names=["zzz.jpg"])
    with pytest.raises(ValueError, match="image names"):
        obf(jax.random.key(0), images.to_unit(faces112[:1]))
    with pytest.raises(ValueError, match="2 names for a batch of 1"):
        obf(jax.random.key(0), images.to_unit(faces112[:1]), names=["a.jpg", "b.jpg"])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ALL)
def test_bad_shapes_are_refused(name, faces112, donors112, tmp_path):
    images.save_png(tmp_path / "x.png", faces112[0])
    opts = {"swap": {"donors": donors112}, "template": {"folder": tmp_path}}.get(name, {})
    obf = O.make(name, **opts)
    x = images.to_unit(faces112[:2])
    with pytest.raises(ValueError, match="rank 4"):
        obf(jax.random.key(0), x[0], names=["x"])
    with pytest.raises(ValueError, match="3 colour channels"):
        obf(jax.random.key(0), np.concatenate([x, x[..., :1]], -1), names=["x", "x"])
    if obf.jittable:  # the check also fires while tracing
        with pytest.raises(ValueError, match="3 colour channels"):
            jax.jit(obf.__call__)(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))


def test_missing_or_empty_pools_are_refused(tmp_path, faces112):
    with pytest.raises(ValueError, match="donor pool"):
        O.make("swap")
    with pytest.raises(ValueError, match="holds no images"):
        O.make("swap", donors=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        O.make("swap", donors=np.zeros((0, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        O.make("swap", donors=faces112[0])
    with pytest.raises(ValueError, match="no .png stickers"):
        O.make("mask", stickers=tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        O.make("mask", stickers=tmp_path / "nope")
    with pytest.raises(ValueError, match="folder of precomputed outputs"):
        O.make("template")
    with pytest.raises(ValueError, match="holds no images"):
        O.make("template", folder=tmp_path)
    images.save_png(tmp_path / "rgb.png", faces112[0])  # a PNG without alpha is no sticker
    with pytest.raises(ValueError, match="no alpha channel"):
        O.make("mask", stickers=tmp_path)


def test_choose_is_reproducible_and_uses_all():
    obfs = [O.make(n) for n in JAX_ONES]
    picks = [O.choose(jax.random.key(k), obfs)[0].name for k in range(60)]
    assert set(picks) == set(JAX_ONES)
    assert picks == [O.choose(jax.random.key(k), obfs)[0].name for k in range(60)]
    with pytest.raises(ValueError, match="no obfuscators"):
        O.choose(jax.random.key(0), [])

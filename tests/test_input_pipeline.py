"""proface_jax.input_pipeline: sources, hash splits, crops, the deterministic resumable iterator."""
from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the repo on sys.path
    sys.path.insert(0, str(REPO))

from proface_jax import input_pipeline as ip  # noqa: E402
from proface_jax import images  # noqa: E402


def _write_faces(folder: Path, names, h=24, w=24, start=0):
    """Small PNGs whose pixels encode their number (so a batch's images can be checked against its names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names, start):
        img = np.full((h, w, 3), (k * 7) % 256, np.uint8)
        img[..., 1] = k % 256
        images.save_png(folder / name, img)


def _splits(root: Path, fractions=None) -> dict[str, set[str]]:
    return {s: set(ip.open_source(f"folder:{root}", s, fractions=fractions).names) for s in ip.SPLITS}


@pytest.fixture()
def face_folder(tmp_path) -> Path:
    root = tmp_path / "faces"
    _write_faces(root, [f"face_{k:03d}.png" for k in range(26)])
    return root


# --------------------------------------------------------------------------- splits


def test_folder_split_is_a_partition_and_stable_when_files_are_added(tmp_path):
    root = tmp_path / "faces"
    old = [f"old_{k:03d}.png" for k in range(60)]
    _write_faces(root, old)
    before = _splits(root)
    assert set().union(*before.values()) == set(old)
    assert sum(len(v) for v in before.values()) == len(old)  # disjoint
    assert all(before.values()), before  # 60 files: every split non-empty

    # Add files (sorting between and around the old ones) and a sub-folder: no old file moves.
    _write_faces(root, [f"new_{k:03d}.png" for k in range(40)] + [f"old_{k:03d}b.png" for k in range(10)], start=60)
    _write_faces(root / "sub", ["x.png", "y.jpg.png"], start=200)
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"skipped")
    after = _splits(root)
    for s in ip.SPLITS:
        assert before[s] <= after[s], s
    everything = set(ip.list_images(root))
    assert len(everything) == 60 + 50 + 2 and "sub/x.png" in everything
    assert set().union(*after.values()) == everything and sum(len(v) for v in after.values()) == len(everything)

    # The rule depends on the relative name only, not on where the folder lives.
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert _splits(moved) == after


def test_split_rule_is_pinned():
    """The rule itself must never change between versions or processes (it would move files between splits)."""
    import hashlib

    key = "face_000.png"
    expected = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    assert ip.split_bucket(key) == expected == pytest.approx(0.8989108245686458, abs=1e-15)
    assert ip.split_of(key) == "validation"  # 0.8 <= 0.899 < 0.9
    assert ip.split_of("100_1_2_20170105174847679.jpg.chip.jpg") == "test"
    assert ip.split_of("10_0_0_20170103200329407.jpg.chip.jpg") == "validation"
    assert ip.split_of("100_1_0_20170110183726390.jpg.chip.jpg") == "train"


def test_split_rule_fractions_on_full_utkface_listing(utkface_dir):
    names = ip.list_images(utkface_dir)  # listing only: nothing is decoded
    assert len(names) == 9780
    counts = {s: 0 for s in ip.SPLITS}
    for n in names:
        counts[ip.split_of(n)] += 1
    for s, f in ip.DEFAULT_FRACTIONS.items():
        assert abs(counts[s] / len(names) - f) < 0.02, counts
    src = ip.open_source(f"folder:{utkface_dir}", "test")
    assert len(src) == counts["test"]
    assert set(src.names) == {n for n in names if ip.split_of(n) == "test"}
    # Overridden fractions: validation empty -> a clear error, others cover everything.
    fr = {"train": 0.5, "test": 0.5}
    assert sum(len(ip.open_source(f"folder:{utkface_dir}", s, fractions=fr)) for s in ("train", "test")) == 9780
    with pytest.raises(ValueError, match="split 'validation' is empty"):
        ip.open_source(f"folder:{utkface_dir}", "validation", fractions=fr)


def test_bad_specs_give_clear_errors(tmp_path, face_folder):
    with pytest.raises(ValueError, match="unknown scheme 'http'"):
        ip.open_source("http://x", "train")
    with pytest.raises(ValueError, match="expected 'folder:PATH' or 'tfds:NAME'"):
        ip.open_source("faces", "train")
    with pytest.raises(ValueError, match="nothing after 'folder:'"):
        ip.open_source("folder:", "train")
    with pytest.raises(ValueError, match="does not exist"):
        ip.open_source(f"folder:{tmp_path / 'missing'}", "train")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files"):
        ip.open_source(f"folder:{tmp_path / 'empty'}", "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        ip.open_source(f"folder:{face_folder}", "dev")
    with pytest.raises(ValueError, match="sum to 1"):
        ip.open_source(f"folder:{face_folder}", "train", fractions={"train": 0.9, "test": 0.3})
    src = ip.open_source(f"folder:{face_folder}", "all")
    with pytest.raises(ValueError, match="no full batch of 64"):
        ip.make_iterator(src, batch_size=64, size=16)


# --------------------------------------------------------------------------- crops and values


def test_face_crops():
    assert ip.CELEBA_CROP.box(218, 178) == (40, 15, 148)
    assert ip.LFW_CROP.box(250, 250) == (50, 50, 150)
    assert ip.CENTER_SQUARE.box(40, 20) == (10, 0, 20)
    assert ip.CENTER_SQUARE.box(200, 200) == (0, 0, 200)
    # The centre square of a tall image is its middle: paint only it white.
    img = np.zeros((40, 20, 3), np.uint8)
    img[10:30] = 255
    out = ip.preprocess(ip.CENTER_SQUARE(img), 8)
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1.0, atol=1e-6)
    np.testing.assert_allclose(ip.preprocess(np.zeros((5, 5, 3), np.uint8), 3), -1.0)


# --------------------------------------------------------------------------- iterator


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_iterator_batches_shapes_values_and_names(face_folder):
    src = ip.open_source(f"folder:{face_folder}", "all")
    with ip.make_iterator(src, batch_size=4, size=16, seed=0, num_workers=2) as it:
        batches = _take(it, 3)
        assert it.step == 3
    for k, b in enumerate(batches):
        assert b["step"] == k
        assert b["image"].shape == (4, 16, 16, 3) and b["image"].dtype == np.float32
        assert -1.0 <= b["image"].min() and b["image"].max() <= 1.0
        assert len(b["name"]) == 4
        for img, name, idx in zip(b["image"], b["name"], b["index"]):
            assert src.names[idx] == name
            k_file = int(name[5:8])  # face_XXX.png: green channel holds XXX
            np.testing.assert_allclose(img[..., 1], k_file / 127.5 - 1.0, atol=1e-6)


def test_iterator_order_is_deterministic_per_seed_and_epoch(face_folder):
    src = ip.open_source(f"folder:{face_folder}", "all")  # 26 images, batch 5 -> 5 steps/epoch, 1 dropped
    def run(seed, n=10):
        with ip.make_iterator(src, batch_size=5, size=8, seed=seed, num_workers=2, prefetch=3) as it:
            return _take(it, n)
    a, b, c = run(1), run(1), run(2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["index"], y["index"])
        np.testing.assert_array_equal(x["image"], y["image"])
        assert list(x["name"]) == list(y["name"])
    assert any(not np.array_equal(x["index"], z["index"]) for x, z in zip(a, c))
    # Each epoch: 25 distinct images, no repeats; the two epochs are ordered differently.
    ep0 = np.concatenate([x["index"] for x in a[:5]])
    ep1 = np.concatenate([x["index"] for x in a[5:]])
    assert len(set(ep0)) == 25 and len(set(ep1)) == 25
    assert not np.array_equal(ep0, ep1)
    # Unshuffled: plain file order.
    with ip.make_iterator(src, batch_size=5, size=8, shuffle=False, num_workers=1) as it:
        np.testing.assert_array_equal(next(it)["index"], np.arange(5))


def test_iterator_resumes_at_any_step(face_folder):
    src = ip.open_source(f"folder:{face_folder}", "all")
    with ip.make_iterator(src, batch_size=4, size=8, seed=7, num_workers=2) as it:  # 6 steps/epoch
        fresh = _take(it, 9)
    for k in (3, 5, 6):  # mid-epoch, last of an epoch, first of the next
        with ip.make_iterator(src, batch_size=4, size=8, seed=7, start_step=k, num_workers=2) as it:
            resumed = _take(it, 9 - k)
        for x, y in zip(fresh[k:], resumed):
            assert x["step"] == y["step"]
            np.testing.assert_array_equal(y["index"], ip.batch_indices(len(src), 4, 7, y["step"]))
            np.testing.assert_array_equal(x["index"], y["index"])
            np.testing.assert_array_equal(x["image"], y["image"])


def test_iterator_num_epochs_and_remainder(face_folder):
    src = ip.open_source(f"folder:{face_folder}", "all")  # 26
    with ip.make_iterator(src, batch_size=4, size=8, seed=0, num_epochs=2, num_workers=2) as it:
        steps = [b["step"] for b in it]
    assert steps == list(range(12))  # 2 epochs x 6 full batches; 2 images dropped each epoch
    with ip.make_iterator(src, batch_size=4, size=8, shuffle=False, num_epochs=1, drop_remainder=False,
                          num_workers=2) as it:
        sizes = [len(b["index"]) for b in it]
    assert sizes == [4] * 6 + [2]


class _Exploding:
    def __init__(self, n, bad):
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.bad:
            raise RuntimeError(f"cannot decode record {i}")
        return ip.Face(np.zeros((8, 8, 3), np.uint8), str(i))


def test_worker_exception_propagates_and_threads_stop(face_folder):
    it = ip.make_iterator(_Exploding(12, bad=9), batch_size=4, size=8, shuffle=False, num_workers=2, prefetch=4)
    assert next(it)["step"] == 0 and next(it)["step"] == 1
    with pytest.raises(RuntimeError, match="cannot decode record 9"):
        next(it)
    assert not any(t.is_alive() for t in it._pool._threads)
    with pytest.raises(RuntimeError, match="closed"):
        next(it)

    # A corrupt file in a folder: the error names the file.
    (face_folder / "face_010.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    src = ip.open_source(f"folder:{face_folder}", "all")
    with pytest.raises(images.ImageError, match="face_010.png"):
        with ip.make_iterator(src, batch_size=4, size=8, shuffle=False, num_workers=2) as it:
            for _ in it:
                pass


def test_close_joins_threads(face_folder):
    src = ip.open_source(f"folder:{face_folder}", "all")
    it = ip.make_iterator(src, batch_size=4, size=8, num_workers=2, prefetch=3)
    next(it)
    threads = list(it._pool._threads)
    assert threads
    it.close()
    it.close()  # idempotent
    assert not any(t.is_alive() for t in threads)
    assert not any(t in threading.enumerate() for t in threads)


def test_cache_in_memory_gives_identical_batches(face_folder):
    src = ip.open_source(f"folder:{face_folder}", "train")
    cached = ip.cache_in_memory(src, size=12, num_workers=2)
    assert cached.images.shape == (len(src), 12, 12, 3) and cached.images.dtype == np.uint8
    with ip.make_iterator(src, 3, 12, seed=3, num_workers=2) as a, ip.make_iterator(cached, 3, 12, seed=3) as b:
        for x, y in zip(_take(a, 4), _take(b, 4)):
            np.testing.assert_array_equal(x["image"], y["image"])
            assert list(x["name"]) == list(y["name"])


def test_real_faces_batch(utkface_dir):
    src = ip.open_source(f"folder:{utkface_dir}", "validation")
    with ip.make_iterator(src, batch_size=4, size=112, seed=0, num_workers=2) as it:
        b = next(it)
    assert b["image"].shape == (4, 112, 112, 3)
    assert b["image"].std() > 0.1  # real pictures, not a constant
    assert all(ip.split_of(n) == "validation" for n in b["name"])


# --------------------------------------------------------------------------- test sample


def test_test_sample_is_fixed_and_distinct():
    a = ip.test_sample(9780, n=1000, seed=0)
    b = ip.test_sample(9780, n=1000, seed=0)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 1000 and len(np.unique(a)) == 1000
    assert a.min() >= 0 and a.max() < 9780 and np.all(np.diff(a) > 0)
    assert not np.array_equal(a, ip.test_sample(9780, n=1000, seed=1))
    np.testing.assert_array_equal(ip.test_sample(37, n=1000), np.arange(37))
    src = ip.ArraySource(np.zeros((50, 4, 4, 3), np.uint8), [f"n{i}" for i in range(50)])
    idx = ip.test_sample(src, n=10, seed=5)
    sub = ip.Subset(src, idx)
    assert len(sub) == 10 and [sub[i].name for i in range(10)] == [f"n{i}" for i in idx]


# --------------------------------------------------------------------------- tfds (mocked, no TensorFlow)


@pytest.fixture()
def tfds_mock():
    tfds = pytest.importorskip("tensorflow_datasets")
    return lambda n: tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE)


def test_tfds_celeb_a_mocked(tfds_mock):
    with tfds_mock(6):
        for split in ("train", "validation", "test"):
            src = ip.open_source("tfds:celeb_a", split)
            assert len(src) == 6
        face = src[0]
        assert face.image.shape == (148, 148, 3) and face.image.dtype == np.uint8  # 218x178 -> face square
        assert face.name == "celeb_a/test/000000"
        with ip.make_iterator(src, batch_size=3, size=32, seed=0, num_workers=2) as it:
            b = next(it)
    assert b["image"].shape == (3, 32, 32, 3) and -1 <= b["image"].min() and b["image"].max() <= 1


def test_tfds_lfw_mocked_hash_split(tfds_mock):
    with tfds_mock(40):
        full = ip.open_source("tfds:lfw", "all")
        parts = {s: ip.open_source("tfds:lfw", s) for s in ip.SPLITS}
        face = parts["train"][0]
    assert len(full) == 40
    idx = {s: set(p.indices.tolist()) for s, p in parts.items()}
    assert set().union(*idx.values()) == set(range(40)) and sum(map(len, idx.values())) == 40
    for s, members in idx.items():
        assert all(ip.split_of(f"lfw:{j}") == s for j in members)
    assert face.image.shape == (150, 150, 3)  # central 150 of 250
    assert face.name.startswith("lfw/train/")


def test_tfds_not_prepared_is_a_clear_error(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="array_record"):
        ip.open_source("tfds:celeb_a", "train", data_dir=tmp_path)
    with pytest.raises(ValueError, match="not found"):
        ip.open_source("tfds:no_such_dataset_xyz", "train", data_dir=tmp_path)

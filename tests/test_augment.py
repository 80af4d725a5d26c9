"""Training augmentation (config.augment) and per-obfuscator draw weights (config.obfuscator_weights):
off by default (existing runs unchanged), seeded, resumable."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from proface_jax import input_pipeline, obfuscators
from proface_jax.input_pipeline import augment
from proface_jax.training import config as config_lib
from proface_jax.training.obfuscation import PreObfuscators, obfuscator_names_for, obfuscator_weights


def _cfg(**kw):
    c = config_lib.base_config("randwr")
    for k, v in kw.items():
        node, *rest = k.split(".")
        if rest:
            setattr(getattr(c, node), rest[0], v)
        else:
            setattr(c, k, v)
    return c


def test_defaults_change_nothing():
    c = _cfg()
    assert not c.augment.enabled and augment.from_config(c, 0) is None
    names = obfuscator_names_for(c, donors=None)
    assert names.weights is None
    obfs = PreObfuscators(names, "paper112", "train")
    assert obfs.weights is None
    for s in range(6):  # the same draws as the uniform chooser
        rng = jax.random.key(s)
        assert obfs.pick(rng)[0].name == obfuscators.choose(rng, obfs.obfs)[0].name


def test_weights_parse_and_shift_the_draws():
    c = _cfg(obfuscators="blur,mask", obfuscator_weights="mask=3")
    assert obfuscator_weights(c, ["blur", "mask"]) == [1.0, 3.0]
    obfs = PreObfuscators(obfuscator_names_for(c, None), "paper112", "train")
    draws = [obfs.pick(jax.random.key(i))[0].name for i in range(300)]
    assert 0.67 < draws.count("mask") / 300 < 0.83
    for bad in ("mosaic=2", "mask=0", "mask=x"):
        with pytest.raises(ValueError):
            obfuscator_weights(_cfg(obfuscator_weights=bad), ["mask"])


def test_augmented_batches_are_seeded_and_resume_exactly(utkface_faces):
    faces = utkface_faces(16, 48)
    src = input_pipeline.ArraySource(faces, [str(i) for i in range(16)])
    c = _cfg(**{"augment.enabled": True, "augment.prob": 1.0})
    aug = augment.from_config(c, seed=3)
    wrapped = augment.Augmented(src, aug)
    with input_pipeline.make_iterator(src, 4, 48, seed=1, num_workers=1) as it:
        plain = [next(it)["image"] for _ in range(3)]
    with input_pipeline.make_iterator(wrapped, 4, 48, seed=1, num_workers=1) as it:
        augd = [next(it)["image"] for _ in range(3)]
    with input_pipeline.make_iterator(wrapped, 4, 48, seed=1, start_step=2, num_workers=1) as it:
        resumed = next(it)["image"]
    assert augd[0].dtype == np.float32 and augd[0].shape == plain[0].shape
    assert all(np.abs(a - p).mean() > 0.02 for a, p in zip(augd, plain))
    assert np.array_equal(resumed, augd[2])
    # prob 0: the batch is returned exactly
    none = augment.Augment(augment.JitterRange(), prob=0.0, seed=3)
    assert np.array_equal(none(plain[0], 0), plain[0])


def test_training_runs_with_augmentation_and_weights(tmp_path):
    """Two smoke steps with both switches on: the train split is wrapped, validation is not."""
    from experiments.configs import smoke
    from proface_jax import images
    from proface_jax import training as train
    from proface_jax.training.validation import open_split

    root = tmp_path / "faces"
    root.mkdir()
    rng = np.random.default_rng(0)
    for k in range(24):
        images.save_png(root / f"face_{k:03d}.png", images.resize(rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8), (40, 40)))
    c = smoke.get_config()
    c.data = f"folder:{root}"
    c.num_train_steps = 2
    c.augment.enabled = True
    c.obfuscator_weights = "mask=2"
    assert isinstance(open_split(c, "train"), augment.Augmented)
    assert not isinstance(open_split(c, "validation"), augment.Augmented)
    out = train.train_and_evaluate(c, tmp_path / "work")
    assert out["step"] == 2


def test_augmentation_draws_follow_the_dataset_index_not_the_position():
    """A process of a multi-process run decodes only its rows of each batch: an image must get the
    same augmentation there as in the whole batch, so the draw is keyed on its dataset index."""
    rng = np.random.default_rng(0)
    batch = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    aug = augment.Augment(augment.JitterRange(), prob=1.0, seed=5)
    whole = aug(batch, 7, [10, 11, 12, 13])
    rows = aug(batch[2:], 7, [12, 13])  # the second process's rows
    np.testing.assert_array_equal(whole[2:], rows)
    moved = aug(batch[2:], 7, [0, 1])  # the same images at other indices: other draws
    assert np.max(np.abs(moved - rows)) > 0.05
    with pytest.raises(ValueError, match="indices for a batch"):
        aug(batch, 7, [1, 2])

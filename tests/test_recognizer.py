"""The face recognizer of the evaluation (dlib ResNet), its statistics and verdicts, and the
`--jitter` re-crop: real properties on real UTKFace faces, a few seconds on a CPU."""
from __future__ import annotations

import types

import numpy as np
import pytest

from proface_jax.evaluation import identity, recognizer as rec
from proface_jax.input_pipeline import augment

N = 8


@pytest.fixture(scope="module")
def R():
    if not rec.available():
        pytest.skip("face-recognition-models not installed (extra [privacy])")
    return rec.Recognizer()


@pytest.fixture(scope="module")
def faces(utkface_faces):
    # every 7th of the first 56 files: distinct people of several ages
    return utkface_faces(56)[::7][:N]


def _noisy(x, seed=0, amp=2):
    g = np.random.default_rng(seed)
    return np.clip(x.astype(np.int16) + g.integers(-amp, amp + 1, x.shape), 0, 255).astype(np.uint8)


def _pixelate(x, block=28):
    h = x.shape[1]
    small = x.reshape(len(x), h // block, block, h // block, block, 3).mean(axis=(2, 4))
    return np.repeat(np.repeat(small, block, 1), block, 2).round().astype(np.uint8)


def test_same_face_under_tiny_noise_matches_itself_and_different_people_separate(R, faces):
    g = R.descriptors(faces)
    p = R.descriptors(_noisy(faces))
    assert g.shape == (N, 128) and np.all(np.isfinite(g))
    ident = rec.identify(p, g)
    assert ident["top1"] == 1.0
    self_d = np.linalg.norm(p - g, axis=1)
    impostor = rec.impostor_distances(g)
    assert self_d.max() < 0.15 < impostor.min(), (self_d.max(), impostor.min())
    # at FAR 0 on these pairs every noisy copy is still verified as its original
    thr = rec.threshold_at_far(impostor, 0.0)
    assert thr == impostor.min() and rec.verify(p, g, thr).all()
    # float input in [-1, 1] is the same image
    assert np.allclose(R.descriptors(faces.astype(np.float32) / 127.5 - 1.0), g, atol=1e-5)


def test_verdict_says_leaks_for_a_leaking_probe_and_not_for_y_itself(R, faces):
    g = R.descriptors(faces)
    y = R.descriptors(_pixelate(faces))  # 4×4 blocks: the recognizer should find few of them
    leaky = R.descriptors(_noisy(faces, seed=1))
    hy = rec.identify(y, g)["hits"]["top1"]
    hl = rec.identify(leaky, g)["hits"]["top1"]
    assert hl.all() and hy.sum() <= N - 5, hy
    assert rec.verdict(hl, hy) == "leaks"
    assert rec.verdict(hy, hy) == "no more than y"
    assert rec.verdict(hy, hl) == "no more than y"  # fewer hits than y is never a leak


def test_statistics():
    assert rec.mcnemar_greater([1, 1, 1, 1, 1], [0, 0, 0, 0, 0]) == {"a_only": 5, "b_only": 0, "p": 1 / 32}
    assert rec.mcnemar_greater([1, 0, 1], [1, 0, 1])["p"] == 1.0
    t = rec.mcnemar_greater([1, 1, 1, 0], [0, 0, 1, 1])  # 2 vs 1 discordant
    assert t["a_only"] == 2 and t["b_only"] == 1 and t["p"] == pytest.approx(4 / 8)
    lo, hi = rec.wilson(0, 20)
    assert lo == 0.0 and 0.15 < hi < 0.17  # Wilson upper bound for 0/20 is 0.161
    lo, hi = rec.wilson(10, 20)
    assert lo < 0.5 < hi and lo == pytest.approx(1 - hi)
    imp = np.arange(1, 1001, dtype=float)  # accept d < t
    t = rec.threshold_at_far(imp, 1e-3)
    assert np.mean(imp < t) <= 1e-3 and t == 2.0


def test_missing_models_name_the_extra(monkeypatch):
    monkeypatch.setattr(rec.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(rec.RecognizerMissing, match=r"\[privacy\]"):
        rec.model_dir()
    assert not rec.available()


def test_identity_section_rows_verdicts_and_report(R, faces):
    """The section on a constructed run: ẍ = x (leaks), ŷ = y (no more than y), x̌ = x + noise (same person)."""
    from proface_jax import images
    from proface_jax.evaluation import report

    x = faces
    y = _pixelate(x)
    imgs = {"stored": y, "wrong": _noisy(x, 2), "byproduct": y, "recovered_byproduct": y, "wrong_byproduct": y,
            "recovered": _noisy(x, 3)}
    m = types.SimpleNamespace(label="fake (randwr)")
    ctx = types.SimpleNamespace(args=types.SimpleNamespace(recognizer="on", impostors=N), n=N, x_u8=x,
                                donors=None, obf_names=["pixelate"],
                                Y={"pixelate": images.to_unit(y)}, models=[m], IMAGES={(m.label, "pixelate"): imgs},
                                ATT_EST={m.label: {"pixelate": y}, "_baseline": {"pixelate": y}}, R={})
    bar = types.SimpleNamespace(update=lambda *a: None, write=lambda *a: None)
    identity.run_section(ctx, bar)
    I = ctx.R["identity"]
    rows = I["models"][m.label]
    assert rows["wrong_recovery"]["top1"]["verdict"] == "leaks"
    assert rows["protected"]["top1"]["verdict"] == "no more than y"
    assert rows["protected"]["top1"]["mcnemar"]["p"] == 1.0
    assert rows["correct_recovery"]["verdict"] == "same person"
    assert I["impostor_pairs"] == N * (N - 1) // 2
    text = "\n".join(report._section4b({"identity": I, "meta": {}}))
    assert "**leaks** (top1" in text and "ẍ wrong-key recovery" in text and "same person" in text


def test_jitter_is_seeded_and_changes_the_crop(faces):
    a, da = augment.jitter_faces(faces[:3], seed=5)
    b, db = augment.jitter_faces(faces[:3], seed=5)
    c, _ = augment.jitter_faces(faces[:3], seed=6)
    assert np.array_equal(a, b) and da == db and not np.array_equal(a, c)
    assert all(0.8 <= d.scale <= 1.25 and abs(d.dx) <= 0.1 and abs(d.angle) <= 10 for d in da)
    assert np.abs(a.astype(int) - faces[:3]).mean() > 5
    # the identity jitter leaves the image as it is
    same = augment.apply(faces[0], augment.Jitter())
    assert np.abs(same.astype(int) - faces[0]).max() <= 1
    # a pure shift by 11 of 112 pixels moves the content by 11 pixels
    sh = augment.apply(faces[0], augment.Jitter(dx=11 / 112))
    assert np.abs(sh[:, :50].astype(int) - faces[0][:, 11:61]).max() <= 1


def test_model_card_identity_section_replaces_itself():
    """The card's identity section (experiments/model_card.py): retirement text, rows, fidelity table, idempotent."""
    from experiments import model_card

    def hits(k):
        return {"top1": np.arange(10) < k, "top5": np.arange(10) < k + 2, "verify": np.arange(10) < k}
    y = {"blur": hits(2)}
    rows = {p: identity.row({"blur": hits(9 if p == "wrong_recovery" else 2)}, y) for p in identity.PROBES}
    rows["correct_recovery"] = {**identity.row({"blur": hits(10)}, None), "verdict": "same person"}
    I = {"far": 1e-3, "threshold": 0.4, "impostor_pairs": 45, "gallery": 10, "obfuscators": ["blur"],
         "chance": {"top1": 0.1, "top5": 0.5, "verify": 1e-3}, "pre_obfuscated": identity.row(y, None),
         "models": {"m (randwr)": rows}}
    t = {m: {"psnr": 30.0, "ssim": 0.9, "lpips": 0.1} for m in ("privacy", "recovery", "wrong_vs_x")}
    R = {"meta": {"n_faces": 10, "argv": ["--n", "10"]}, "identity": I, "tables": {"m (randwr)": {"8bit": {"avg": t}}},
         "keyless": {}}
    sec = model_card.identity_section("randwr", "m (randwr)", R, R)
    text = "\n".join(sec)
    assert "Issue 8's thumbnail target is retired" in text and "y, not chance" in text
    assert "| ẍ wrong-key recovery |" in text and "**leaks** (top1" in text and "**same person**" in text
    assert "python -m experiments.evaluate --n 10" in text and "jittered test PSNR" in text
    card = "# card\n\nbody\n\n## Caveats\n\nend\n"
    once = model_card.update_identity(card, sec)
    assert once.index("retired") < once.index("## Caveats") and once.endswith("end\n")
    assert model_card.update_identity(once, sec) == once

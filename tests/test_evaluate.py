"""experiments.evaluate over proface_jax.evaluation (sections, scoring, attacks): plumbing on a tiny model and a few faces.

The end-to-end run uses `--quick` with a one-block model from random params at 32×32 and LPIPS
off (LPIPS is checked separately, on one batch shape); two checkpoints with the same file name
side by side check the labels. The attack tests check real properties: a matcher given the
originals themselves must find every one, and one given unrelated probes must sit near chance.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # plain `pytest` does not put the repo on sys.path
    sys.path.insert(0, str(REPO))

from _lpips_testenv import lpips_params  # noqa: E402,F401  (session fixture)
from experiments import evaluate  # noqa: E402  (the entry point: evaluate.main)
from proface_jax.evaluation import attacks, faces, robustness, scoring, security  # noqa: E402
from proface_jax.evaluation.model import Model  # noqa: E402
from proface_jax import checkpoint, images, keys, metrics  # noqa: E402
from proface_jax.flow import FlowConfig, recover  # noqa: E402
from proface_jax.testing import random_params  # noqa: E402

SIZE = 32
CFG = FlowConfig(num_blocks=1)


@pytest.fixture(scope="module")
def tiny_params():
    return random_params(jax.random.key(0), CFG, 1.0, 0.2, 0.5)


@pytest.fixture(scope="module")
def tiny_checkpoints(tiny_params, tmp_path_factory):
    """The same random params saved as randwr/best.pfj and obfswr/best.pfj (same file name)."""
    root = tmp_path_factory.mktemp("ckpts")
    paths = []
    for mode in ("randwr", "obfswr"):
        (root / mode).mkdir()
        checkpoint.save_checkpoint(root / mode / "best.pfj", tiny_params, CFG, mode)
        paths.append(root / mode / "best.pfj")
    return paths


@pytest.fixture(scope="module")
def quick_run(tiny_checkpoints, utkface_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    argv = []
    for p in tiny_checkpoints:
        argv += ["--checkpoint", str(p)]
    argv += ["--data", f"folder:{utkface_dir}", "--out", str(out), "--size", str(SIZE), "--quick", "--no-lpips",
             "--n", "6", "--attack-train", "10", "--attack-steps", "3", "--security-n", "3"]
    assert evaluate.main(argv) == 0
    return out, json.loads((out / "results.json").read_text())


def _leaves(tree, path=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, tree


LABELS = ["randwr/best.pfj (randwr)", "obfswr/best.pfj (obfswr)"]  # same file name: the folder tells them apart
OBFS = ["blur", "pixelate", "median", "mask", "swap"]


def test_quick_run_writes_every_section(quick_run):
    out, R = quick_run
    for key in ("meta", "paper", "checkpoints", "tables", "security", "attacks", "keyless", "robustness",
                "figures", "timings"):
        assert key in R, key
    assert list(R["checkpoints"]) == LABELS
    assert R["meta"]["n_faces"] == 6 and R["meta"]["obfuscators"] == OBFS and R["meta"]["lpips"] is False
    for label in LABELS:
        for path in ("8bit", "float"):
            t = R["tables"][label][path]
            assert set(t) == set(OBFS) | {"avg"}
            for group in ("privacy", "recovery", "wrong_vs_x", "wrong_vs_y"):
                assert set(t["avg"][group]) == {"psnr", "ssim"}, (label, path, group)
        sec = R["security"][label]
        for g in ("right", "one_bit", "one_char", "other_password", "spoof"):
            assert 0.0 <= sec[g]["fail_fraction"] <= 1.0 and sec[g]["reid"]["thumbnail"]["gallery"] == 6
        assert sec["right"]["map_bits_agreeing"] == 1.0 and 0.3 < sec["one_bit"]["map_bits_agreeing"] < 0.7
        for probe in ("wrong_recovery", "protected", "pre_obfuscated", "byproduct_protect", "attacker"):
            assert 0.0 <= R["attacks"][label]["avg"][probe]["thumbnail"]["top1"] <= 1.0
        km = R["keyless"]["models"][label]["avg"]
        assert {"attacker", "random_key", "identity", "baseline", "pre_obfuscated"} <= set(km)
        assert set(R["robustness"][label]) == set(robustness.PERTURBATIONS)
        # The unchanged PNG recovers exactly as the 8-bit table says (same faces, keys, path).
        assert R["robustness"][label]["none"]["avg"]["psnr"] == pytest.approx(
            R["tables"][label]["8bit"]["avg"]["recovery"]["psnr"], abs=1e-9)
    # Every number is finite (PSNR of identical images is capped), nothing left undefined.
    for path, v in _leaves(R):
        assert v is not None, path
        if isinstance(v, float):
            assert math.isfinite(v), path
    for f in R["figures"].values():
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_run_report_has_every_section(quick_run):
    out, R = quick_run
    text = (out / "report.md").read_text()
    for heading in ("## 1. Tables I–III", "Table I analogue", "Table II analogue", "Table III analogue (RandWR)",
                    "Table III analogue (ObfsWR)", "## 2. Security analysis", "one bit away", "spoofing",
                    "### 2b. Byproducts", "## 3. Re-identification attacks", "## 4. Keyless attacker",
                    "## 5. Robustness", "JPEG quality 75", "## 6. Figures", "## Timings"):
        assert heading in text, heading
    for label in LABELS:
        assert label in text
    for f in R["figures"].values():
        assert f"]({f})" in text
    assert "| 44.92 | 0.990 | 0.0001 |" in text  # the paper's RandWR Avg. LFW row beside ours


def test_thumbnail_attack_finds_originals_and_not_random_probes(utkface_faces):
    x = images.to_unit(utkface_faces(64, SIZE))
    gallery = attacks.features_batched(attacks.thumbnail_features, x, 64)
    assert attacks.match("thumbnail", gallery, gallery)["top1"] == 1.0
    noisy = x + np.random.default_rng(0).normal(0, 0.05, x.shape).astype(np.float32)
    assert attacks.match("thumbnail", attacks.thumbnail_features(noisy), gallery)["top1"] >= 0.9
    # Unrelated probes: noise images. Chance is 1/64 (top-1) and 5/64 (top-5).
    rnd = np.random.default_rng(1).uniform(-1, 1, x.shape).astype(np.float32)
    r = attacks.match("thumbnail", attacks.thumbnail_features(rnd), gallery)
    assert r["chance_top1"] == pytest.approx(1 / 64) and r["chance_top5"] == pytest.approx(5 / 64)
    assert r["top1"] <= 0.1 and r["top5"] <= 0.25, r
    # A probe that carries nothing (constant image) ties with everyone: ties count against the attacker.
    flat = attacks.thumbnail_features(np.zeros_like(x))
    assert attacks.match("thumbnail", flat, gallery)["top5"] == 0.0
    # Absolute correlation: a negative of the face is still that face.
    assert attacks.match("thumbnail", attacks.thumbnail_features(-x), gallery)["top1"] == 1.0


def test_ranks_count_ties_against_the_attacker():
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.3, 0.3]])
    assert attacks.ranks(sim, [0, 1, 2]).tolist() == [0, 1, 2]


def test_deep_matcher_and_lpips_from_shared_features(lpips_params, utkface_faces):
    x = images.to_unit(utkface_faces(8, SIZE))
    y = np.asarray(images.quantize(x + np.random.default_rng(2).normal(0, 0.1, x.shape)), np.float32)
    scorer = scoring.Scorer(lpips_params)
    X, Yp = scorer.prep(x, True), scorer.prep(y, True)
    gallery = scorer.features(X)
    assert attacks.match("deep", gallery["deep"], gallery["deep"])["top1"] == 1.0
    assert attacks.match("deep", scorer.features(Yp)["deep"], gallery["deep"])["top1"] >= 0.75
    # The deep features equal the standalone matcher's.
    np.testing.assert_allclose(gallery["deep"], np.asarray(attacks.deep_features(lpips_params, x)), atol=1e-5)
    # LPIPS from the shared VGG pass equals proface_jax.metrics' LPIPS.
    ours = scorer.compare(Yp, X)["lpips"]
    ref = metrics.score(y, x, lpips_params, from_8bit=True)["lpips"]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert np.all(ours > 0)


def test_split_all_scores_every_face_of_a_small_folder(utkface_dir, tmp_path):
    """A user's folder of 16 faces: the default test split scores the hash-chosen few, --split all every one."""
    import shutil

    from proface_jax.evaluation import options, run

    folder = tmp_path / "mine"
    folder.mkdir()
    for p in sorted(q for q in utkface_dir.iterdir() if q.suffix.lower() == ".jpg")[:16]:
        shutil.copy(p, folder / p.name)
    spec = f"folder:{folder}"
    x_all, names_all = faces.load_faces(spec, "all", 1000, 0, SIZE)
    assert len(x_all) == 16 and len(set(names_all)) == 16
    try:
        n_test = len(faces.load_faces(spec, "test", 1000, 0, SIZE)[0])
    except ValueError:  # no file of the 16 hashed into the test split
        n_test = 0
    assert n_test < 16
    args = options.parse_args(["--checkpoint", "c.pfj", "--data", spec, "--out", str(tmp_path), "--split", "all"])
    assert args.split == "all" and options.parse_args(["--checkpoint", "c.pfj", "--data", spec, "--out", "o"]).split == "test"
    warnings = run.warnings_for(args, 16)
    assert any("only 16 faces" in w for w in warnings) and any("--split all" in w for w in warnings)
    assert run.warnings_for(options.parse_args(["--checkpoint", "c", "--data", spec, "--out", "o"]), 50) == []


def test_empty_test_split_is_a_clear_error(utkface_dir, tiny_checkpoints, tmp_path, capsys):
    import shutil

    from proface_jax import input_pipeline

    folder = tmp_path / "one"
    folder.mkdir()
    name = next(p.name for p in sorted(utkface_dir.iterdir())
                if p.suffix.lower() == ".jpg" and input_pipeline.split_of(p.name) != "test")
    shutil.copy(utkface_dir / name, folder / name)
    argv = ["--checkpoint", str(tiny_checkpoints[0]), "--data", f"folder:{folder}", "--out", str(tmp_path / "o"),
            "--no-lpips", "--quick", "--size", str(SIZE)]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "split 'test' is empty" in err and "--split all" in err


def test_report_says_which_split_and_how_many_faces(quick_run):
    from proface_jax.evaluation import report

    out, R = quick_run
    text = (out / "report.md").read_text()
    assert "test split, **6 faces**" in text and "**Warning:** only 6 faces scored" in text
    assert R["meta"]["split"] == "test" and any("only 6 faces" in w for w in R["meta"]["warnings"])
    R2 = dict(R, meta=dict(R["meta"], split="all", warnings=["w1"]))
    head = "\n".join(report._header(R2))
    assert "all faces (`--split all`), **6 faces**" in head and "**Warning:** w1" in head


def test_8bit_and_float_scoring_differ_as_expected(utkface_faces):
    x = images.to_unit(utkface_faces(4, SIZE))
    scorer = scoring.Scorer(None)
    # Less than half an 8-bit level off: the stored PNGs are identical (PSNR capped), the floats are not.
    near = x + np.float32(0.3 / 127.5) * np.sign(np.random.default_rng(3).normal(size=x.shape)).astype(np.float32)
    s8, sf = scorer.score(near, x, True), scorer.score(near, x, False)
    assert np.all(s8["psnr"] == scoring.PSNR_CAP) and np.all(s8["ssim"] == pytest.approx(1.0))
    assert np.all(sf["psnr"] < scoring.PSNR_CAP) and np.all(sf["psnr"] > 50)
    # Out-of-range values are clamped in both scorings, never renormalised.
    assert np.all(scorer.score(x * 3, x, False)["psnr"] < 30)
    # Otherwise the same numbers as proface_jax.metrics.
    far = np.clip(x + np.float32(0.05), -1, 1)
    for eight in (True, False):
        ref = metrics.score(far, x, None, from_8bit=eight)
        got = scorer.score(far, x, eight)
        np.testing.assert_allclose(got["psnr"], ref["psnr"], rtol=1e-6)
        np.testing.assert_allclose(got["ssim"], ref["ssim"], rtol=1e-6)


def test_forward_scores_recovery_from_the_stored_8bit_image(tiny_params, utkface_faces):
    x = images.to_unit(utkface_faces(4, SIZE))
    y = np.asarray(images.quantize(-x), np.float32)
    ck = checkpoint.Checkpoint(tiny_params, CFG, "randwr", "test", {}, "<test>")
    model = Model(ck, "tiny")
    maps = faces.random_maps(0, 0, 4, SIZE)
    K, Kw = faces.key_of(maps), faces.key_of(faces.random_maps(0, 1, 4, SIZE))
    o = {k: np.asarray(v) for k, v in model.forward(x, y, K, Kw).items()}
    stored = o["stored"]
    np.testing.assert_array_equal(stored, images.to_unit(images.from_unit(o["protected"])))  # the PNG's pixels
    assert not np.array_equal(stored, o["protected"])
    np.testing.assert_allclose(o["recovered"], np.asarray(recover(tiny_params, stored, K, CFG)[0]), atol=1e-5)
    np.testing.assert_allclose(o["recovered_float"], np.asarray(recover(tiny_params, o["protected"], K, CFG)[0]), atol=1e-5)
    np.testing.assert_allclose(o["wrong"], np.asarray(recover(tiny_params, stored, Kw, CFG)[0]), atol=1e-5)
    assert np.abs(o["recovered"] - o["recovered_float"]).max() > 1e-4  # the 8-bit path is a different input
    assert not np.allclose(o["recovered"], o["wrong"])


def test_password_neighbours_are_one_bit_and_one_char_away():
    rng = np.random.default_rng(0)
    pw = "Abcdefgh1234"
    one_bit, one_char = security.password_neighbours(rng, pw, 6)
    raw = np.frombuffer(pw.encode(), np.uint8)
    for b in one_bit:
        assert int(np.unpackbits(np.frombuffer(b, np.uint8) ^ raw).sum()) == 1
    for c in one_char:
        assert len(c) == len(pw) and sum(a != b for a, b in zip(c, pw)) == 1
    right = keys.secret_map(pw, 16, 16, "paper").map
    agree = [np.mean(keys.secret_map(b, 16, 16, "paper").map == right) for b in one_bit]
    assert 0.3 < np.mean(agree) < 0.7  # an unrelated map, not a nearby one


def test_perturbations():
    u = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    assert np.array_equal(robustness.perturb(u, "none", 0), u)
    for kind in robustness.PERTURBATIONS:
        p = robustness.perturb(u, kind, 0)
        assert p.shape == u.shape and p.dtype == np.uint8, kind
    n = robustness.perturb(u, "noise1", 0).astype(int) - u
    assert np.abs(n).max() == 1 and set(np.unique(n)) <= {-1, 0, 1}
    assert not np.array_equal(robustness.perturb(u, "jpeg95", 0), u)


def test_unique_labels():
    assert faces.unique_labels(["/a/r/best.pfj", "/a/o/model.pfj"], ["randwr", "obfswr"]) == [
        "best.pfj (randwr)", "model.pfj (obfswr)"]
    assert faces.unique_labels(["/a/r/best.pfj", "/a/o/best.pfj"], ["randwr", "randwr"]) == [
        "r/best.pfj (randwr)", "o/best.pfj (randwr)"]
    assert faces.unique_labels(["/a/best.pfj", "/a/best.pfj"], ["randwr", "randwr"]) == [
        "best.pfj (randwr)", "best.pfj (randwr) #2"]


def test_model_card_reports_the_evaluated_numbers(quick_run, tiny_checkpoints, tmp_path):
    from experiments import model_card

    out, R = quick_run
    label = LABELS[0]
    card = tmp_path / "card.md"
    assert model_card.main(["--checkpoint", str(tiny_checkpoints[0]), "--results", str(out / "results.json"),
                            "--label", label, "--out", str(card)]) == 0
    text = card.read_text()
    t = R["tables"][label]["8bit"]
    for key in ("privacy", "recovery", "wrong_vs_x"):
        assert f"| {t['avg'][key]['psnr']:.2f} |" in text and f"| {t['blur'][key]['psnr']:.2f} |" in text
    assert f"{R['tables'][label]['float']['avg']['recovery']['psnr']:.2f} dB PSNR" in text  # float vs 8-bit line
    # An ObfsWR card shows ẍ against y (its target) and against x (a key-independent model would show x).
    label_o = LABELS[1]
    assert model_card.main(["--checkpoint", str(tiny_checkpoints[1]), "--results", str(out / "results.json"),
                            "--label", label_o, "--out", str(card)]) == 0
    text, t = card.read_text(), R["tables"][label_o]["8bit"]
    assert "ObfsWR residual decorrelation weight" in text and "ObfsWR L1 triplet margin" in text
    for key, name in (("wrong_vs_y", "wrong recovery ẍ vs y PSNR"), ("wrong_vs_x", "wrong recovery ẍ vs x")):
        row = next(ln for ln in text.splitlines() if ln.startswith(f"| {name}"))
        assert f"| {t['avg'][key]['psnr']:.2f} |" in row
    # A checkpoint other than the one evaluated is refused.
    other = tmp_path / "other.pfj"
    params = random_params(jax.random.key(9), CFG, 1.0, 0.2, 0.5)
    checkpoint.save_checkpoint(other, params, CFG, "randwr")
    with pytest.raises(SystemExit):
        model_card.main(["--checkpoint", str(other), "--results", str(out / "results.json"), "--label", label,
                         "--out", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.md").exists()


def test_split_validation_scores_validation_faces_and_takes_donors_elsewhere(utkface_dir, quick_run):
    """Models are chosen on validation faces (issue 24): `--split validation` scores that split, and swap
    donors / extra impostors then come from the train split, so no scored face is also a donor."""
    from proface_jax import input_pipeline
    from proface_jax.evaluation import options, report

    spec = f"folder:{utkface_dir}"
    args = options.parse_args(["--checkpoint", "c.pfj", "--data", spec, "--out", "o", "--split", "validation"])
    assert args.split == "validation"
    assert options.donor_split("validation") == "train"
    assert options.donor_split("test") == options.donor_split("all") == "validation"
    _, scored = faces.load_faces(spec, "validation", 12, 0, SIZE)
    _, donors = faces.load_faces(spec, options.donor_split("validation"), 12, 0, SIZE)
    assert {input_pipeline.split_of(Path(n).name) for n in scored} == {"validation"}
    assert {input_pipeline.split_of(Path(n).name) for n in donors} == {"train"}
    assert not set(scored) & set(donors)
    _, R = quick_run
    assert R["meta"]["donor_split"] == "validation"
    R2 = dict(R, meta=dict(R["meta"], split="validation", donor_split="train"))
    head = "\n".join(report._header(R2))
    assert "validation split, **6 faces**" in head and "faces of the train split" in head

"""proface_jax.training (with the config files of experiments/configs) and proface_jax.losses: smoke runs (mocked CelebA, UTKFace), exact resume,
sharded == single-device step, the loss terms, and the loss-explosion guard.

Most runs use the smoke config (32×32, one block, LPIPS off); steps are jitted with the
step-relevant part of the config as a static argument, so runs in this process share compiles.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the repo on sys.path
    sys.path.insert(0, str(REPO))

from _lpips_testenv import lpips_params  # noqa: E402,F401  (session fixture)
from proface_jax import protocol  # noqa: E402
from proface_jax import training as train  # noqa: E402
from experiments.configs import smoke  # noqa: E402
from proface_jax import images, losses  # noqa: E402
from proface_jax.checkpoint import load_checkpoint  # noqa: E402
from proface_jax.flow import init_params, protect  # noqa: E402


def _smoke(data: str, **overrides):
    c = smoke.get_config()
    c.data = data
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return c


@pytest.fixture(scope="module")
def synthetic_faces(tmp_path_factory) -> Path:
    """24 smooth random 40×40 PNGs (fast to decode; enough for every split)."""
    root = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for k in range(24):
        low = rng.uniform(0, 255, (5, 5, 3)).astype(np.uint8)
        img = images.resize(low, (40, 40))
        images.save_png(root / f"face_{k:03d}.png", img)
    return root


def _jsonl(workdir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def _check_outputs(workdir: Path, steps: int, mode: str = "randwr"):
    recs = _jsonl(workdir)
    train_recs = [r for r in recs if r["kind"] == "train"]
    assert train_recs and all(np.isfinite(r["loss"]) for r in train_recs)
    assert [r for r in recs if r["kind"] == "eval"]
    assert sorted((workdir / "samples").glob("step_*.png")), "no sample grid"
    grid = images.load_rgb(sorted((workdir / "samples").glob("step_*.png"))[-1])
    assert grid.shape[1] == 5 * (32 + 2) + 2  # x, y, ŷ, x̌, ẍ
    assert (workdir / "checkpoints" / str(steps)).is_dir()
    ck = load_checkpoint(workdir / "model.pfj")
    assert ck.mode == mode and ck.meta["steps"] == steps and ck.config.num_blocks == 1
    assert "val/protect_psnr" in ck.meta["val"]
    assert (workdir / "best.pfj").exists()


# --------------------------------------------------------------------------- (1) smoke runs


def test_smoke_mock_celeb_a_with_lpips(tmp_path, lpips_params):  # noqa: F811
    """The one run with LPIPS on: in the loss (ObfsWR, all of its terms) and in the validation."""
    tfds = pytest.importorskip("tensorflow_datasets")
    c = _smoke("tfds:celeb_a", mode="obfswr", num_train_steps=2, **{"loss.use_lpips": True, "eval_lpips": True})
    with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
        out = train.train_and_evaluate(c, tmp_path, lpips_params=lpips_params)
    _check_outputs(tmp_path, 2, "obfswr")
    val = out["val"]
    assert {"val/protect_lpips", "val/wr_triplet_wrong", "val/wr_triplet_right", "val/p_lpips"} <= set(val)
    train_rec = [r for r in _jsonl(tmp_path) if r["kind"] == "train"][-1]
    assert np.isfinite(train_rec["p_lpips"]) and np.isfinite(train_rec["wr_triplet_wrong"])


def test_smoke_utkface_folder(tmp_path, utkface_dir):
    files = sorted(p for p in utkface_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:16]
    faces = tmp_path / "faces"
    faces.mkdir()
    for f in files:  # read by path: links, never copies
        (faces / f.name).symlink_to(f)
    out = train.train_and_evaluate(_smoke(f"folder:{faces}", num_train_steps=2), tmp_path / "work")
    assert out["step"] == 2
    _check_outputs(tmp_path / "work", 2)


# --------------------------------------------------------------------------- (2) exact resume


def test_resume_equals_straight_run(tmp_path, synthetic_faces):
    n = 3
    data = f"folder:{synthetic_faces}"
    # checkpoint_every > 2n: the resumed run can only start from the checkpoint written at the stop.
    common = {"checkpoint_every": 100, "eval_every": 100, "sample_every": 100}
    train.train_and_evaluate(_smoke(data, num_train_steps=n, **common), tmp_path / "a")
    resumed = train.train_and_evaluate(_smoke(data, num_train_steps=2 * n, **common), tmp_path / "a")
    straight = train.train_and_evaluate(_smoke(data, num_train_steps=2 * n, **common), tmp_path / "b")
    assert int(resumed["state"].step) == int(straight["state"].step) == 2 * n
    flat_r = jax.tree_util.tree_leaves(jax.device_get(resumed["state"]))
    flat_s = jax.tree_util.tree_leaves(jax.device_get(straight["state"]))
    for a, b in zip(flat_r, flat_s):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-7)
    # The training changed the params (so the comparison means something).
    init = init_params(jax.random.split(jax.random.key(0), 3)[0], train.flow_config(_smoke(data)))
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(straight["state"].params)))
    assert moved > 1e-5
    # The resumed run's log has each step once.
    steps = [r["step"] for r in _jsonl(tmp_path / "a") if r["kind"] == "train"]
    assert steps == list(range(1, 2 * n + 1))


def test_time_limit_stops_cleanly_and_resumes(tmp_path, synthetic_faces):
    """A run past its wall-time limit ends like a finished one (eval, checkpoint, model.pfj) at the
    step it reached, and a later run without the limit resumes from there to num_train_steps."""
    data = f"folder:{synthetic_faces}"
    common = {"checkpoint_every": 100, "eval_every": 100, "sample_every": 100, "log_every": 100}
    first = train.train_and_evaluate(_smoke(data, num_train_steps=5, time_limit_s=1e-9, **common), tmp_path / "w")
    assert int(first["state"].step) == 1  # the limit is checked after each step: one step, then stop
    recs = _jsonl(tmp_path / "w")
    assert [r["step"] for r in recs if r["kind"] == "time_limit"] == [1]
    assert [r["step"] for r in recs if r["kind"] == "eval"] == [1]
    assert (tmp_path / "w" / "checkpoints" / "1").is_dir()
    assert load_checkpoint(tmp_path / "w" / "model.pfj").meta["steps"] == 1
    done = train.train_and_evaluate(_smoke(data, num_train_steps=3, **common), tmp_path / "w")
    assert int(done["state"].step) == 3
    assert [r["step"] for r in _jsonl(tmp_path / "w") if r["kind"] == "train"] == [1, 3]


def test_init_from_starts_at_the_given_model(tmp_path, synthetic_faces):
    """Warm start: step 0 of the new run has the .pfj's params, a fresh optimiser and its own mode."""
    data = f"folder:{synthetic_faces}"
    common = {"checkpoint_every": 100, "eval_every": 100, "sample_every": 100}
    train.train_and_evaluate(_smoke(data, num_train_steps=2, **common), tmp_path / "randwr")
    src = load_checkpoint(tmp_path / "randwr" / "model.pfj")
    c = _smoke(data, mode="obfswr", num_train_steps=1, init_from=str(tmp_path / "randwr" / "model.pfj"), **common)
    state = train.create_train_state(jax.random.key(5), c)
    for a, b in zip(jax.tree_util.tree_leaves(src.params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(state.step) == 0
    out = train.train_and_evaluate(c, tmp_path / "obfswr")
    assert int(out["state"].step) == 1 and load_checkpoint(tmp_path / "obfswr" / "model.pfj").mode == "obfswr"
    with pytest.raises(ValueError, match="flow config"):
        train.create_train_state(jax.random.key(5), _smoke(data, init_from=str(tmp_path / "randwr" / "model.pfj"),
                                                           **{"flow.num_blocks": 2}))


# --------------------------------------------------------------------------- (3) sharded step

SHARDED_SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, {repo!r})
    from proface_jax import training as train
    from experiments.configs import smoke

    assert jax.device_count() == 8, jax.devices()
    c = smoke.get_config()
    c.batch_size = 8
    # Adam's first steps are ~lr·g/(|g| + eps) per element: for near-zero gradients (the zero-initialised
    # last convs) summation-order noise becomes an update difference of a sizeable fraction of lr
    # (2.6e-5 at eps 1e-8 on one machine here). A large eps keeps the comparison well-conditioned; a
    # sharding bug (say, gradients not all-reduced) still moves params by ~lr = 1e-4, far past the bound.
    c.optim.eps = 1e-3
    state0 = train.create_train_state(jax.random.key(0), c)
    g = np.random.default_rng(0)
    x = np.tanh(g.normal(size=(8, 32, 32, 3))).astype(np.float32)
    y = (0.5 * x + 0.1).astype(np.float32)
    out = {{}}
    for name, devices in (("eight", jax.devices()), ("one", jax.devices()[:1])):
        mesh = train.make_mesh(8, devices)
        step = train.make_train_step(c, mesh)
        state = train.replicate(state0, mesh)
        hist = []
        for s in range(2):
            batch = train.shard_batch({{"x": x, "y": y}}, mesh)
            if name == "eight":
                assert len(batch["x"].sharding.device_set) == 8
                assert batch["x"].addressable_shards[0].data.shape[0] == 1
            state, m = step(state, batch, jax.random.fold_in(jax.random.key(1), s))
            hist.append({{k: float(v) for k, v in m.items()}})
        if name == "eight":
            assert len(jax.tree_util.tree_leaves(state.params)[0].sharding.device_set) == 8
        out[name] = (jax.device_get(state), hist)
    leaves8 = jax.tree_util.tree_leaves(out["eight"][0])
    leaves1 = jax.tree_util.tree_leaves(out["one"][0])
    diff = max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()) for a, b in zip(leaves8, leaves1))
    scale = max(float(np.abs(np.asarray(b)).max()) for b in leaves1)
    print(json.dumps({{"param_diff": diff, "param_scale": scale, "metrics8": out["eight"][1], "metrics1": out["one"][1]}}))
""")


def test_sharded_step_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT.format(repo=str(REPO))], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["param_diff"] < 5e-6, res["param_diff"]  # summation order only
    for m8, m1 in zip(res["metrics8"], res["metrics1"]):
        assert m8.keys() == m1.keys()
        for k in m8:
            assert m8[k] == pytest.approx(m1[k], rel=1e-5, abs=1e-7), k


# --------------------------------------------------------------------------- (4) loss terms


def test_protection_loss_zero_at_identity_init(lpips_params):  # noqa: F811
    """Each block starts as the identity, so ŷ = y (to float rounding) and L_P ≈ 0 with LPIPS on."""
    g = np.random.default_rng(0)
    x = np.tanh(g.normal(size=(2, 32, 32, 3))).astype(np.float32)
    y = np.clip(x * 0.3 + 0.2, -1, 1).astype(np.float32)
    from proface_jax import keys

    params = init_params(jax.random.key(0), {"num_blocks": 2})
    K = keys.random_key(jax.random.key(1), 2, 32, 32)
    protected, _ = protect(params, jnp.asarray(x), jnp.asarray(y), K)
    cfg = losses.LossConfig(use_lpips=True)
    l_p, terms = losses.protection_loss(protected, jnp.asarray(y), lpips_params, cfg)
    assert float(terms["p_l1"]) < 1e-6 and float(terms["p_lpips"]) < 1e-6 and float(l_p) < 1e-5
    # LPIPS of an image with itself is exactly 0, so L_P(y, y) is exactly 0.
    l_same, _ = losses.protection_loss(jnp.asarray(y), jnp.asarray(y), lpips_params, cfg)
    assert float(l_same) == 0.0


def test_triplet_hinges():
    # Must be zero: the negative is farther than the positive by more than the margin.
    assert float(losses.triplet(jnp.array([0.1, 0.2]), jnp.array([2.0, 1.5]), 1.0)) == 0.0
    # Must be positive: the negative is too close.
    assert float(losses.triplet(jnp.array([0.5]), jnp.array([0.6]), 1.0)) == pytest.approx(0.9)
    # Per image vs batch means: one far sample pays for a close one only with batch means.
    d_ap, d_an = jnp.array([0.0, 0.0]), jnp.array([3.0, 0.0])
    assert float(losses.triplet(d_ap, d_an, 1.0, "per_image")) == pytest.approx(0.5)
    assert float(losses.triplet(d_ap, d_an, 1.0, "batch_mean")) == 0.0


def test_randwr_l1_triplet_and_clamping():
    x = jnp.asarray(np.where(np.random.default_rng(0).random((2, 16, 16, 3)) > 0.5, 0.5, -0.5), jnp.float32)
    y = jnp.zeros_like(x)
    cfg = losses.LossConfig(mode="randwr", use_lpips=False, margin=1.0, wrong_on_clamped=False)
    # Right recovery exact, wrong recovery as far as a viewer can see (-sign(x) at ±1): d = 1.5 > 1.
    _, t = losses.total_loss(x, y, y, x, -2 * x, None, cfg)
    assert float(t["wr_triplet_l1"]) == 0.0 and float(t["L_R"]) == 0.0
    # Wrong recovery = x: the hinge is the whole margin.
    _, t = losses.total_loss(x, y, y, x, x, None, cfg)
    assert float(t["wr_triplet_l1"]) == pytest.approx(1.0)
    # Pushed far out of range in x's direction: raw L1 meets the margin, the clamped image (= 2x, a
    # plain copy of the face) does not; wrong_on_clamped sees that.
    far = x + 20 * jnp.sign(x)
    _, raw = losses.total_loss(x, y, y, x, far, None, cfg)
    _, clamped = losses.total_loss(x, y, y, x, far, None, losses.LossConfig(mode="randwr", use_lpips=False))
    assert float(raw["wr_triplet_l1"]) == 0.0
    assert float(clamped["wr_triplet_l1"]) == pytest.approx(1.0 - 0.5)
    assert losses.LossConfig(mode="randwr").clamp_wrong and not losses.LossConfig(mode="obfswr").clamp_wrong
    # ObfsWR without LPIPS: L_WR = L1(ẍ, y); in L_R instead with the authors' placement.
    _, t = losses.total_loss(x, y, y, x, x, None, losses.LossConfig(mode="obfswr", use_lpips=False))
    assert float(t["L_WR"]) == pytest.approx(0.5) and float(t["L_R"]) == 0.0
    _, t = losses.total_loss(x, y, y, x, x, None, losses.LossConfig(mode="obfswr", use_lpips=False,
                                                                     obfswr_l1_in_recovery=True))
    assert float(t["L_WR"]) == 0.0 and float(t["L_R"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="LPIPS params"):
        losses.total_loss(x, y, y, x, x, None, losses.LossConfig(use_lpips=True))


def test_randwr_decorrelation_and_l1_margin(utkface_faces):
    x = jnp.asarray(images.to_unit(utkface_faces(4, 32)))
    noise = jax.random.uniform(jax.random.key(1), x.shape, minval=-1.0, maxval=1.0)
    # Squared correlation: a copy and a negative copy of x are equally bad (the attack is sign-blind),
    # an independent noise image is nearly free; a scaled copy is as bad as the copy.
    assert float(losses.decorrelation_loss(x, x)) == pytest.approx(2.0, abs=1e-4)
    assert float(losses.decorrelation_loss(-x, x)) == pytest.approx(2.0, abs=1e-4)
    assert float(losses.decorrelation_loss(0.3 * x + 0.1, x)) == pytest.approx(2.0, abs=1e-4)
    assert float(losses.decorrelation_loss(noise, x)) < 0.05
    cfg = losses.LossConfig(mode="randwr", use_lpips=False, wr_l1_margin=0.5, wr_decorrelate=2.0)
    _, t = losses.total_loss(x, x, x, x, -x, None, cfg)
    assert float(t["wr_decorrelation"]) == pytest.approx(2.0, abs=1e-4)
    l1 = float(jnp.mean(losses.l1_per_image(x, -x)))
    assert float(t["wr_triplet_l1"]) == pytest.approx(max(0.5 - l1, 0.0), abs=1e-6)
    assert float(t["L_WR"]) == pytest.approx(float(t["wr_triplet_l1"]) + 2.0 * 2.0, abs=1e-3)
    # The decorrelation sees the clamped image even when the hinge sees the raw one: a face pushed
    # far out of range (which meets the raw hinge) is still a copy of x once clamped.
    raw_cfg = losses.LossConfig(mode="randwr", use_lpips=False, wrong_on_clamped=False, wr_decorrelate=1.0)
    _, t = losses.total_loss(x, x, x, x, 50.0 * x, None, raw_cfg)
    assert float(t["wr_triplet_l1"]) == 0.0 and float(t["wr_decorrelation"]) > 1.5
    # Off by default (the paper's loss): no such term, and the L1 margin is `margin`.
    _, t0 = losses.total_loss(x, x, x, x, x, None, losses.LossConfig(mode="randwr", use_lpips=False))
    assert "wr_decorrelation" not in t0 and float(t0["wr_triplet_l1"]) == pytest.approx(1.0)


def test_decorrelation_fixed_thumbnails(utkface_faces):
    # At 112×112 the default 4×4 pool gives 28×28 thumbnails; a leak of the low-frequency face (what a
    # 16×16 thumbnail attacker matches on) shows far more at a fixed 16×16 size.
    x = jnp.asarray(images.to_unit(utkface_faces(4, 112)))
    noise = jax.random.uniform(jax.random.key(1), x.shape, minval=-1.0, maxval=1.0)
    low = jax.image.resize(jax.image.resize(x, (4, 16, 16, 3), "linear", antialias=True), x.shape, "linear")
    leak = noise + 0.15 * low
    full = float(jnp.mean(losses.pearson_per_image(leak, x) ** 2))
    pooled = float(losses.decorrelation_loss(leak, x)) - full
    fixed16 = float(losses.decorrelation_loss(leak, x, (16,))) - full
    assert fixed16 > 1.5 * pooled
    # One term per size (32 does not divide 112: the resize path), each 1 for a copy, small for noise.
    assert float(losses.decorrelation_loss(x, x, (8, 16, 32))) == pytest.approx(4.0, abs=1e-4)
    assert float(losses.decorrelation_loss(noise, x, (8, 16, 32))) < 0.1
    g = jax.grad(lambda w: losses.decorrelation_loss(w, x, (8, 16, 32)))(leak)
    assert bool(jnp.all(jnp.isfinite(g))) and float(jnp.max(jnp.abs(g))) > 0
    cfg = losses.LossConfig(mode="randwr", use_lpips=False, wr_decorrelate=1.0, decorrelate_thumbs=[16, 8])
    assert cfg.decorrelate_thumbs == (16, 8)
    _, t = losses.total_loss(x, x, x, x, leak, None, cfg)
    assert float(t["wr_decorrelation"]) == pytest.approx(
        float(losses.decorrelation_loss(jnp.clip(leak, -1.0, 1.0), x, (16, 8))), rel=1e-5)  # on the clamped ẍ
    with pytest.raises(ValueError, match="decorrelate_thumbs"):
        losses.LossConfig(decorrelate_thumbs=(1,))


def test_reid_hinge_charges_only_a_standing_out_true_face(utkface_faces):
    # The in-batch thumbnail attack: ẍ_i is charged for matching x_i better than the batch's
    # other faces, not for looking like a face in general.
    x = jnp.asarray(images.to_unit(utkface_faces(6, 112)))
    noise = jax.random.uniform(jax.random.key(2), x.shape, minval=-1.0, maxval=1.0)
    low = jax.image.resize(jax.image.resize(x, (6, 16, 16, 3), "linear", antialias=True), x.shape, "linear")
    thumbs = (8, 16, 32)
    copy = float(losses.reid_hinge_loss(x, x, thumbs))
    leak = float(losses.reid_hinge_loss(noise + 0.3 * low, x, thumbs))
    clean = float(losses.reid_hinge_loss(noise, x, thumbs))
    assert copy > 1.0 and copy > leak > 2.0 * clean
    # Someone else's face (x_{i+1}) does not stand out for x_i: far below the leak of x_i itself.
    other = float(losses.reid_hinge_loss(jnp.roll(x, 1, axis=0), x, thumbs))
    assert other < 0.5 * leak
    # Its gradient does not fade as the leak shrinks (a 4× smaller leak keeps over half of it).
    hinge_grad = jax.grad(lambda w: losses.reid_hinge_loss(w, x, thumbs))
    big, small = hinge_grad(noise + 0.3 * low), hinge_grad(noise + 0.075 * low)
    assert bool(jnp.all(jnp.isfinite(small)))
    assert float(jnp.linalg.norm(small)) > 0.5 * float(jnp.linalg.norm(big))
    cfg = losses.LossConfig(mode="randwr", use_lpips=False, wr_reid_hinge=2.0, decorrelate_thumbs=thumbs)
    _, t = losses.total_loss(x, x, x, x, 3.0 * (noise + 0.3 * low), None, cfg)
    assert float(t["wr_reid_hinge"]) == pytest.approx(
        float(losses.reid_hinge_loss(jnp.clip(3.0 * (noise + 0.3 * low), -1.0, 1.0), x, thumbs)), rel=1e-5)
    _, t0 = losses.total_loss(x, x, x, x, noise, None, losses.LossConfig(mode="randwr", use_lpips=False))
    assert "wr_reid_hinge" not in t0
    with pytest.raises(ValueError, match="at least 2"):
        losses.reid_hinge_loss(x[:1], x[:1])


def test_obfswr_residual_decorrelation(utkface_faces):
    """The ObfsWR leak term charges a wrong recovery for carrying x's difference from y."""
    x = jnp.asarray(images.to_unit(utkface_faces(4, 32)))
    y = jnp.asarray(images.to_unit(utkface_faces(4, 32)[::-1]))  # another face: x − y is structured
    noise = 0.05 * jax.random.uniform(jax.random.key(2), x.shape, minval=-1.0, maxval=1.0)
    # ẍ = x (the key-independent solution) scores the maximum, 2 (full size + thumbnails), and so does
    # any mix y + a·(x − y): the term is scale-free, it charges the direction of the leak.
    assert float(losses.residual_decorrelation_loss(x, x, y)) == pytest.approx(2.0, abs=1e-4)
    assert float(losses.residual_decorrelation_loss(y + 0.1 * (x - y), x, y)) == pytest.approx(2.0, abs=1e-3)
    # y plus independent noise (what ObfsWR asks for) is nearly free.
    assert float(losses.residual_decorrelation_loss(y + noise, x, y)) < 0.05
    cfg = losses.LossConfig(mode="obfswr", use_lpips=False, obfs_decorrelate=1.5)
    _, t = losses.total_loss(x, y, y, x, x, None, cfg)
    assert float(t["wr_residual_decorrelation"]) == pytest.approx(2.0, abs=1e-4)
    assert float(t["L_WR"]) == pytest.approx(float(t["wr_l1"]) + 1.5 * 2.0, abs=1e-3)
    # Its gradient pulls a leaking wrong recovery away from x: a small step down it lowers the leak.
    leaky = y + 0.1 * (x - y) + noise
    g = jax.grad(lambda w: losses.residual_decorrelation_loss(w, x, y))(leaky)
    before = float(losses.residual_decorrelation_loss(leaky, x, y))
    after = float(losses.residual_decorrelation_loss(leaky - 1e-3 * g / jnp.max(jnp.abs(g)), x, y))
    assert after < before
    # Off by default (the paper's ObfsWR loss).
    _, t0 = losses.total_loss(x, y, y, x, x, None, losses.LossConfig(mode="obfswr", use_lpips=False))
    assert "wr_residual_decorrelation" not in t0 and "wr_triplet_right_l1" not in t0


def test_obfswr_l1_triplets(utkface_faces):
    """L1 twins of the ObfsWR triplets: the collapse x̌ = ẍ = y pays the right-recovery hinge in full."""
    x = jnp.asarray(images.to_unit(utkface_faces(4, 32)))
    y = jnp.asarray(images.to_unit(utkface_faces(4, 32)[::-1]))
    m = 0.05
    cfg = losses.LossConfig(mode="obfswr", use_lpips=False, obfs_l1_triplet_margin=m)
    d_xy = losses.l1_per_image(x, y)
    assert float(jnp.min(d_xy)) > m  # so the wanted solution meets both hinges
    _, good = losses.total_loss(x, y, y, x, y, None, cfg)  # x̌ = x, ẍ = y
    assert float(good["wr_triplet_right_l1"]) == 0.0 and float(good["wr_triplet_wrong_l1"]) == 0.0
    _, to_y = losses.total_loss(x, y, y, y, y, None, cfg)  # key-independent: everything → y
    assert float(to_y["wr_triplet_right_l1"]) == pytest.approx(float(jnp.mean(d_xy)) + m, abs=1e-5)
    _, to_x = losses.total_loss(x, y, y, x, x, None, cfg)  # key-independent: everything → x
    assert float(to_x["wr_triplet_wrong_l1"]) == pytest.approx(float(jnp.mean(d_xy)) + m, abs=1e-5)


def test_straight_through_quantize_values_and_gradient():
    x = jnp.asarray([-1.7, -0.98, -0.3, 0.0011, 0.5, 0.999, 1.2], jnp.float32)
    np.testing.assert_array_equal(np.asarray(protocol.straight_through_quantize(x)), np.asarray(images.quantize(x)))
    g = jax.grad(lambda v: jnp.sum(protocol.straight_through_quantize(v) * jnp.arange(1.0, 8.0)))(x)
    # Straight through the rounding inside the range; zero outside it (the file cannot hold those values).
    np.testing.assert_array_equal(np.asarray(g), np.asarray([0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]))


def test_torch_rows_l1_triplet_matches_pytorch():
    torch = pytest.importorskip("torch")
    g = np.random.default_rng(1)
    a, p, n = (g.normal(size=(2, 8, 6, 3)).astype(np.float32) for _ in range(3))
    cfg = losses.LossConfig(mode="randwr", use_lpips=False, margin=1.2, l1_triplet="torch_rows",
                            wrong_on_clamped=False)
    ours = float(losses._l1_triplet(jnp.asarray(a), jnp.asarray(p), jnp.asarray(n), cfg))
    nchw = lambda v: torch.from_numpy(v.transpose(0, 3, 1, 2).copy())  # noqa: E731
    ref = float(torch.nn.TripletMarginLoss(margin=1.2, p=1)(nchw(a), nchw(p), nchw(n)))
    assert ours == pytest.approx(ref, rel=1e-5)


def test_configs_load():
    from experiments.configs import authors256, fast, paper112

    for mod in (paper112, authors256, fast, smoke):
        for mode in ("randwr", "obfswr"):
            c = mod.get_config(mode)
            lc = train.loss_config(c)
            assert lc.mode == mode and lc.lambdas == ((0.3, 0.5, 0.2) if mode == "randwr" else (0.2, 0.3, 0.5))
            train.make_optimizer(c)
            assert train.learning_rate_schedule(c)(0) >= 0
    p = paper112.get_config()
    assert (p.image_size, p.batch_size, p.flow.num_blocks, p.optim.lr, p.loss.margin, p.loss.beta) == (112, 12, 3, 1e-5, 1.0, 5.0)
    a = authors256.get_config()
    assert (a.image_size, a.batch_size, a.loss.margin, a.optim.eps, a.optim.weight_decay) == (256, 6, 1.2, 1e-6, 1e-5)
    f = fast.get_config()
    assert f.optim.lr == 3e-4 and f.optim.grad_clip == 1.0 and f.optim.schedule == "warmup_cosine"
    assert Path(p.data.split(":", 1)[1]).is_absolute()


# --------------------------------------------------------------------------- (5) explosion guard


def test_guard_rolls_back_on_nan(tmp_path, synthetic_faces):
    c = _smoke(f"folder:{synthetic_faces}", num_train_steps=5, checkpoint_every=2, eval_every=100,
               sample_every=100, **{"debug.inject_nan_at_step": 3})
    out = train.train_and_evaluate(c, tmp_path)
    events = [r for r in _jsonl(tmp_path) if r["kind"] == "rollback"]
    assert len(events) == 1 and events[0]["step"] == 3 and events[0]["restored_step"] == 2
    assert "non-finite" in events[0]["reason"]
    assert out["rollbacks"] == 1 and out["lr_scale"] == pytest.approx(0.5) and out["step"] == 5
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree_util.tree_leaves(out["state"].params))
    assert float(out["state"].lr_scale) == pytest.approx(0.5)


def test_loss_guard_jump_rule():
    g = train.LossGuard(window=10, min_history=3, factor=5.0)
    assert g.check(100.0) is None  # no history yet: only NaN/Inf are caught
    for v in (1.0, 1.2, 0.9):
        g.update(v)
    assert g.check(4.0) is None
    assert "running median" in g.check(6.0)
    assert "non-finite" in g.check(float("inf"))

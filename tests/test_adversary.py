"""proface_jax.adversary: the keyless attacker a training run can play against (issue 24 (b)).

The advantage term is checked against values worked out by hand (an attacker that passes its
input through), its gradient is checked to reach ŷ and never the attacker, the attacker's own
update is checked to learn, and a training run with it on is checked to carry the attacker
through a checkpoint (stop + resume = straight run).
"""
from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from experiments.configs import smoke  # noqa: E402
from proface_jax import adversary, images  # noqa: E402
from proface_jax import training as train  # noqa: E402
from proface_jax.training import step as step_mod  # noqa: E402
from proface_jax.training.state import step_config  # noqa: E402

WIDTH = 4


def _identity_attacker(seed=0):
    """AttackNet's output is input + last conv: with that conv zeroed it returns its input."""
    p = adversary.init_params(WIDTH, (16, 16, 3), seed)
    last = sorted(p, key=lambda k: int(k.split("_")[1]))[-1]
    p[last] = jax.tree_util.tree_map(jnp.zeros_like, p[last])
    return p


def _faces(n=3, size=16, seed=0):
    g = np.random.default_rng(seed)
    x = jnp.asarray(g.uniform(-1, 1, (n, size, size, 3)), jnp.float32)
    y = jnp.asarray(g.uniform(-1, 1, (n, size, size, 3)), jnp.float32)
    return x, y


def test_advantage_by_hand():
    p = _identity_attacker()
    x, y = _faces()
    np.testing.assert_allclose(adversary.apply(p, y, WIDTH), y, atol=0)
    l1_yx = np.mean(np.abs(np.asarray(y) - np.asarray(x)))
    # ŷ = x: the attacker reads x exactly, y's L1 to x is its whole advantage.
    assert float(adversary.advantage(p, x, y, x, WIDTH)) == pytest.approx(l1_yx, rel=1e-6)
    # ŷ = y: nothing beyond y.
    assert float(adversary.advantage(p, y, y, x, WIDTH)) == 0.0
    # ŷ farther from x than y is: hinged at 0, no reward for fooling the attacker.
    assert float(adversary.advantage(p, -x, y, x, WIDTH)) == 0.0
    # Halfway: half the advantage (per image, all positive here).
    half = 0.5 * (x + y)
    assert float(adversary.advantage(p, half, y, x, WIDTH)) == pytest.approx(0.5 * l1_yx, rel=1e-5)


@pytest.mark.parametrize("jit", [False, True])
def test_advantage_gradient_reaches_stored_not_attacker(jit):
    p = adversary.init_params(WIDTH, (16, 16, 3), 1)
    x, y = _faces(seed=1)
    stored = 0.7 * x + 0.3 * y
    fn = lambda pp, s: adversary.advantage(pp, s, y, x, WIDTH)
    grad = jax.grad(fn, argnums=(0, 1))
    if jit:
        grad = jax.jit(grad)
    g_params, g_stored = grad(p, stored)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(g_params))
    assert float(jnp.abs(g_stored).max()) > 0.0


def _config(**adv):
    c = smoke.get_config()
    c.image_size = 16
    c.adversary.weight = 1.0
    c.adversary.width = WIDTH
    for k, v in adv.items():
        c.adversary[k] = v
    return c


def test_attacker_update_learns_and_is_deterministic():
    c = _config(updates=5, lr=3e-3)
    x, y = _faces(n=4, seed=2)
    stored = y + 0.05 * x  # a leaky ŷ: x is readable from it
    s0 = adversary.init_state(c)
    s1, l_first = adversary.update(s0, stored, x, c)
    for _ in range(10):
        s1, l_last = adversary.update(s1, stored, x, c)
    assert float(l_last) < 0.9 * float(l_first)
    s1b, l_first_b = adversary.update(adversary.init_state(c), stored, x, c)
    assert float(l_first_b) == float(l_first)


def test_loss_adds_weighted_advantage():
    c = _config(weight=3.0)
    x, y = _faces(n=2, size=16, seed=3)
    params = train.create_train_state(jax.random.key(0), c).params
    batch = {"x": x, "y": y}
    p_att = _identity_attacker()
    cfg = step_config(c)
    total_off, (terms_off, _) = step_mod.loss_fn(params, batch, jax.random.key(1), None, cfg)
    total_on, (terms_on, stored) = step_mod.loss_fn(params, batch, jax.random.key(1), None, cfg, p_att)
    adv = float(adversary.advantage(p_att, stored, y, x, WIDTH))
    assert adv > 0  # at init ŷ ≈ y, yet 8-bit ŷ carries a trace of x
    assert float(terms_on["adv_advantage"]) == pytest.approx(adv, rel=1e-6)
    assert float(total_on) == pytest.approx(float(total_off) + 3.0 * adv, rel=1e-6)
    assert float(terms_on["loss_adversarial"]) == float(total_on)
    assert float(terms_on["loss"]) == float(total_off)  # what the explosion guard watches


def test_bad_adversary_config_is_named():
    with pytest.raises(ValueError, match="adversary"):
        adversary.init_state(_config(width=0))


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("adv_faces")
    g = np.random.default_rng(0)
    for k in range(24):
        images.save_png(root / f"face_{k:03d}.png", images.resize(g.uniform(0, 255, (5, 5, 3)).astype(np.uint8), (40, 40)))
    return root


def test_training_with_attacker_resumes_exactly(tmp_path, faces_dir):
    n = 2

    def cfg(steps):
        c = _config(updates=2)
        c.image_size = 32
        c.data = f"folder:{faces_dir}"
        c.num_train_steps = steps
        c.checkpoint_every = c.eval_every = c.sample_every = 100
        return c

    train.train_and_evaluate(cfg(n), tmp_path / "a")
    resumed = train.train_and_evaluate(cfg(2 * n), tmp_path / "a")
    straight = train.train_and_evaluate(cfg(2 * n), tmp_path / "b")
    att_r, att_s = jax.device_get(resumed["state"].adversary), jax.device_get(straight["state"].adversary)
    for a, b in zip(jax.tree_util.tree_leaves(att_r), jax.tree_util.tree_leaves(att_s)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-7)
    init = adversary.init_state(cfg(n))["params"]
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree_util.tree_leaves(init), jax.tree_util.tree_leaves(att_s["params"])))
    assert moved > 1e-4  # the attacker trained
    import json
    recs = [json.loads(ln) for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    tr = [r for r in recs if r["kind"] == "train"]
    assert all(np.isfinite(r["adv_l1"]) and r["adv_advantage"] >= 0 for r in tr)


def test_resume_with_other_adversary_settings_is_refused(tmp_path, faces_dir):
    c = smoke.get_config()
    c.data = f"folder:{faces_dir}"
    c.num_train_steps = 1
    c.checkpoint_every = c.eval_every = c.sample_every = 100
    train.train_and_evaluate(c, tmp_path)  # no adversary
    c.adversary.weight, c.adversary.width, c.num_train_steps = 1.0, WIDTH, 2
    with pytest.raises(ValueError, match="trained with no adversary"):
        train.train_and_evaluate(c, tmp_path)


def test_attacker_params_save_load_and_refusals(tmp_path):
    p = adversary.init_params(WIDTH, (16, 16, 3), 5)
    path = tmp_path / "att.msgpack"
    adversary.save_params(path, p)
    back = adversary.load_params(path, like=adversary.init_params(WIDTH, (16, 16, 3), 6))
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A training config picks them up (and a fresh Adam state).
    c = _config(init_from=str(path))
    st = adversary.init_state(c)
    np.testing.assert_array_equal(np.asarray(st["params"]["Conv_0"]["kernel"]), np.asarray(p["Conv_0"]["kernel"]))
    with pytest.raises(ValueError, match="do not fit an attacker of width 8"):
        adversary.load_params(path, like=adversary.init_params(8, (16, 16, 3), 0))
    bad = tmp_path / "bad.msgpack"
    bad.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match="not an attacker params file"):
        adversary.load_params(bad, like=p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        adversary.load_params(tmp_path / "missing", like=p)

"""Property tests of the flow in float32: every bijection's inverse, under jit and without.

Params are random (`testing.random_params`), with the scale subnets' last
conv multiplied by a drawn gain so that the soft clamp e(s) = exp(2·tanh(s/2))
is exercised: per coupling step and per block up to full saturation (gain 8:
over half the positions have |tanh(s/2)| > 0.95). For the whole 3-block flow the
gain is drawn up to 1 (|log e| up to ≈ 0.7·clamp): at saturation the composed
flow's condition number is ≈ e^(2·clamp·N) and float32 round-trip errors of
1e-3–1e-1 are rounding amplified by the function itself, not a wrong inverse —
the float64 module (test_flow_x64.py) checks the flow at full saturation.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import proface_jax
from proface_jax import coupling, flow, keys
from proface_jax.dwt import haar_dwt, haar_iwt
from _flow_cases import CONFIG, SHAPES, case, max_err

TOL32 = 1e-4
seeds = st.integers(0, 2**31 - 1)
shapes = st.sampled_from(SHAPES)

_protect = jax.jit(flow.protect, static_argnums=4)
_unprotect = jax.jit(flow.unprotect, static_argnums=4)
_recover = jax.jit(flow.recover, static_argnums=3)


def _maybe_jit(f, jit, static=()):
    return jax.jit(f, static_argnames=static) if jit else f


@given(seed=seeds, shape=shapes, scale=st.floats(0.5, 8.0), jit=st.booleans())
def test_coupling_step_inverts_at_saturation(seed, shape, scale, jit):
    params, x, y, K = case(seed, shape, scale, 0.5, 1.0)
    step = coupling.Coupling("y", "omega", "phi", clamp=2.0)
    fwd = _maybe_jit(step.forward, jit)
    inv = _maybe_jit(step.inverse, jit)
    z = (haar_dwt(x), haar_dwt(y))
    out, ld = fwd(params["block_0"], z, K)
    back, ld_inv = inv(params["block_0"], out, K)
    assert max_err(back[1], z[1]) <= TOL32 and max_err(back[0], z[0]) == 0  # the condition passes through
    assert max_err(out[1], z[1]) > 1e-2  # the step did something
    assert max_err(ld, -ld_inv) <= 1e-3 * float(jnp.max(jnp.abs(ld))) + 1e-4


@given(seed=seeds, shape=shapes, scale=st.floats(0.5, 8.0), jit=st.booleans())
def test_sacb_inverts_at_saturation(seed, shape, scale, jit):
    params, x, y, K = case(seed, shape, scale, 0.5, 1.0)
    fwd = _maybe_jit(coupling.sacb_forward, jit, ("clamp", "precision"))
    inv = _maybe_jit(coupling.sacb_inverse, jit, ("clamp", "precision"))
    X, Y = haar_dwt(x), haar_dwt(y)
    X1, Y1 = fwd(params["block_0"], X, Y, K, clamp=2.0)
    X0, Y0 = inv(params["block_0"], X1, Y1, K, clamp=2.0)
    assert max(max_err(X0, X), max_err(Y0, Y)) <= TOL32


@given(seed=seeds, shape=shapes, scale=st.floats(0.1, 1.0), shift=st.floats(0.01, 0.2), jit=st.booleans())
def test_unprotect_inverts_protect(seed, shape, scale, shift, jit):
    params, x, y, K = case(seed, shape, scale, shift, 0.5)
    prot, unprot = (_protect, _unprotect) if jit else (flow.protect, flow.unprotect)
    protected, byproduct = prot(params, x, y, K, CONFIG)
    x2, y2 = unprot(params, protected, byproduct, K, CONFIG)
    assert max(max_err(x2, x), max_err(y2, y)) <= TOL32
    assert max_err(protected, y) > 1e-3  # not the identity


@given(seed=seeds, shape=shapes)
def test_jit_and_eager_agree(seed, shape):
    params, x, y, K = case(seed, shape, 1.0, 0.2, 0.5)
    a = flow.protect(params, x, y, K, CONFIG)
    b = _protect(params, x, y, K, CONFIG)
    for u, v in zip(a, b):
        assert max_err(u, v) <= 1e-5


@given(seed=seeds, shape=shapes)
def test_recover_is_unprotect_with_the_key_standing_in_for_the_byproduct(seed, shape):
    params, x, y, K = case(seed, shape, 1.0, 0.2, 0.5)
    protected, _ = _protect(params, x, y, K, CONFIG)
    stand_in = haar_iwt(flow.key_stand_in(K, shape))
    expect = _unprotect(params, protected, stand_in, K, CONFIG)
    got = _recover(params, protected, K, CONFIG)
    for u, v in zip(got, expect):
        assert max_err(u, v) <= 1e-6


# Measured over 8 seeds × 2 shapes: a wrong key changes unprotect's x by ≥ 0.3 max-abs
# (typically 1–10) at these gains; 0.05 is far above float32 rounding (≤ 1e-5 here).
WRONG_KEY_MIN_CHANGE = 0.05


@given(seed=seeds, shape=shapes)
def test_wrong_key_gives_a_clearly_different_inverse(seed, shape):
    params, x, y, K = case(seed, shape, 1.0, 0.2, 0.5)
    protected, byproduct = _protect(params, x, y, K, CONFIG)
    wrong = keys.random_key(jax.random.key(seed + 1), shape[0], shape[1], shape[2])
    x_wrong, _ = _unprotect(params, protected, byproduct, wrong, CONFIG)
    x_right, _ = _unprotect(params, protected, byproduct, K, CONFIG)
    assert max_err(x_right, x) <= TOL32
    assert max_err(x_wrong, x) > WRONG_KEY_MIN_CHANGE


def test_at_init_protected_equals_obfuscated():
    params = proface_jax.init_params(jax.random.key(0))
    _, x, y, K = case(0, SHAPES[0], 1.0, 0.2, 0.5)
    protected, byproduct = _protect(params, x, y, K, CONFIG)
    assert max_err(protected, y) <= 1e-6
    assert max_err(byproduct, x) <= 1e-6


def test_parameter_count_is_the_papers():
    params = proface_jax.init_params(jax.random.key(0))
    assert proface_jax.param_count(params) == 1_073_040
    assert proface_jax.param_count(params["block_0"]["omega"]) == 89_420
    assert proface_jax.param_count(proface_jax.init_params(jax.random.key(0), {"num_blocks": 2})) == 2 * 357_680


def test_authors_init_statistics():
    p = proface_jax.init_params(jax.random.key(0))["block_1"]["rho"]
    assert not np.any(p["conv5"]["kernel"]) and not np.any(p["conv5"]["bias"])
    k = np.asarray(p["conv2"]["kernel"])
    assert abs(k.std() - 0.01) < 1e-3 and abs(k.mean()) < 1e-3
    assert abs(np.asarray(p["conv1"]["bias"]).std() - 0.01) < 3e-3  # biases too, as the authors' code


@pytest.mark.parametrize("bad,match", [
    (dict(x=jnp.zeros((1, 15, 16, 3))), "even"),
    (dict(x=jnp.zeros((1, 16, 16, 4))), "RGB"),
    (dict(x=jnp.zeros((16, 16, 3))), "rank 4"),
    (dict(K=jnp.zeros((1, 4, 4, 4))), "K must have shape"),
])
def test_bad_inputs_are_clear_errors(bad, match):
    params = proface_jax.init_params(jax.random.key(0), {"num_blocks": 1})
    args = dict(x=jnp.zeros((1, 16, 16, 3)), y=jnp.zeros((1, 16, 16, 3)), K=jnp.zeros((1, 8, 8, 4)))
    args.update(bad)
    if args["x"].shape != args["y"].shape and "x" in bad:
        args["y"] = args["x"]
    with pytest.raises(ValueError, match=match):
        flow.protect(params, args["x"], args["y"], args["K"])

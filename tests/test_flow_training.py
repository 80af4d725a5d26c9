"""The flow's training-time paths: reversible backprop and recovery under several keys.

* `FlowConfig(reversible_backprop=True)` changes how gradients are computed (the
  backward pass rebuilds each coupling step's input from its output with the exact
  inverse), never the values: outputs are identical, and gradients of a training-style
  loss through protect and recover (right and wrong key) match autodiff's to float32
  rounding (≤ 1e-5 relative), for params and inputs alike.
* `recover_keys` (one inverse pass over the stacked batch) equals `recover` per key.
* Old checkpoint headers (without the field) still give the default config.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proface_jax import flow
from _flow_cases import case, max_err

SHAPE = (2, 8, 8, 3)
# one block keeps compile times short; every step kind (forward/inverse, cond X/Y) is
# still exercised, and the steps rebuild one another's inputs in the backward pass
PLAIN = flow.FlowConfig(num_blocks=1)
REV = flow.FlowConfig(num_blocks=1, reversible_backprop=True)


def _case(seed):
    params, x, y, K = case(seed, SHAPE, 1.0, 0.2, 0.5)
    return {"block_0": params["block_0"]}, x, y, K


def _loss(cfg, K_wrong):
    def f(params, x, y, K):
        protected, byproduct = flow.protect(params, x, y, K, cfg)
        recovered, _ = flow.recover(params, protected, K, cfg)
        wrong, wrong_by = flow.recover(params, protected, K_wrong, cfg)
        return (jnp.mean(jnp.abs(protected - y)) + jnp.mean(jnp.abs(recovered - x))
                + jnp.mean((wrong - y) ** 2) + 0.1 * jnp.mean(byproduct ** 2) + 0.1 * jnp.mean(wrong_by))
    return f


def test_reversible_backprop_gradients_match_autodiff():
    params, x, y, K = _case(0)
    K_wrong = -jnp.flip(K, 1)
    g_ref = jax.jit(jax.value_and_grad(_loss(PLAIN, K_wrong), argnums=(0, 1, 2, 3)))(params, x, y, K)
    g_rev = jax.jit(jax.value_and_grad(_loss(REV, K_wrong), argnums=(0, 1, 2, 3)))(params, x, y, K)
    assert float(g_ref[0]) == float(g_rev[0])  # the values are not touched
    ref, rev = jax.tree_util.tree_leaves(g_ref[1]), jax.tree_util.tree_leaves(g_rev[1])
    assert len(ref) == len(rev) == 4 * 10 + 3
    for a, b in zip(ref, rev):
        scale = float(jnp.max(jnp.abs(a)))
        assert scale > 0
        assert max_err(a, b) <= 1e-5 * scale


def test_reversible_backprop_values_equal_and_default_is_off():
    params, x, y, K = _case(3)
    a = flow.protect(params, x, y, K, PLAIN)
    b = flow.protect(params, x, y, K, REV)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert flow.FlowConfig().reversible_backprop is False
    old_header = {"num_blocks": 3, "clamp": 2.0, "init_scale": 0.01, "precision": "highest"}
    assert flow.FlowConfig.from_any(old_header) == flow.FlowConfig()


def test_recover_keys_equals_recover_per_key():
    params, x, y, K = _case(4)
    protected, _ = jax.jit(flow.protect, static_argnums=4)(params, x, y, K, PLAIN)
    K_wrong = -K
    K_one = K[:1]  # a [1, ...] key broadcast to the batch
    outs = jax.jit(flow.recover_keys, static_argnums=3)(params, protected, (K, K_wrong, K_one), PLAIN)
    assert len(outs) == 3
    for (xr, yr), k in zip(outs, (K, K_wrong, K_one)):
        ex, ey = jax.jit(flow.recover, static_argnums=3)(params, protected, k, PLAIN)
        assert xr.shape == ex.shape == SHAPE
        assert max_err(xr, ex) <= 1e-5 and max_err(yr, ey) <= 1e-5
    assert max_err(outs[0][0], outs[1][0]) > 0.1  # the keys did matter
    with pytest.raises(ValueError, match="K must have shape"):
        flow.recover_keys(params, protected, (K[:, :2],), PLAIN)


@pytest.mark.parametrize("name", ["glow", "additive"])
def test_reversible_backprop_gradients_match_autodiff_for_variants(name):
    """The generic chain VJP: couplings rebuild their input (affine_sigmoid / additive), the inv1x1
    mixer through its inverse; gradients match autodiff's for params and inputs alike."""
    from proface_jax import variants
    from proface_jax.testing import random_params

    plain = variants.get(name, num_blocks=2)
    rev = variants.get(name, num_blocks=2, reversible_backprop=True)
    _, x, y, K = case(5, SHAPE, 1.0, 0.2, 0.5)
    params = random_params(jax.random.key(5), plain, 1.0, 0.2, 0.5)
    K_wrong = -jnp.flip(K, 1)
    g_ref = jax.jit(jax.value_and_grad(_loss(plain, K_wrong), argnums=(0, 1, 2, 3)))(params, x, y, K)
    g_rev = jax.jit(jax.value_and_grad(_loss(rev, K_wrong), argnums=(0, 1, 2, 3)))(params, x, y, K)
    assert abs(float(g_ref[0]) - float(g_rev[0])) <= 1e-6 * abs(float(g_ref[0]))
    ref, got = jax.tree_util.tree_leaves(g_ref[1]), jax.tree_util.tree_leaves(g_rev[1])
    assert len(ref) == len(got)
    for a, b in zip(ref, got):
        scale = float(jnp.max(jnp.abs(a)))
        assert max_err(a, b) <= 1e-5 * max(scale, 1e-6)


def test_protocol_forward_paired_recoveries_equal_separate_values_and_gradients():
    """`protocol.forward(paired=True)` (one inverse pass for both keys, `config.paired_recovery`) gives the
    values and gradients of two separate recoveries, to float32 rounding."""
    from proface_jax import protocol

    params, x, y, K = _case(5)
    K_wrong = -jnp.flip(K, 2)

    def loss(paired):
        def f(params):
            out = protocol.forward(params, x, y, K, K_wrong, PLAIN, store="straight_through", paired=paired)
            return (jnp.mean(jnp.abs(out["protected"] - y)) + jnp.mean(jnp.abs(out["recovered"] - x))
                    + jnp.mean(jnp.abs(out["wrong"] - y))), out
        return jax.jit(jax.value_and_grad(f, has_aux=True))

    (v_p, out_p), g_p = loss(True)(params)
    (v_s, out_s), g_s = loss(False)(params)
    for k in ("recovered", "recovered_byproduct", "wrong", "wrong_byproduct"):
        assert max_err(out_p[k], out_s[k]) <= 1e-5, k
    assert max_err(out_p["recovered"], out_p["wrong"]) > 0.1  # the two keys did differ
    assert abs(float(v_p) - float(v_s)) <= 1e-6
    for a, b in zip(jax.tree_util.tree_leaves(g_p), jax.tree_util.tree_leaves(g_s)):
        assert max_err(a, b) <= 1e-5 * max(float(jnp.max(jnp.abs(a))), 1e-12)

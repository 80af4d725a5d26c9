"""The flow's properties over the WHOLE variant registry (`proface_jax.variants`): a variant
is tested by being registered.

For every variant (at most 2 blocks, 1×8×8×3 images, random params that make every subnet
matter): every step of the chain inverts (jit and eager) with log_det(inverse) = −log_det;
protect/unprotect invert each other (jit and eager, float32; float64 below); recover is unprotect
with the variant's stand-in; a wrong key changes the recovery (keyless: every key gives the
same one); log_det equals log|det| of the autodiff Jacobian and the chain inverts in float64
(1×4×4×3, eager); at init every
variant is the identity; checkpoints record the variant and load it back.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import proface_jax
from _flow_cases import VARIANTS, VSHAPE, case, max_err, variant_config
from proface_jax import bijectors, checkpoint, flow, keys, variants

TOL32 = 1e-4
TOL64 = 1e-9
GAINS = (1.0, 0.2, 0.5)  # scale, shift, internal gain of random_params (as test_flow's whole-flow tests)


def _leaf_steps(cfg):
    """(label, step, path) of every leaf step of the image chain, in order."""
    return [(f"{'/'.join(p) or 'haar'}:{type(s).__name__}", s, p)
            for p, s, _ in flow._leaf_steps(flow.image_bijector(cfg).steps[1][1].chain, False)]


def _get(params, path):
    return flow._get(params, path)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_step_inverts(name):
    """Each step on its real input, forward then inverse, all in one jitted call (one compile);
    the whole flow runs eagerly too, below."""
    cfg = variant_config(name)
    params, x, y, K = case(1, VSHAPE, *GAINS, config=cfg)
    steps = _leaf_steps(cfg)

    @jax.jit
    def run(params, z, K):
        res = []
        for _, step, path in steps:
            p = _get(params, path)
            out, ld = step.forward(p, z, K)
            back, ld_inv = step.inverse(p, out, K)
            res.append((z, back, ld, ld_inv))
            z = out
        return res

    z0 = bijectors.HaarPair().forward({}, (x, y), K)[0]
    for (label, _, _), (z, back, ld, ld_inv) in zip(steps, run(params, z0, K)):
        assert max(max_err(a, b) for a, b in zip(back, z)) <= TOL32, label
        assert max_err(ld, -ld_inv) <= 1e-4 * (1 + float(jnp.max(jnp.abs(ld)))), label
        assert ld.shape == (VSHAPE[0],)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("name", VARIANTS)
def test_unprotect_inverts_protect(name, jit):
    cfg = variant_config(name)
    params, x, y, K = case(2, VSHAPE, *GAINS, config=cfg)
    prot, unprot = flow.protect, flow.unprotect
    if jit:
        prot, unprot = jax.jit(prot, static_argnums=4), jax.jit(unprot, static_argnums=4)
    protected, byproduct = prot(params, x, y, K, cfg)
    x2, y2 = unprot(params, protected, byproduct, K, cfg)
    assert max(max_err(x2, x), max_err(y2, y)) <= TOL32
    assert max_err(protected, y) > 1e-3  # not the identity


@pytest.mark.parametrize("name", VARIANTS)
def test_recover_is_unprotect_with_the_stand_in_and_keys_matter(name):
    cfg = variant_config(name)
    params, x, y, K = case(4, VSHAPE, *GAINS, config=cfg)
    protected, _ = jax.jit(flow.protect, static_argnums=4)(params, x, y, K, cfg)
    stand_in = jax.numpy.asarray(flow.haar_iwt(flow.stand_in(cfg, K, VSHAPE)))
    expect = jax.jit(flow.unprotect, static_argnums=4)(params, protected, stand_in, K, cfg)
    recover = jax.jit(flow.recover, static_argnums=3)
    got = recover(params, protected, K, cfg)
    for u, v in zip(got, expect):
        assert max_err(u, v) <= 1e-5
    wrong = keys.random_key(jax.random.key(99), *VSHAPE[:3])
    x_wrong, _ = recover(params, protected, wrong, cfg)
    if cfg.key_injection == "none" and cfg.standin != "key":  # keyless: anyone recovers the same
        np.testing.assert_array_equal(np.asarray(x_wrong), np.asarray(got[0]))
        x_un, _ = jax.jit(flow.unprotect, static_argnums=4)(params, protected, stand_in, wrong, cfg)
        np.testing.assert_array_equal(np.asarray(x_un), np.asarray(expect[0]))
    else:
        assert max_err(x_wrong, got[0]) > 0.05
    both = flow.recover_keys(params, protected, (K, wrong), cfg)
    scale = 1 + float(jnp.max(jnp.abs(got[0])))
    assert max_err(both[0][0], got[0]) <= 1e-5 * scale and max_err(both[1][0], x_wrong) <= 1e-5 * scale


def _jacobian_log_det(f, x, y):
    """log|det ∂f/∂(x, y)| by autodiff, with (x, y) flattened into one vector."""
    n = x.size

    def flat(v):
        a, b = f(v[:n].reshape(x.shape), v[n:].reshape(y.shape))
        return jnp.concatenate([a.ravel(), b.ravel()])

    J = jax.jacfwd(flat)(jnp.concatenate([x.ravel(), y.ravel()]))
    return jnp.linalg.slogdet(J)[1]


@pytest.mark.parametrize("name", VARIANTS)
def test_log_det_matches_autodiff_jacobian_and_float64_round_trip(name):
    with jax.enable_x64(True):
        cfg = variant_config(name)
        shape = (1, 4, 4, 3)
        params, x, y, K = case(5, shape, *GAINS, jnp.float64, config=cfg)
        chain = flow.image_bijector(cfg)
        steps = _leaf_steps(cfg)

        @jax.jit
        def run(params, x, y, K):
            out, ld = chain.forward(params, (x, y), K)
            back, ld_inv = chain.inverse(params, out, K)
            res = []
            z = bijectors.HaarPair().forward({}, (x, y), K)[0]  # each step on its real wavelet-domain input
            for _, step, path in steps:
                p = _get(params, path)
                out_s, ld_s = step.forward(p, z, K)
                res.append((_jacobian_log_det(lambda a, b: step.forward(p, (a, b), K)[0], *z), ld_s))
                z = out_s
            return ld, back, ld_inv, res

        ld, (x2, y2), ld_inv, res = run(params, x, y, K)
        assert max(max_err(x2, x), max_err(y2, y)) <= TOL64  # the round trip in float64
        assert abs(float(ld_inv[0]) + float(ld[0])) <= 1e-8
        # the flow's log_det is its steps' sum (the Haar steps are orthonormal: 0), each step's is autodiff's
        assert abs(float(ld[0]) - sum(float(l[0]) for _, l in res)) <= 1e-8
        for label, (auto, ld_s) in zip([s[0] for s in steps], res):
            assert abs(float(auto) - float(ld_s[0])) <= 1e-8, label


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_starts_as_the_identity_and_round_trips_a_checkpoint(name, tmp_path):
    cfg = variants.get(name)
    params = proface_jax.init_params(jax.random.key(0), cfg)
    _, x, y, K = case(6, VSHAPE, *GAINS)
    protected, byproduct = jax.jit(flow.protect, static_argnums=4)(params, x, y, K, cfg)
    if cfg.mixing == "none":  # a mixer starts as a permutation of [X‖Y], not the identity
        assert max_err(protected, y) <= 1e-6 and max_err(byproduct, x) <= 1e-6
    mid = checkpoint.save_checkpoint(tmp_path / "m.pfj", params, cfg, mode="randwr")
    ck = checkpoint.load_checkpoint(tmp_path / "m.pfj")
    assert ck.config == cfg and ck.model_id == mid and variants.name_of(ck.config) == name
    assert jax.tree_util.tree_structure(ck.params) == jax.tree_util.tree_structure(params)


def test_registry():
    names = variants.names()
    assert names[0] == "paper" and {"paper", "additive", "film", "keyless"} <= set(names)
    assert len(names) >= 6 and set(variants.describe()) == set(names)
    assert variants.get("paper") == flow.FlowConfig()
    assert variants.get("n2").num_blocks == 2 and variants.get("glow", num_blocks=1).num_blocks == 1
    with pytest.raises(ValueError, match="unknown flow variant 'nope'.*paper"):
        variants.get("nope")
    # the paper's param tree is the authors' (converter, shipped .pfj files)
    p = proface_jax.init_params(jax.random.key(0), variants.get("paper", num_blocks=1))
    assert list(p) == ["block_0"] and sorted(p["block_0"]) == ["eta", "omega", "phi", "rho"]
    assert sorted(p["block_0"]["omega"]) == [f"conv{j}" for j in range(1, 6)]


@pytest.mark.parametrize("field,value", [("coupling", "spline"), ("conditioner", "mlp"), ("key_injection", "add"),
                                         ("standin", "zeros"), ("mixing", "shuffle"), ("num_blocks", 0)])
def test_bad_config_names_the_field_and_the_choices(field, value):
    with pytest.raises(ValueError, match=f"FlowConfig.{field} must be"):
        flow.FlowConfig(**{field: value})


def test_noise_stand_in_uses_the_rng_it_is_given():
    cfg = variant_config("noise")
    params, x, y, K = case(7, VSHAPE, *GAINS, config=cfg)
    protected, _ = flow.protect(params, x, y, K, cfg)
    a, _ = flow.recover(params, protected, K, cfg)
    b, _ = flow.recover(params, protected, K, cfg, rng=jax.random.key(flow.NOISE_STANDIN_KEY))
    c, _ = flow.recover(params, protected, K, cfg, rng=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # the documented default key
    assert max_err(a, c) > 1e-3

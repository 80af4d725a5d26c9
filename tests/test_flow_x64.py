"""The flow's inverse in float64, at full soft-clamp saturation (x64 on, this module only).

In float64 the round trip is limited by rounding amplified by the flow's own
conditioning (≈ e^(2·clamp·N) at saturation): measured ≤ 3e-10 on these shapes,
so a 1e-9 bound catches any inverse that is wrong rather than merely rounded.
"""
import jax
import jax.numpy as jnp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from _flow_cases import CONFIG, SHAPES, case, max_err
from proface_jax import flow, keys

TOL64 = 1e-9


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@given(seed=st.integers(0, 2**31 - 1), shape=st.sampled_from(SHAPES), scale=st.floats(0.5, 8.0),
       jit=st.booleans())
def test_unprotect_inverts_protect_float64_at_saturation(seed, shape, scale, jit):
    with jax.enable_x64(True):
        params, x, y, K = case(seed, shape, scale, 0.2, 0.5, jnp.float64)
        prot, unprot = flow.protect, flow.unprotect
        if jit:
            prot, unprot = jax.jit(prot, static_argnums=4), jax.jit(unprot, static_argnums=4)
        protected, byproduct = prot(params, x, y, K, CONFIG)
        assert protected.dtype == jnp.float64
        x2, y2 = unprot(params, protected, byproduct, K, CONFIG)
        assert max(max_err(x2, x), max_err(y2, y)) <= TOL64


def test_float64_recover_with_wrong_key_differs():
    with jax.enable_x64(True):
        params, x, y, K = case(3, SHAPES[0], 2.0, 0.2, 0.5, jnp.float64)
        protected, byproduct = flow.protect(params, x, y, K, CONFIG)
        wrong = keys.random_key(jax.random.key(99), *SHAPES[0][:3], jnp.float64)
        assert max_err(flow.unprotect(params, protected, byproduct, wrong, CONFIG)[0], x) > 0.05

"""Haar DWT/IWT: the fixed-conv transform against the spec's slicing formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proface_jax.dwt import haar_dwt, haar_dwt_reference, haar_iwt

SHAPES = [(2, 8, 8, 3), (1, 16, 24, 1), (3, 6, 10, 4)]
shapes = st.sampled_from(SHAPES)
seeds = st.integers(0, 2**31 - 1)


def _images(seed, shape, dtype=jnp.float32):
    return jax.random.uniform(jax.random.key(seed), shape, dtype, minval=-1, maxval=1)


@given(seed=seeds, shape=shapes, jit=st.booleans())
def test_dwt_matches_slicing_reference(seed, shape, jit):
    x = _images(seed, shape)
    f = jax.jit(haar_dwt) if jit else haar_dwt
    np.testing.assert_allclose(f(x), haar_dwt_reference(x), rtol=0, atol=1e-6)


@given(seed=seeds, shape=shapes, jit=st.booleans())
def test_iwt_inverts_dwt_and_energy_is_preserved(seed, shape, jit):
    x = _images(seed, shape)
    dwt, iwt = (jax.jit(haar_dwt), jax.jit(haar_iwt)) if jit else (haar_dwt, haar_iwt)
    X = dwt(x)
    assert X.shape == (shape[0], shape[1] // 2, shape[2] // 2, 4 * shape[3])
    assert float(jnp.max(jnp.abs(iwt(X) - x))) <= 1e-6
    # orthonormal: the sum of squares is unchanged
    np.testing.assert_allclose(jnp.sum(X**2), jnp.sum(x**2), rtol=1e-5)
    # and the DWT of the IWT is the identity too (a bijection, not just a left inverse)
    assert float(jnp.max(jnp.abs(dwt(iwt(X)) - X))) <= 1e-6


def test_band_major_channel_order():
    # A constant image has only LL energy; LL of a constant c is 2c (four pixels / 2).
    x = jnp.stack([jnp.full((4, 4), v) for v in (0.1, 0.2, 0.3)], -1)[None]
    X = haar_dwt(x)
    np.testing.assert_allclose(X[0, 0, 0, :3], [0.2, 0.4, 0.6], atol=1e-7)
    np.testing.assert_allclose(X[0, 0, 0, 3:], 0, atol=1e-7)
    # A pattern that varies along columns only (c, d minus a, b) is HL, channels 3..5
    x = jnp.tile(jnp.array([[-1.0, 1.0]]), (2, 1))[None, :, :, None].repeat(3, -1)
    X = haar_dwt(x)
    np.testing.assert_allclose(X[0, 0, 0], [0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 0, 0], atol=1e-7)


def test_float64_round_trip_is_exact_to_1e_15():
    with jax.enable_x64(True):
        x = _images(0, (2, 16, 16, 3), jnp.float64)
        assert haar_dwt(x).dtype == jnp.float64
        assert float(jnp.max(jnp.abs(haar_iwt(haar_dwt(x)) - x))) < 1e-15


@pytest.mark.parametrize("shape", [(1, 7, 8, 3), (1, 8, 9, 3)])
def test_odd_size_is_a_clear_error(shape):
    with pytest.raises(ValueError, match="even height and width"):
        haar_dwt(jnp.zeros(shape))


def test_wrong_rank_is_a_clear_error():
    with pytest.raises(ValueError, match="rank 4"):
        haar_dwt(jnp.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="multiple of 4"):
        haar_iwt(jnp.zeros((1, 4, 4, 6)))

"""KeyGen: password -> ±1 map -> K."""
import hashlib

import jax
import numpy as np
import pytest

from proface_jax import keys
from proface_jax.dwt import haar_dwt


def test_paper_profile_is_byte_compatible_with_the_authors_code():
    # The authors' code: hashlib-equivalent PBKDF2-HMAC-SHA512, salt b"\x01", 10 iterations,
    # H·W/8 bytes, bits MSB first, b -> 2b - 1, reshaped row-major.
    h, w = 16, 24
    raw = hashlib.pbkdf2_hmac("sha512", b"0", b"\x01", 10, h * w // 8)
    bits = np.array([(byte >> (7 - i)) & 1 for byte in raw for i in range(8)], np.float32)
    ref = (2 * bits - 1).reshape(h, w)
    sm = keys.secret_map("0", h, w, "paper")
    np.testing.assert_array_equal(sm.map, ref)
    np.testing.assert_allclose(sm.K, haar_dwt(ref[None, :, :, None]), atol=0)
    assert sm.K.shape == (1, h // 2, w // 2, 4)


def test_deterministic_and_str_equals_utf8_bytes():
    a = keys.secret_map("pässwörd", 32, 32, "paper").map
    b = keys.secret_map("pässwörd".encode("utf-8"), 32, 32, "paper").map
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {-1.0, 1.0}


@pytest.mark.parametrize("kdf", ["paper", "strong"])
def test_one_character_change_flips_about_half_the_bits(kdf):
    h = w = 112
    profile = keys.strong_kdf(b"s" * 16) if kdf == "strong" else "paper"
    a = keys.secret_map("correct horse", h, w, profile).map
    b = keys.secret_map("correct horsf", h, w, profile).map
    frac = float(np.mean(a != b))
    assert 0.45 <= frac <= 0.55, frac


def test_one_bit_change_of_password_bytes_gives_an_unrelated_map():
    a = keys.secret_map(b"\x00key", 64, 64).map
    b = keys.secret_map(b"\x01key", 64, 64).map
    assert 0.45 <= float(np.mean(a != b)) <= 0.55


@pytest.mark.parametrize("h,w", [(2, 2), (6, 10), (112, 112), (256, 256), (250, 30)])
def test_sizes(h, w):
    sm = keys.secret_map("x", h, w)
    assert sm.map.shape == (h, w) and sm.K.shape == (1, h // 2, w // 2, 4)


def test_strong_profile_uses_a_fresh_salt_and_rederives_from_stored_params():
    k1, k2 = keys.strong_kdf(), keys.strong_kdf()
    assert k1.salt != k2.salt and len(k1.salt) == keys.SALT_BYTES
    assert k1.algorithm == "scrypt" and k1.n >= 2**17
    stored = keys.KDF.from_json(k1.to_json())
    assert stored == k1
    np.testing.assert_array_equal(keys.secret_map("pw", 8, 8, k1).map, keys.secret_map("pw", 8, 8, stored).map)
    assert np.mean(keys.secret_map("pw", 64, 64, k1).map != keys.secret_map("pw", 64, 64, k2).map) > 0.4


def test_bad_input():
    with pytest.raises(ValueError, match="empty password"):
        keys.secret_map("", 8, 8)
    with pytest.raises(TypeError, match="str or bytes"):
        keys.secret_map(1234, 8, 8)
    with pytest.raises(ValueError, match="even"):
        keys.secret_map("x", 7, 8)
    with pytest.raises(ValueError, match="salt"):
        keys.secret_map("x", 8, 8, "strong")
    with pytest.raises(ValueError, match="invalid KDF"):
        keys.KDF.from_json({"algorithm": "scrypt", "salt": "not base64!"})


def test_random_training_keys_are_rademacher_per_sample():
    K = keys.random_key(jax.random.key(0), 4, 16, 16)
    assert K.shape == (4, 8, 8, 4)
    # LL = (a+b+c+d)/2 of ±1 values ∈ {-2,-1,0,1,2}; samples differ
    assert set(np.unique(np.asarray(K[..., 0]))) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert not np.array_equal(K[0], K[1])

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
    a = keys.secret_map(b"\x00key", 64, 64, "paper").map
    b = keys.secret_map(b"\x01key", 64, 64, "paper").map
    assert 0.45 <= float(np.mean(a != b)) <= 0.55


@pytest.mark.parametrize("h,w", [(2, 2), (6, 10), (112, 112), (256, 256), (250, 30)])
def test_sizes(h, w):
    sm = keys.secret_map("x", h, w, "paper")
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
        keys.secret_map("", 8, 8, "paper")
    with pytest.raises(TypeError, match="str or bytes"):
        keys.secret_map(1234, 8, 8, "paper")
    with pytest.raises(ValueError, match="even"):
        keys.secret_map("x", 7, 8, "paper")
    with pytest.raises(ValueError, match="salt"):
        keys.secret_map("x", 8, 8, "strong")
    with pytest.raises(TypeError):  # no silent default: the caller names the KDF
        keys.secret_map("x", 8, 8)
    with pytest.raises(keys.KDFError, match="base64"):
        keys.KDF.from_json({"algorithm": "scrypt", "salt": "not base64!"})


def test_passwords_are_nfc_normalised_and_version_1_keeps_raw_bytes():
    composed, decomposed = "caf\u00e9", "cafe\u0301"  # "café" as typed on Linux and on macOS
    assert composed != decomposed
    same = [keys.secret_map(p, 32, 32, "paper").map for p in (composed, decomposed, decomposed.encode("utf-8"))]
    np.testing.assert_array_equal(same[0], same[1])
    np.testing.assert_array_equal(same[0], same[2])
    raw = keys.secret_map(decomposed, 32, 32, "paper", normalize=False).map
    assert np.mean(raw != same[0]) > 0.4
    # bytes that are not UTF-8 are used as they are
    np.testing.assert_array_equal(keys.secret_map(b"\xff\xfe", 16, 16, "paper").map,
                                  keys.secret_map(b"\xff\xfe", 16, 16, "paper", normalize=False).map)


def test_tag_key_extends_the_map_derivation_without_changing_it():
    """The map is the first ceil(HW/8) bytes of the KDF output, the tag key the next 32: one KDF call."""
    kdf = keys.KDF(algorithm="scrypt", salt=b"s" * 16, n=2**10, r=8, p=1)
    sm = keys.secret_map("pw", 16, 24, kdf)
    alone = kdf.derive(b"pw", 16 * 24 // 8)
    np.testing.assert_array_equal(sm.map, keys.bits_to_map(alone, 16, 24))
    assert len(sm.mac_key) == keys.MAC_KEY_BYTES and sm.mac_key == kdf.derive(b"pw", 48 + 32)[48:]
    assert keys.secret_map("pw2", 16, 24, kdf).mac_key != sm.mac_key


@pytest.mark.parametrize("params,match", [
    ({"n": 2**21, "r": 8, "p": 1}, "exceeds the limits"),
    ({"n": 2**20, "r": 16, "p": 1}, "exceeds the limits"),  # 2 GiB of memory
    ({"n": 2**17, "r": 8, "p": 16}, "exceeds the limits"),
    ({"n": 1000, "r": 8, "p": 1}, "power of two"),
    ({"n": 2**14, "r": 8.0, "p": 1}, "integer"),
    ({"n": 2**14, "r": True, "p": 1}, "integer"),
])
def test_scrypt_cost_is_bounded(params, match):
    with pytest.raises(keys.KDFError, match=match):
        keys.KDF(algorithm="scrypt", salt=b"s" * 16, **params)


def test_pbkdf2_cost_is_bounded_with_the_output_length():
    with pytest.raises(keys.KDFError, match="iterations"):
        keys.KDF(algorithm="pbkdf2-sha512", salt=b"s" * 16, iterations=10**7)
    kdf = keys.KDF(algorithm="pbkdf2-sha512", salt=b"s" * 16, iterations=10**6)
    with pytest.raises(keys.KDFError, match="block-iterations"):
        keys.secret_map("pw", 112, 112, kdf)  # 25 blocks × 10^6
    with pytest.raises(keys.KDFError, match="salt"):
        keys.KDF(algorithm="pbkdf2-sha512", salt=b"\x01", iterations=11)  # only the paper's own salt is short
    assert keys.PAPER.is_paper()


def test_random_training_keys_are_rademacher_per_sample():
    K = keys.random_key(jax.random.key(0), 4, 16, 16)
    assert K.shape == (4, 8, 8, 4)
    # LL = (a+b+c+d)/2 of ±1 values ∈ {-2,-1,0,1,2}; samples differ
    assert set(np.unique(np.asarray(K[..., 0]))) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert not np.array_equal(K[0], K[1])

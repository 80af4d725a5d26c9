"""KeyGen: password -> ±1 secret map k (H×W) -> K = DWT(k) (spec §3).

Two KDF profiles:

* ``paper`` — PBKDF2-HMAC-SHA512, salt = b"\\x01", 10 iterations, ceil(H·W/8)
  bytes, bits most-significant first, row-major: byte-compatible with the
  authors' code. Deterministic, and cheap to brute-force; kept for
  reproducing the paper and for their checkpoints' test protocol.
* ``strong`` (the default for files) — scrypt with N = 2^17, r = 8, p = 1
  (128 MiB, OWASP's recommended minimum for scrypt) and a fresh 16-byte random
  salt per protection, stored with the protected image. Chosen over PBKDF2-SHA256
  at 600k iterations because scrypt is memory-hard (GPU/ASIC guessing costs far
  more) and its cost does not grow with the output length, while PBKDF2's grows
  with every 32-byte block: a 112×112 map needs 49 blocks, 256×256 needs 256.

The network never sees the KDF (training draws uniform ±1 maps), so profiles
can change without retraining. Salts come from `os.urandom`: a salt is a
secret-adjacent value and must come from the OS CSPRNG, not a replayable key.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from proface_jax.dwt import haar_dwt

SALT_BYTES = 16


@dataclasses.dataclass(frozen=True)
class KDF:
    """A fully specified key-derivation: everything but the password."""

    algorithm: str  # "pbkdf2-sha512" | "scrypt"
    salt: bytes
    iterations: int = 0  # pbkdf2
    n: int = 0  # scrypt cost
    r: int = 0
    p: int = 0
    profile: str = "custom"

    def __post_init__(self):
        if self.algorithm not in ("pbkdf2-sha512", "scrypt"):
            raise ValueError(f"unknown KDF algorithm {self.algorithm!r}")
        if not isinstance(self.salt, bytes) or not self.salt:
            raise ValueError("KDF salt must be non-empty bytes")
        if self.algorithm == "pbkdf2-sha512" and self.iterations < 1:
            raise ValueError("pbkdf2 needs iterations >= 1")
        if self.algorithm == "scrypt" and (self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1):
            raise ValueError(f"scrypt needs n a power of two >= 2, r >= 1, p >= 1; got n={self.n} r={self.r} p={self.p}")

    def derive(self, password: bytes, length: int) -> bytes:
        if self.algorithm == "pbkdf2-sha512":
            kdf = PBKDF2HMAC(algorithm=hashes.SHA512(), length=length, salt=self.salt, iterations=self.iterations)
        else:
            kdf = Scrypt(salt=self.salt, length=length, n=self.n, r=self.r, p=self.p)
        return kdf.derive(password)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["salt"] = base64.b64encode(self.salt).decode("ascii")
        return {k: v for k, v in d.items() if v != 0}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "KDF":
        try:
            d = dict(d)
            d["salt"] = base64.b64decode(d["salt"], validate=True)
            return cls(**d)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"invalid KDF parameters {d!r}: {e}") from None


PAPER = KDF(algorithm="pbkdf2-sha512", salt=b"\x01", iterations=10, profile="paper")


def strong_kdf(salt: bytes | None = None) -> KDF:
    """The ``strong`` profile with a fresh random salt (or a given one, to re-derive)."""
    return KDF(algorithm="scrypt", salt=os.urandom(SALT_BYTES) if salt is None else salt,
               n=2**17, r=8, p=1, profile="strong")


def resolve_kdf(kdf: str | KDF) -> KDF:
    if isinstance(kdf, KDF):
        return kdf
    if kdf == "paper":
        return PAPER
    if kdf == "strong":
        raise ValueError("the 'strong' KDF needs its salt: pass kdf=keys.strong_kdf() (fresh salt) "
                         "or keys.strong_kdf(salt) (to recover); the salt is stored with the image")
    raise ValueError(f"unknown KDF profile {kdf!r}; use 'paper' or a keys.KDF")


def password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, str):
        password = password.encode("utf-8")
    if not isinstance(password, (bytes, bytearray)):
        raise TypeError(f"password must be str or bytes, got {type(password).__name__}")
    if len(password) == 0:
        raise ValueError("empty password refused")
    return bytes(password)


class SecretMap(NamedTuple):
    map: np.ndarray  # [H, W] float32 in {-1, +1}
    K: jnp.ndarray  # [1, H/2, W/2, 4] = haar_dwt(map)
    kdf: KDF


def bits_to_map(raw: bytes, height: int, width: int) -> np.ndarray:
    """Bytes -> ±1 map: bits MSB first, b -> 2b - 1, row-major (the authors' order)."""
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="big")[: height * width]
    return (bits.astype(np.float32) * 2.0 - 1.0).reshape(height, width)


def key_from_map(k: np.ndarray | jnp.ndarray) -> jnp.ndarray:
    """±1 map(s) [H, W] or [B, H, W] -> K [B, H/2, W/2, 4]."""
    k = jnp.asarray(k, jnp.float32)
    if k.ndim == 2:
        k = k[None]
    return haar_dwt(k[..., None])


def secret_map(password: str | bytes, height: int, width: int, kdf: str | KDF = "paper") -> SecretMap:
    """Derives the ±1 secret map and K from a password for an image of height×width."""
    if height <= 0 or width <= 0 or height % 2 or width % 2:
        raise ValueError(f"secret_map needs positive even height and width, got {height}×{width}")
    kdf = resolve_kdf(kdf)
    raw = kdf.derive(password_bytes(password), -(-height * width // 8))
    k = bits_to_map(raw, height, width)
    return SecretMap(k, key_from_map(k), kdf)


def random_key(rng, batch: int, height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
    """Training keys: a fresh uniform ±1 map per sample, as K [B, H/2, W/2, 4]."""
    import jax

    k = jax.random.rademacher(rng, (batch, height, width, 1), dtype=dtype)
    return haar_dwt(k)

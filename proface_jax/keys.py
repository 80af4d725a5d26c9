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

KDF parameters read from a protected file are a stranger's choice, so every
KDF is bounded (`LIMITS`, checked before any work): without the bounds one
crafted file asks for a terabyte of scrypt memory or hours of PBKDF2.

Passwords are UTF-8, normalised to Unicode NFC (`password_bytes`), so the same
password typed on two systems (macOS enters "é" decomposed) gives one key.
`secret_map` also derives 32 more bytes from the same KDF call, `mac_key`, for
the protected file's optional authentication tag: both KDFs are PBKDF2-based,
so a longer output extends a shorter one without changing its first bytes.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import unicodedata
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from proface_jax.dwt import haar_dwt
from proface_jax.errors import ProfaceError

SALT_BYTES = 16
MAC_KEY_BYTES = 32
# Bounds on what a KDF may cost (documented in docs/format.md). The default
# 'strong' profile (n=2^17, r=8, p=1: 128 MiB, ~0.4 s here) sits well inside.
LIMITS = {
    "salt_bytes": (16, 64),  # the paper profile's fixed 1-byte salt is the one exception
    "scrypt_n": 2**20,
    "scrypt_r": 16,
    "scrypt_p": 4,
    "scrypt_memory_bytes": 2**30,  # 128·n·r: scrypt's working memory
    "scrypt_work": 2**23,  # n·r·p, ≈ 8× the default profile
    "pbkdf2_iterations": 10**6,
    "pbkdf2_block_iterations": 10**7,  # iterations × 64-byte output blocks (PBKDF2's cost grows with length)
}
MAX_MAP_PIXELS = 64 * 2**20  # a map is 1 bit per pixel: 8 MiB of KDF output at most


class KDFError(ProfaceError):
    """KDF parameters that are malformed or ask for more than `LIMITS` allow."""


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
            raise KDFError(f"unknown KDF algorithm {self.algorithm!r}")
        if not isinstance(self.salt, bytes) or not self.salt:
            raise KDFError("KDF salt must be non-empty bytes")
        for name in ("iterations", "n", "r", "p"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise KDFError(f"KDF parameter {name} must be an integer, got {type(v).__name__}")
        lo, hi = LIMITS["salt_bytes"]
        if not lo <= len(self.salt) <= hi and not self.is_paper():
            raise KDFError(f"KDF salt is {len(self.salt)} bytes; allowed {lo}–{hi}")
        if self.algorithm == "pbkdf2-sha512":
            if not 1 <= self.iterations <= LIMITS["pbkdf2_iterations"]:
                raise KDFError(f"pbkdf2 iterations {self.iterations} outside 1..{LIMITS['pbkdf2_iterations']:,}")
        elif self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1:
            raise KDFError(f"scrypt needs n a power of two >= 2, r >= 1, p >= 1; got n={self.n} r={self.r} p={self.p}")
        elif (self.n > LIMITS["scrypt_n"] or self.r > LIMITS["scrypt_r"] or self.p > LIMITS["scrypt_p"]
              or 128 * self.n * self.r > LIMITS["scrypt_memory_bytes"]
              or self.n * self.r * self.p > LIMITS["scrypt_work"]):
            raise KDFError(f"scrypt n=2^{self.n.bit_length() - 1} r={self.r} p={self.p} exceeds the limits "
                           f"(n <= 2^20, r <= 16, p <= 4, 128·n·r <= 1 GiB, n·r·p <= 2^23)")

    def is_paper(self) -> bool:
        return (self.algorithm, self.salt, self.iterations) == (PAPER_ALGORITHM, PAPER_SALT, PAPER_ITERATIONS)

    def check_cost(self, length: int) -> None:
        """Refuses an output length whose derivation would cost more than `LIMITS` allow."""
        if self.algorithm == "pbkdf2-sha512":
            blocks = -(-length // 64)
            if self.iterations * blocks > LIMITS["pbkdf2_block_iterations"]:
                raise KDFError(f"pbkdf2 with {self.iterations:,} iterations for {length:,} bytes "
                               f"({blocks} blocks) exceeds {LIMITS['pbkdf2_block_iterations']:,} block-iterations")

    def derive(self, password: bytes, length: int) -> bytes:
        self.check_cost(length)
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
        """From the JSON a protected file stores; bounds checked before anything is derived."""
        if not isinstance(d, dict):
            raise KDFError(f"KDF parameters must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise KDFError(f"unknown KDF parameters {unknown}")
        d = dict(d)
        try:
            d["salt"] = base64.b64decode(d["salt"], validate=True)
        except KeyError:
            raise KDFError("KDF parameters lack the salt") from None
        except (TypeError, ValueError):
            raise KDFError("KDF salt is not valid base64") from None
        try:
            return cls(**d)
        except TypeError as e:
            raise KDFError(f"invalid KDF parameters: {e}") from None


PAPER_ALGORITHM, PAPER_SALT, PAPER_ITERATIONS = "pbkdf2-sha512", b"\x01", 10
PAPER = KDF(algorithm=PAPER_ALGORITHM, salt=PAPER_SALT, iterations=PAPER_ITERATIONS, profile="paper")


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
        raise KDFError("the 'strong' KDF needs its salt: pass kdf=keys.strong_kdf() (fresh salt) "
                       "or keys.strong_kdf(salt) (to recover); the salt is stored with the image")
    raise KDFError(f"unknown KDF profile {kdf!r}; use 'paper' or a keys.KDF")


def password_bytes(password: str | bytes, normalize: bool = True) -> bytes:
    """The bytes the KDF sees: UTF-8 of the NFC-normalised password.

    Bytes that are valid UTF-8 are normalised too, so a password read from a
    file equals the same password typed; other bytes are used as they are.
    `normalize=False` reproduces files of format version 1, made before NFC.
    """
    if isinstance(password, (bytes, bytearray)):
        try:
            text = bytes(password).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        raw = bytes(password) if text is None or not normalize else unicodedata.normalize("NFC", text).encode("utf-8")
    elif isinstance(password, str):
        raw = (unicodedata.normalize("NFC", password) if normalize else password).encode("utf-8")
    else:
        raise TypeError(f"password must be str or bytes, got {type(password).__name__}")
    if len(raw) == 0:
        raise ProfaceError("empty password refused")
    return raw


class SecretMap(NamedTuple):
    map: np.ndarray  # [H, W] float32 in {-1, +1}
    K: jnp.ndarray  # [1, H/2, W/2, 4] = haar_dwt(map)
    kdf: KDF | None  # None for a map expanded from a file key (`expand_map`)
    mac_key: bytes = b""  # 32 bytes after the map's: keys the protected file's authentication tag


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


def secret_map(password: str | bytes, height: int, width: int, kdf: str | KDF, *,
               normalize: bool = True) -> SecretMap:
    """Derives the ±1 secret map, K and the tag key from a password for an image of height×width.

    `kdf` has no default on purpose: a new file wants `strong_kdf()` (fresh salt,
    stored with the image), recovery wants the stored KDF, and "paper" (the
    authors' fixed salt, 10 iterations) is for reproducing the paper only.
    """
    if height <= 0 or width <= 0 or height % 2 or width % 2:
        raise ProfaceError(f"secret_map needs positive even height and width, got {height}×{width}")
    if height * width > MAX_MAP_PIXELS:
        raise ProfaceError(f"secret map of {height}×{width} exceeds {MAX_MAP_PIXELS:,} pixels")
    kdf = resolve_kdf(kdf)
    map_bytes = -(-height * width // 8)
    raw = kdf.derive(password_bytes(password, normalize), map_bytes + MAC_KEY_BYTES)
    k = bits_to_map(raw[:map_bytes], height, width)
    return SecretMap(k, key_from_map(k), kdf, raw[map_bytes:])


def random_key(rng, batch: int, height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
    """Training keys: a fresh uniform ±1 map per sample, as K [B, H/2, W/2, 4]."""
    import jax

    k = jax.random.rademacher(rng, (batch, height, width, 1), dtype=dtype)
    return haar_dwt(k)


# ---- many maps from one password (every face of a photo) ----

class FileKeys(NamedTuple):
    map_key: bytes  # expands to each face's secret map (`expand_map`)
    mac_key: bytes  # keys the file's authentication tag


def file_keys(password: str | bytes, kdf: KDF) -> FileKeys:
    """One KDF call per file, however many faces: 64 bytes, the first half for maps, the second for the tag.

    Per-face maps then cost one HMAC chain each (`expand_map`), not a scrypt each,
    which a photo of ten faces (or a video of thousands of frames) could not afford.
    """
    raw = resolve_kdf(kdf).derive(password_bytes(password), 2 * MAC_KEY_BYTES)
    return FileKeys(raw[:MAC_KEY_BYTES], raw[MAC_KEY_BYTES:])


def expand_map(map_key: bytes, salt: bytes, height: int, width: int) -> SecretMap:
    """The ±1 map of one face: PBKDF2-HMAC-SHA512 with one iteration over a 32-byte random key.

    One iteration is enough because the key is already the output of the slow KDF
    (the per-face salt separates faces); PBKDF2 rather than HKDF because HKDF-Expand
    stops at 255 blocks (a 361×361 map), PBKDF2's counter mode does not.
    """
    if len(map_key) != MAC_KEY_BYTES:
        raise ProfaceError("expand_map needs the 32-byte map key of keys.file_keys")
    if height <= 0 or width <= 0 or height % 2 or width % 2 or height * width > MAX_MAP_PIXELS:
        raise ProfaceError(f"expand_map needs positive even sizes within {MAX_MAP_PIXELS:,} pixels, got {height}×{width}")
    raw = PBKDF2HMAC(algorithm=hashes.SHA512(), length=-(-height * width // 8), salt=salt, iterations=1).derive(map_key)
    k = bits_to_map(raw, height, width)
    return SecretMap(k, key_from_map(k), None)

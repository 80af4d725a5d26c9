"""proface_jax.convert_torch: the authors' PyTorch weights -> our .pfj checkpoint.

A synthetic state dict with the authors' exact layout (random tensors, torch.save) is
converted, and our flow on the imported params is compared with an independent PyTorch
re-implementation of the SACB (NCHW, OIHW, the authors' e(s) with sigmoid) on the same
weights: that pins the channel orders, OIHW -> HWIO, the key concatenated last and the
p/f/r/y -> omega/phi/rho/eta mapping. The restricted (no-torch) reader is run even where
torch is installed, and malicious pickles must be refused by both readers.
"""
from __future__ import annotations

import collections
import os
import pickle
import zipfile

import jax
import numpy as np
import pytest

from proface_jax import convert_torch as ct
from proface_jax import coupling, flow
from proface_jax.checkpoint import load_checkpoint

N = 3  # the authors256 setting
CLAMP = 2.0
SIZE = 16  # wavelet maps are SIZE/2 × SIZE/2

needs_torch = pytest.mark.skipif(not ct.torch_available(),
                                 reason="PyTorch is not installed: building the synthetic .pth needs torch.save "
                                        "(pip install -e '.[parity]')")


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def authors_state_dict(num_blocks: int = N, prefix: str = "", seed: int = 0):
    """Random tensors named and shaped as the authors' `ModelDWT.state_dict()` (OIHW)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for i in range(num_blocks):
        for net in "ryfp":
            cin = 16
            for j in range(1, 6):
                cout = 12 if j == 5 else 32
                std = (2.0 / (9 * cin)) ** 0.5 * (0.3 if j == 5 else 1.0)
                sd[f"{prefix}inv_blocks.{i}.{net}.conv{j}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
                sd[f"{prefix}inv_blocks.{i}.{net}.conv{j}.bias"] = torch.randn(cout, generator=g) * 0.05
                cin += 32
    return sd


# ---- an independent PyTorch SACB (the authors' formulation, NCHW) ----

def t_subnet(sd, pre, x):
    F = _torch().nn.functional
    torch = _torch()
    feats = x
    for j in range(1, 5):
        h = F.leaky_relu(F.conv2d(feats, sd[f"{pre}conv{j}.weight"], sd[f"{pre}conv{j}.bias"], padding=1), 0.01)
        feats = torch.cat([feats, h], 1)
    return F.conv2d(feats, sd[f"{pre}conv5.weight"], sd[f"{pre}conv5.bias"], padding=1)


def t_e(s):
    torch = _torch()
    return torch.exp(CLAMP * 2 * (torch.sigmoid(s) - 0.5))


def t_sacb(sd, i, X, Y, K, prefix=""):
    torch = _torch()
    pre = f"{prefix}inv_blocks.{i}."
    XK = torch.cat([X, K], 1)
    Y = Y * t_e(t_subnet(sd, pre + "p.", XK)) + t_subnet(sd, pre + "f.", XK)
    YK = torch.cat([Y, K], 1)
    X = X * t_e(t_subnet(sd, pre + "r.", YK)) + t_subnet(sd, pre + "y.", YK)
    return X, Y


def nchw(a):
    return _torch().from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def wavelet_inputs(seed=1):
    rng = np.random.default_rng(seed)
    h = SIZE // 2
    X = rng.normal(0, 1, (2, h, h, 12)).astype(np.float32)
    Y = rng.normal(0, 1, (2, h, h, 12)).astype(np.float32)
    K = rng.choice([-2.0, 0.0, 2.0], (2, h, h, 4)).astype(np.float32)
    return X, Y, K


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    if not ct.torch_available():
        pytest.skip("PyTorch is not installed: building the synthetic .pth needs torch.save")
    torch = _torch()
    d = tmp_path_factory.mktemp("convert")
    sd = authors_state_dict()
    pth = d / "authors.pth"
    torch.save(sd, pth)
    pfj = d / "authors.pfj"
    summary = ct.convert_file(pth, pfj, mode="obfswr")
    return {"sd": sd, "pth": pth, "pfj": pfj, "summary": summary, "dir": d}


# ---- the mapping is right: our flow == the PyTorch SACB on the same weights ----

@needs_torch
def test_imported_flow_matches_pytorch_sacb(synthetic):
    ck = load_checkpoint(synthetic["pfj"])
    assert ck.config.num_blocks == N and ck.config.clamp == CLAMP and ck.mode == "obfswr"
    assert ck.meta["converted_from"] == "authors.pth" and ck.meta["image_size"] == 256
    assert flow.param_count(ck.params) == 1_073_040
    sd = synthetic["sd"]
    X, Y, K = wavelet_inputs()
    tX, tY, tK = nchw(X), nchw(Y), nchw(K)
    fwd = jax.jit(lambda p, X, Y: coupling.sacb_forward(p, X, Y, K, clamp=CLAMP))
    for i in range(N):  # each block on its own
        oX, oY = fwd(ck.params[f"block_{i}"], X, Y)
        rX, rY = t_sacb(sd, i, tX, tY, tK)
        np.testing.assert_allclose(np.asarray(oY), nhwc(rY), rtol=1e-5, atol=2e-5, err_msg=f"block {i} Y")
        np.testing.assert_allclose(np.asarray(oX), nhwc(rX), rtol=1e-5, atol=2e-5, err_msg=f"block {i} X")
        assert np.abs(np.asarray(oX) - X).max() > 0.1 and np.abs(np.asarray(oY) - Y).max() > 0.1  # not trivial
    # the whole flow: blocks in order 0..N-1
    oX, oY = jax.jit(lambda p: flow.flow_forward(p, X, Y, K, ck.config))(ck.params)
    rX, rY = tX, tY
    for i in range(N):
        rX, rY = t_sacb(sd, i, rX, rY, tK)
    scale = max(np.abs(nhwc(rX)).max(), np.abs(nhwc(rY)).max(), 1.0)
    np.testing.assert_allclose(np.asarray(oX), nhwc(rX), rtol=1e-5, atol=2e-5 * scale)
    np.testing.assert_allclose(np.asarray(oY), nhwc(rY), rtol=1e-5, atol=2e-5 * scale)


@needs_torch
def test_reference_comparison_is_sensitive_to_the_mapping(synthetic):
    """Swapping the authors' p and r (or leaving the kernel as OIHW reshaped) must be caught."""
    sd = {k: v.numpy() for k, v in synthetic["sd"].items()}
    swapped = {k.replace(".p.", ".TMP.").replace(".r.", ".p.").replace(".TMP.", ".r."): v for k, v in sd.items()}
    good, _ = ct.convert_state_dict(sd)
    bad, _ = ct.convert_state_dict(swapped)
    X, Y, K = wavelet_inputs()
    run = jax.jit(lambda p: coupling.sacb_forward(p, X, Y, K, clamp=CLAMP))
    gX, gY = run(good["block_0"])
    bX, bY = run(bad["block_0"])
    assert np.abs(np.asarray(gY) - np.asarray(bY)).max() > 1e-2
    rX, rY = t_sacb(synthetic["sd"], 0, nchw(X), nchw(Y), nchw(K))
    assert np.abs(np.asarray(bY) - nhwc(rY)).max() > 1e-2


@needs_torch
def test_imported_model_round_trip(synthetic):
    ck = load_checkpoint(synthetic["pfj"])
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    y = rng.uniform(-1, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
    K = np.asarray(jax.random.rademacher(jax.random.key(0), (2, SIZE // 2, SIZE // 2, 4), dtype=np.float32)) * 2
    p, b = jax.jit(lambda prm: flow.protect(prm, x, y, K, ck.config))(ck.params)
    assert np.abs(np.asarray(p) - y).max() > 1e-2  # the imported flow is not the identity
    x2, y2 = jax.jit(lambda prm: flow.unprotect(prm, p, b, K, ck.config))(ck.params)
    np.testing.assert_allclose(np.asarray(x2), x, atol=1e-4)
    np.testing.assert_allclose(np.asarray(y2), y, atol=1e-4)


# ---- the restricted (no-torch) reader, forced even where torch is installed ----

@needs_torch
def test_restricted_reader_equals_torch_load(synthetic):
    torch = _torch()
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    extra = {
        "transposed": base.t(),  # non-contiguous
        "offset_view": base[1:, 2:],  # storage offset + strides
        "f64": torch.randn(3, 2, dtype=torch.float64),
        "f16": torch.randn(5, dtype=torch.float16),
        "bf16": torch.randn(4, dtype=torch.bfloat16),
        "i64": torch.arange(7),
        "empty": torch.zeros(0, 3),
        "scalar": torch.tensor(2.5),
    }
    wrapped = {"net": synthetic["sd"], "opt": {"state": {0: {"step": torch.tensor(10.0)}}, "lr": 1e-5}, "extra": extra}
    pth = synthetic["dir"] / "wrapped.pth"
    torch.save(wrapped, pth)
    a, reader_a = ct.read_checkpoint(pth, use_torch=True)
    b, reader_b = ct.read_checkpoint(pth, use_torch=False)
    assert "weights_only" in reader_a and "restricted" in reader_b
    for k, v in extra.items():
        want = v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy()
        np.testing.assert_array_equal(np.asarray(b["extra"][k], want.dtype), want, err_msg=k)
        assert b["extra"][k].shape == want.shape, k
    assert float(b["opt"]["state"][0]["step"]) == 10.0 and b["opt"]["lr"] == 1e-5
    for k in synthetic["sd"]:
        np.testing.assert_array_equal(a["net"][k], b["net"][k])
    # the same .pfj from either reader (the payload hash is the model id)
    out_t, out_r = synthetic["dir"] / "t.pfj", synthetic["dir"] / "r.pfj"
    st = ct.convert_file(pth, out_t, use_torch=True)
    sr = ct.convert_file(pth, out_r, use_torch=False)
    assert st["model_id"] == sr["model_id"]
    ref = load_checkpoint(synthetic["pfj"])
    assert load_checkpoint(out_r).model_id == ref.model_id  # wrapper unwrapped, same weights


@needs_torch
@pytest.mark.parametrize("prefix,wrap", [("module.", None), ("net.", "state_dict"), ("module.embedder.", "net")])
def test_prefixes_and_wrappers(synthetic, prefix, wrap):
    torch = _torch()
    sd = collections.OrderedDict((prefix + k, v) for k, v in synthetic["sd"].items())
    obj = {wrap: sd, "epoch": 7} if wrap else sd
    pth = synthetic["dir"] / f"p_{prefix.strip('.').replace('.', '_')}_{wrap}.pth"
    torch.save(obj, pth)
    s = ct.convert_file(pth, pth.with_suffix(".pfj"), use_torch=False)
    assert s["prefix"] == prefix and s["num_blocks"] == N
    assert s["model_id"] == load_checkpoint(synthetic["pfj"]).model_id


# ---- clear reports of what does not fit (plain numpy state dicts: no torch needed) ----

def numpy_state_dict(num_blocks=2, prefix=""):
    rng = np.random.default_rng(0)
    sd = {}
    for i in range(num_blocks):
        for net in "ryfp":
            cin = 16
            for j in range(1, 6):
                cout = 12 if j == 5 else 32
                sd[f"{prefix}inv_blocks.{i}.{net}.conv{j}.weight"] = rng.normal(0, 0.01, (cout, cin, 3, 3)).astype(np.float32)
                sd[f"{prefix}inv_blocks.{i}.{net}.conv{j}.bias"] = np.zeros(cout, np.float32)
                cin += 32
    return sd


def test_layout_and_hwio():
    sd = numpy_state_dict(prefix="module.")
    params, rep = ct.convert_state_dict(sd)
    assert rep == {"num_blocks": 2, "prefix": "module.", "ignored": []}
    w = sd["module.inv_blocks.1.p.conv2.weight"]  # OIHW
    k = params["block_1"]["omega"]["conv2"]["kernel"]  # HWIO
    assert k.shape == (3, 3, 48, 32)
    assert k[0, 2, 5, 7] == w[7, 5, 0, 2]
    for theirs, ours in ct.SUBNET_MAP.items():
        np.testing.assert_array_equal(params["block_0"][ours]["conv5"]["kernel"],
                                      sd[f"module.inv_blocks.0.{theirs}.conv5.weight"].transpose(2, 3, 1, 0))


def test_reports_missing_unexpected_and_mismatched_keys():
    sd = numpy_state_dict()
    del sd["inv_blocks.1.y.conv3.bias"]
    sd["inv_blocks.0.f.conv2.weight"] = np.zeros((32, 47, 3, 3), np.float32)
    sd["dwt.haar_weights"] = np.zeros((4, 1, 2, 2), np.float32)
    sd["inv_blocks.0.q.conv1.weight"] = np.zeros((1,), np.float32)
    with pytest.raises(ct.ConversionError) as e:
        ct.convert_state_dict(sd)
    msg = str(e.value)
    assert "1 missing key(s): inv_blocks.1.y.conv3.bias" in msg
    assert "inv_blocks.0.f.conv2.weight: file has (32, 47, 3, 3), expected (32, 48, 3, 3)" in msg
    assert "2 unexpected key(s)" in msg and "dwt.haar_weights" in msg and "inv_blocks.0.q.conv1.weight" in msg
    # unexpected keys alone can be ignored (and are reported)
    sd = numpy_state_dict()
    sd["dwt.haar_weights"] = np.zeros((4, 1, 2, 2), np.float32)
    with pytest.raises(ct.ConversionError, match="unexpected"):
        ct.convert_state_dict(sd)
    _, rep = ct.convert_state_dict(sd, strict=False)
    assert rep["ignored"] == ["dwt.haar_weights"]


def test_rejects_non_flow_files_and_ambiguous_prefixes():
    with pytest.raises(ct.ConversionError, match="no '…inv_blocks"):
        ct.find_state_dict({"encoder.conv1.weight": np.zeros(1)})
    sd = numpy_state_dict(1, "a.")
    sd.update(numpy_state_dict(1, "b."))
    with pytest.raises(ct.ConversionError, match="several prefixes"):
        ct.convert_state_dict(sd)
    sd = numpy_state_dict(1)
    sd["inv_blocks.0.p.conv1.weight"] = np.zeros((32, 16, 3, 3), np.int64)
    with pytest.raises(ct.ConversionError, match="non-float"):
        ct.convert_state_dict(sd)
    assert ct.find_state_dict({"state_dict": sd, "epoch": 3}) is sd


# ---- malicious pickles are refused, by both readers, and nothing runs ----

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def test_restricted_reader_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    _zip_with_pickle(bad, pickle.dumps({"inv_blocks.0.p.conv1.weight": _Evil(marker)}, protocol=2))
    with pytest.raises(ct.UnsafePickleError, match=r"refusing to load.*system"):
        ct.read_checkpoint(bad, use_torch=False)
    assert not marker.exists()
    # other gadgets: builtins.eval, getattr chains, a bogus persistent id
    for payload in (b"cbuiltins\neval\n(S'1+1'\ntR.", b"cbuiltins\ngetattr\n.",
                    b"(S'storage'\nS'FloatStorage'\nS'0'\nS'cpu'\nI1\ntQ."):
        _zip_with_pickle(bad, payload)
        with pytest.raises(ct.UnsafePickleError):
            ct.read_checkpoint(bad, use_torch=False)
    # a plain (non-zip) pickle is not read at all by the restricted reader
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ct.ConversionError, match="not a PyTorch zip checkpoint"):
        ct.read_checkpoint(raw, use_torch=False)
    assert not marker.exists()


@needs_torch
def test_torch_reader_refuses_code(tmp_path):
    torch = _torch()
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    torch.save({"inv_blocks.0.p.conv1.weight": torch.zeros(1), "x": _Evil(marker)}, bad)
    assert not marker.exists()
    with pytest.raises(ct.UnsafePickleError, match=r"GLOBAL posix\.system|system"):
        ct.read_checkpoint(bad, use_torch=True)
    with pytest.raises(ct.UnsafePickleError, match=r"refusing to load: .*system"):
        ct.read_checkpoint(bad, use_torch=False)
    assert not marker.exists()
    assert ct.main([str(bad), "--out", str(tmp_path / "o.pfj"), "--no-check"]) == 2
    assert not (tmp_path / "o.pfj").exists()


# ---- the command line ----

@needs_torch
def test_cli(synthetic, tmp_path, capsys):
    out = tmp_path / "cli.pfj"
    assert ct.main([str(synthetic["pth"]), "--out", str(out), "--mode", "obfswr", "--no-torch", "--no-check"]) == 0
    text = capsys.readouterr().out
    assert "restricted unpickler" in text and "N=3 blocks" in text
    assert load_checkpoint(out).model_id == load_checkpoint(synthetic["pfj"]).model_id
    err = ct.round_trip_check(load_checkpoint(out).params, N, size=SIZE)
    assert err < 1e-4
    # a broken file: clear one-line error, exit 2, nothing written
    sd = collections.OrderedDict((k, v) for k, v in synthetic["sd"].items() if ".conv5." not in k)
    broken = tmp_path / "broken.pth"
    _torch().save(sd, broken)
    assert ct.main([str(broken), "--out", str(tmp_path / "b.pfj"), "--no-check"]) == 2
    assert "missing key(s)" in capsys.readouterr().err
    assert not (tmp_path / "b.pfj").exists()


@needs_torch
def test_without_torch_the_restricted_reader_is_used(synthetic, monkeypatch):
    """With torch not importable, read_checkpoint picks the restricted reader on its own."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    assert not ct.torch_available()
    obj, reader = ct.read_checkpoint(synthetic["pth"])
    assert "restricted" in reader
    assert set(obj) == set(synthetic["sd"])


def test_only_the_paper_variant_is_converted(tmp_path):
    from proface_jax import variants

    ct.require_paper_variant(variants.get("paper"))
    ct.require_paper_variant(variants.get("n2"))  # any N
    for name in ("additive", "film", "keyless", "glow"):
        with pytest.raises(ct.ConversionError, match="paper's network.*cannot be converted"):
            ct.require_paper_variant(variants.get(name))
    with pytest.raises(ct.ConversionError, match="cannot be converted"):
        ct.convert_file(tmp_path / "missing.pth", tmp_path / "o.pfj", config=variants.get("film"))

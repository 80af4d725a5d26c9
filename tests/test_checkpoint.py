"""Single-file inference checkpoints: round trip, validation of every way a file can be bad."""
import jax
import numpy as np
import pytest

import proface_jax
from proface_jax import checkpoint
from proface_jax.checkpoint import CheckpointError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    params = proface_jax.init_params(jax.random.key(1), {"num_blocks": 1})
    path = tmp_path_factory.mktemp("ck") / "m.pfj"
    mid = proface_jax.save_checkpoint(path, params, {"num_blocks": 1}, mode="obfswr", meta={"steps": 5})
    return path, params, mid


def test_round_trip(saved):
    path, params, mid = saved
    ck = proface_jax.load_checkpoint(path)
    assert ck.mode == "obfswr" and ck.config.num_blocks == 1 and ck.meta == {"steps": 5}
    assert ck.model_id == mid and len(mid) == 16
    for a, b in zip(jax.tree_util.tree_leaves(ck.params), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)


def _mutate(saved, tmp_path, f):
    data = bytearray(saved[0].read_bytes())
    out = tmp_path / "bad.pfj"
    out.write_bytes(bytes(f(data)))
    return out


@pytest.mark.parametrize("mutation,match", [
    (lambda d: d[:-10], "truncated"),
    (lambda d: d[:20], "truncated|corrupt"),
    (lambda d: d + b"xx", "trailing"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "SHA-256"),
    (lambda d: b"GARBAGE!" + d[8:], "magic"),
    (lambda d: b"", "magic"),
])
def test_bad_files_fail_clearly(saved, tmp_path, mutation, match):
    with pytest.raises(CheckpointError, match=match):
        proface_jax.load_checkpoint(_mutate(saved, tmp_path, mutation))


def test_config_mismatch(tmp_path):
    params = proface_jax.init_params(jax.random.key(0), {"num_blocks": 1})
    with pytest.raises(CheckpointError, match="do not match config"):
        proface_jax.save_checkpoint(tmp_path / "x.pfj", params, {"num_blocks": 2})


def test_missing_and_unknown_names(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        proface_jax.load_checkpoint(tmp_path / "nope.pfj")
    with pytest.raises(CheckpointError, match="no shipped model named 'nonesuch'"):
        proface_jax.load_checkpoint("nonesuch")
    with pytest.raises(CheckpointError, match="directory"):
        proface_jax.load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        proface_jax.save_checkpoint(tmp_path / "y.pfj", {}, mode="other")


def test_shipped_models_load_by_name():
    for name in checkpoint.shipped_names():
        ck = proface_jax.load_checkpoint(name)
        assert ck.mode == name and proface_jax.param_count(ck.params) == 1_073_040


def _rewrite_header(src, dst, edit):
    import json
    import struct

    data = src.read_bytes()
    n = len(checkpoint.MAGIC)
    (hlen,) = struct.unpack(">I", data[n:n + 4])
    header = edit(json.loads(data[n + 4:n + 4 + hlen]))
    h = json.dumps(header).encode()
    dst.write_bytes(checkpoint.MAGIC + struct.pack(">I", len(h)) + h + data[n + 4 + hlen:])
    return dst, header


def _version(path):
    import json
    import struct

    data = path.read_bytes()
    n = len(checkpoint.MAGIC)
    (hlen,) = struct.unpack(">I", data[n:n + 4])
    return json.loads(data[n + 4:n + 4 + hlen])["version"]


@pytest.mark.parametrize("field,value", [("coupling", "spline"), ("conditioner", ["dense"]), ("key_injection", 1),
                                         ("standin", None), ("mixing", {"a": 1})])
def test_variant_fields_of_a_strangers_header_are_validated(saved, tmp_path, field, value):
    bad, _ = _rewrite_header(saved[0], tmp_path / "bad.pfj", lambda h: {**h, "config": {**h["config"], field: value}})
    with pytest.raises(CheckpointError, match=f"invalid config in checkpoint: {field} must be one of"):
        proface_jax.load_checkpoint(bad)


def test_variants_are_recorded_and_versioned(saved, tmp_path):
    from proface_jax import variants

    assert _version(saved[0]) == 1  # the paper's network: version 1, readable by older proface-jax
    cfg = variants.get("film", num_blocks=1)
    params = proface_jax.init_params(jax.random.key(0), cfg)
    path = tmp_path / "film.pfj"
    proface_jax.save_checkpoint(path, params, cfg)
    assert _version(path) == 2  # older readers refuse it instead of running it as the paper
    assert proface_jax.load_checkpoint(path).config == cfg  # the user never repeats the variant
    # a header from before variants (no variant fields) reads as the paper's
    old, _ = _rewrite_header(saved[0], tmp_path / "old.pfj", lambda h: {
        **h, "config": {k: h["config"][k] for k in ("num_blocks", "clamp", "init_scale", "precision")}})
    assert proface_jax.load_checkpoint(old).config == proface_jax.FlowConfig(num_blocks=1)
    v3, _ = _rewrite_header(saved[0], tmp_path / "v3.pfj", lambda h: {**h, "version": 3})
    with pytest.raises(CheckpointError, match="version 3 is not supported"):
        proface_jax.load_checkpoint(v3)
    # a variant's params under the paper's config (or the reverse) is a mismatch, named
    mixed, _ = _rewrite_header(path, tmp_path / "mixed.pfj", lambda h: {**h, "config": {**h["config"],
                                                                                      "key_injection": "concat"}})
    with pytest.raises(CheckpointError, match="do not match config.*key_injection=concat"):
        proface_jax.load_checkpoint(mixed)

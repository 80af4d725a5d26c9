"""A protected PNG from a stranger, and every other bad input: one line, exit 2, nothing written, promptly.

Each row of `CASES` builds one crafted or broken input and runs the `proface`
command on it in-process; the row asserts the exit status, a single stderr
line naming the cause, no output file (and no temp file) left behind, and a
wall-clock cap far below what the input would cost if it were obeyed.
"""
from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import proface_jax
from proface_jax import checkpoint, cli, images, keys, photo
from proface_jax import protected_format as fmt
from proface_jax.errors import ProfaceError
from proface_jax.testing import random_params

PASSWORD = "a stranger's file"
CHEAP_KDF = keys.KDF(algorithm="scrypt", salt=b"0123456789abcdef", n=2**10, r=8, p=1)
CAP_S = 10.0  # every row finishes far below this; the inputs they refuse would take minutes or OOM


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small model, a face, and a valid protected file made with it (32×32, N = 1, cheap KDF)."""
    d = tmp_path_factory.mktemp("hardening")
    params = random_params(jax.random.key(0), {"num_blocks": 1}, 0.5, 0.05, 0.5)
    model = d / "m.pfj"
    proface_jax.save_checkpoint(model, params, {"num_blocks": 1}, mode="randwr")
    ck = proface_jax.load_checkpoint(model)
    from skimage import data

    face = images.resize(data.astronaut()[20:276, 120:376], (32, 32))
    pixels, meta = photo.protect_photo(ck, face, PASSWORD, kdf=CHEAP_KDF)
    good = d / "good.png"
    photo.save_protected(good, pixels, meta)
    photo.recover_photo(ck, pixels, meta, PASSWORD)  # compile once, outside the timed rows
    return {"dir": d, "model": model, "ck": ck, "face": face, "pixels": pixels, "meta": meta, "good": good}


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, text: str | None = None, depth: int = 8, colour: int = 2) -> bytes:
    """A tiny PNG whose header claims width×height: a decompression bomb's header, with a stub IDAT."""
    out = fmt.PNG_SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    if text is not None:
        out += _chunk(b"iTXt", b"proface\x00\x00\x00\x00\x00" + text.encode("utf-8"))
    return out + _chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + _chunk(b"IEND", b"")


def with_meta(world, path: Path, meta_text: str, pixels=None) -> Path:
    """The valid file's pixels with another metadata text, written without validation (as a stranger could)."""
    images.save_png(path, world["pixels"] if pixels is None else pixels, {"proface": meta_text})
    return path


def mutated(world, path: Path, **changes) -> Path:
    meta = json.loads(json.dumps(world["meta"]))
    for key, value in changes.items():
        target, _, sub = key.partition("__")
        if sub:
            meta[target][sub] = value
        elif value is DELETE:
            del meta[target]
        else:
            meta[target] = value
    return with_meta(world, path, json.dumps(meta))


DELETE = object()


def ckpt_with_header(world, path: Path, edit) -> Path:
    """The test model's checkpoint with its header edited by `edit(header) -> header` (payload kept)."""
    data = world["model"].read_bytes()
    start = len(checkpoint.MAGIC) + 4
    (hlen,) = struct.unpack(">I", data[len(checkpoint.MAGIC): start])
    header = edit(json.loads(data[start: start + hlen]))
    hb = json.dumps(header).encode()
    path.write_bytes(checkpoint.MAGIC + struct.pack(">I", len(hb)) + hb + data[start + hlen:])
    return path


def checkpoint_with_payload(world, path: Path, payload: bytes) -> Path:
    """A checkpoint whose header describes `payload` truthfully (length, hash): only the payload is bad."""
    import hashlib

    data = world["model"].read_bytes()
    start = len(checkpoint.MAGIC) + 4
    (hlen,) = struct.unpack(">I", data[len(checkpoint.MAGIC): start])
    header = json.loads(data[start: start + hlen])
    header.update(payload_bytes=len(payload), payload_sha256=hashlib.sha256(payload).hexdigest())
    hb = json.dumps(header).encode()
    return _write(path, checkpoint.MAGIC + struct.pack(">I", len(hb)) + hb + payload)


def nan_checkpoint(world, path: Path) -> Path:
    from flax import serialization

    params = jax.tree_util.tree_map(np.array, world["ck"].params)
    params["block_0"]["omega"]["conv1"]["kernel"][0, 0, 0, 0] = np.nan
    return checkpoint_with_payload(world, path, serialization.msgpack_serialize(params))


def garbage_payload_checkpoint(world, path: Path) -> Path:
    return checkpoint_with_payload(world, path, b"\xc1" * 64)  # 0xc1 is never used in msgpack


def image_file(path: Path, array, mode=None, fmt_name="PNG") -> Path:
    Image.fromarray(array, mode=mode).save(path, format=fmt_name)
    return path


# (id, command, builder(world, dir) -> extra argv, expected words in the one stderr line)
R = "recover"
P = "protect"
CASES = [
    # --- the table ---
    ("mode-is-a-path", R, lambda w, d: [mutated(w, d / "a.png", mode="/dev/zero")], "mode"),
    ("scrypt-n-2^30", R, lambda w, d: [mutated(w, d / "a.png", kdf__n=2**30)], "kdf/n"),
    ("scrypt-r-2^20", R, lambda w, d: [mutated(w, d / "a.png", kdf__r=2**20)], "kdf/r"),
    ("meta-is-a-list", R, lambda w, d: [with_meta(w, d / "a.png", "[1, 2, 3]")], "no proface metadata object"),
    ("ckpt-missing-payload_bytes", R,
     lambda w, d: [w["good"], "--checkpoint", ckpt_with_header(w, d / "c.pfj", lambda h: {
         k: v for k, v in h.items() if k != "payload_bytes"})], "missing ['payload_bytes']"),
    ("out-under-proc", R, lambda w, d: [w["good"], "--out", "/proc/x/out.png"], "does not exist"),
    ("photo-bomb-40000x40000", P, lambda w, d: [_write(d / "bomb.png", png_declaring(40000, 40000))], "pixels"),
    ("protected-bomb-40000x40000", R,
     lambda w, d: [_write(d / "bomb.png", png_declaring(40000, 40000, json.dumps(w["meta"])))], "pixels"),
    # --- the metadata, field by field ---
    ("scrypt-memory-2GiB", R, lambda w, d: [mutated(w, d / "a.png", kdf__n=2**20, kdf__r=16)], "exceeds the limits"),
    ("scrypt-n-not-power-of-2", R, lambda w, d: [mutated(w, d / "a.png", kdf__n=1000)], "power of two"),
    ("pbkdf2-10^9-iterations", R, lambda w, d: [mutated(w, d / "a.png", kdf={
        "algorithm": "pbkdf2-sha512", "salt": w["meta"]["kdf"]["salt"], "iterations": 10**9})], "kdf/iterations"),
    ("kdf-algorithm-unknown", R, lambda w, d: [mutated(w, d / "a.png", kdf__algorithm="md5")], "kdf/algorithm"),
    ("kdf-extra-field", R, lambda w, d: [mutated(w, d / "a.png", kdf__maxmem=1)], "kdf"),
    ("salt-not-base64", R, lambda w, d: [mutated(w, d / "a.png", kdf__salt="!!!!")], "kdf/salt"),
    ("salt-4-bytes", R, lambda w, d: [mutated(w, d / "a.png", kdf__salt=base64.b64encode(b"abcd").decode())],
     "salt is 4 bytes"),
    ("not-json", R, lambda w, d: [with_meta(w, d / "a.png", "{not json")], "not JSON"),
    ("duplicate-key", R, lambda w, d: [with_meta(w, d / "a.png", '{"mode": "randwr", "mode": "obfswr"}')],
     "repeats the key"),
    ("nan-constant", R, lambda w, d: [with_meta(w, d / "a.png", json.dumps({**w["meta"], "height": float("nan")}))],
     "NaN"),
    ("meta-100KB", R, lambda w, d: [with_meta(w, d / "a.png", json.dumps({**w["meta"], "x": "a" * 100_000}))],
     "at most"),
    ("meta-nested-8000-deep", R, lambda w, d: [with_meta(w, d / "a.png", "[" * 8000 + "]" * 8000)],
     "proface metadata"),
    ("missing-model_id", R, lambda w, d: [mutated(w, d / "a.png", model_id=DELETE)], "model_id"),
    ("unknown-top-level-key", R, lambda w, d: [mutated(w, d / "a.png", checkpoint="/etc/passwd")], "checkpoint"),
    ("height-is-a-string", R, lambda w, d: [mutated(w, d / "a.png", height="32")], "height"),
    ("size-not-the-pixels", R, lambda w, d: [mutated(w, d / "a.png", height=64)], "resized or cropped"),
    ("format-version-99", R, lambda w, d: [mutated(w, d / "a.png", version=99)], "version 99"),
    ("version-1-with-tag", R, lambda w, d: [mutated(w, d / "a.png", version=1)], "no tag"),
    ("other-model", R, lambda w, d: [mutated(w, d / "a.png", model_id="0123456789abcdef")], "0123456789abcdef"),
    ("tampered-pixel", R, lambda w, d: [with_meta(w, d / "a.png", json.dumps(w["meta"]),
                                                  pixels=_flip_one(w["pixels"]))], "modified"),
    # --- the PNG itself ---
    ("no-metadata-chunk", R, lambda w, d: [_plain_png(w, d / "a.png")], "no 'proface' metadata"),
    ("jpeg", R, lambda w, d: [image_file(d / "a.jpg", w["pixels"], fmt_name="JPEG")], "not a PNG"),
    ("png-16-bit-rgb", R, lambda w, d: [_write(d / "a.png", png_declaring(32, 32, json.dumps(w["meta"]), depth=16))],
     "16-bit"),
    ("png-grayscale", R, lambda w, d: [_write(d / "a.png", png_declaring(32, 32, json.dumps(w["meta"]), colour=0))],
     "colour type 0"),
    ("png-truncated", R, lambda w, d: [_write(d / "a.png", w["good"].read_bytes()[:-40])], "truncated"),
    ("png-not-an-image", R, lambda w, d: [_write(d / "a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)], "image"),
    ("input-is-a-directory", R, lambda w, d: [d], "is a directory"),
    ("input-missing", R, lambda w, d: [d / "missing.png"], "no such file"),
    ("input-is-dev-zero", R, lambda w, d: ["/dev/zero"], "not a regular file"),
    # --- outputs and passwords ---
    ("out-is-the-input", R, lambda w, d: [_copy(w["good"], d / "a.png"), "--out", d / "a.png"], "input file"),
    ("out-not-png", R, lambda w, d: [w["good"], "--out", d / "r.jpg"], "PNG"),
    ("password-file-dev-zero", R, lambda w, d: [w["good"], "--password-file", "/dev/zero"], "longer than"),
    ("password-file-missing", R, lambda w, d: [w["good"], "--password-file", d / "nope.txt"], "password file"),
    ("password-not-utf8", R, lambda w, d: [w["good"], "--password-file", _write(d / "pw", b"\xff\xfe\n")], "UTF-8"),
    # --- photos to protect ---
    ("photo-odd-size", P, lambda w, d: [image_file(d / "o.png", np.zeros((33, 32, 3), np.uint8))], "even"),
    ("photo-32-bit-int", P, lambda w, d: [image_file(d / "i.tif", np.zeros((32, 32), np.int32), fmt_name="TIFF")],
     "not 8-bit RGB"),
    ("size-flag-odd", P, lambda w, d: [w["good"], "--size", "7"], "--size"),
    ("seed-negative", P, lambda w, d: [w["good"], "--seed", "-1"], "seed"),
    # --- checkpoints ---
    ("ckpt-header-a-list", P, lambda w, d: [w["good"], "--checkpoint", ckpt_with_header(w, d / "c.pfj", lambda h: [h])],
     "not a JSON object"),
    ("ckpt-10^9-blocks", P, lambda w, d: [w["good"], "--checkpoint", ckpt_with_header(
        w, d / "c.pfj", lambda h: {**h, "config": {**h["config"], "num_blocks": 10**9}})], "num_blocks"),
    ("ckpt-payload_bytes-string", P, lambda w, d: [w["good"], "--checkpoint", ckpt_with_header(
        w, d / "c.pfj", lambda h: {**h, "payload_bytes": "4096"})], "payload_bytes"),
    ("ckpt-nan-weights", P, lambda w, d: [w["good"], "--checkpoint", nan_checkpoint(w, d / "c.pfj")], "not finite"),
    ("ckpt-garbage-payload", P, lambda w, d: [w["good"], "--checkpoint", garbage_payload_checkpoint(w, d / "c.pfj")],
     "corrupt checkpoint payload"),
    ("ckpt-dev-zero", P, lambda w, d: [w["good"], "--checkpoint", "/dev/zero"], "not a regular file"),
    ("ckpt-header-length-4GB", P, lambda w, d: [w["good"], "--checkpoint", _write(
        d / "c.pfj", checkpoint.MAGIC + struct.pack(">I", 2**32 - 1) + b"{}")], "header length"),
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _copy(src: Path, dst: Path) -> Path:
    return _write(dst, src.read_bytes())


def _plain_png(world, path: Path) -> Path:
    images.save_png(path, world["pixels"])
    return path


def _flip_one(pixels):
    p = pixels.copy()
    p[5, 7, 1] ^= 1
    return p


@pytest.fixture(autouse=True)
def password_env(monkeypatch):
    monkeypatch.setenv("PROFACE_PASSWORD", PASSWORD)


def test_the_table_has_at_least_25_inputs():
    assert len(CASES) >= 25 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,command,build,words", CASES, ids=[c[0] for c in CASES])
def test_crafted_input_gets_one_line_exit_2_and_nothing_written(world, tmp_path, capsys, name, command, build, words):
    args = [str(a) for a in build(world, tmp_path)]
    out = tmp_path / "out.png"
    if "--out" not in args:
        args += ["--out", str(out)]
    if "--checkpoint" not in args:
        args += ["--checkpoint", str(world["model"])]
    capsys.readouterr()
    t = time.perf_counter()
    rc = cli.main([command, *args])
    elapsed = time.perf_counter() - t
    err = capsys.readouterr().err
    assert rc == 2, (name, err)
    assert err.count("\n") == 1 and err.startswith("proface: error:"), err
    assert words in err, err
    assert "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp")) and not list(Path(world["dir"]).glob(".*.tmp"))
    assert elapsed < CAP_S, f"{name} took {elapsed:.1f} s"


def test_the_installed_command_gives_one_line_for_a_hostile_file(world, tmp_path):
    """The same through a real process: exit status and stderr as a shell user sees them."""
    bad = mutated(world, tmp_path / "a.png", mode="/dev/zero")
    proc = subprocess.run([sys.executable, "-m", "proface_jax.cli", "recover", str(bad), "--out", str(tmp_path / "o.png")],
                          capture_output=True, text=True, timeout=120, env={"PROFACE_PASSWORD": "x", "PATH": ""})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "mode" in proc.stderr, proc.stderr
    assert not (tmp_path / "o.png").exists()
    dbg = subprocess.run([sys.executable, "-m", "proface_jax.cli", "recover", str(bad), "--out", str(tmp_path / "o.png"),
                          "--debug"], capture_output=True, text=True, timeout=120, env={"PROFACE_PASSWORD": "x"})
    assert dbg.returncode == 2 and "Traceback" in dbg.stderr  # --debug shows where


def test_photos_in_other_modes_are_converted_and_say_so(world, tmp_path, capsys):
    face = world["face"]
    gray16 = (face.mean(-1).astype(np.uint16) * 257).astype(np.uint16)
    rgba = np.concatenate([face, np.full(face.shape[:2] + (1,), 128, np.uint8)], -1)
    for name, arr, mode in [("g16.png", gray16, "I;16"), ("rgba.png", rgba, "RGBA"), ("p.png", face, "P")]:
        src = tmp_path / name
        im = Image.fromarray(arr) if mode != "P" else Image.fromarray(arr).convert("P")
        assert im.mode == mode
        im.save(src)
        assert cli.main(["protect", str(src), "--out", str(tmp_path / "o.png"), "--checkpoint", str(world["model"])]) == 0
        assert "converted image mode" in capsys.readouterr().err
    # 16-bit grayscale is scaled (v / 257), not clipped to white
    loaded = images.load_rgb(tmp_path / "g16.png")
    np.testing.assert_array_equal(loaded[..., 0], face.mean(-1).astype(np.uint8))


def test_outputs_get_the_usual_permissions(world, tmp_path):
    import os

    old = os.umask(0o022)
    try:
        images.save_png(tmp_path / "new.png", world["pixels"])
        assert (tmp_path / "new.png").stat().st_mode & 0o777 == 0o644
        os.chmod(tmp_path / "new.png", 0o600)  # an existing file keeps its permissions
        images.save_png(tmp_path / "new.png", world["pixels"])
        assert (tmp_path / "new.png").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_password_file_loses_exactly_one_trailing_newline(world, tmp_path, monkeypatch):
    monkeypatch.delenv("PROFACE_PASSWORD")
    out = tmp_path / "p.png"
    (tmp_path / "pw").write_bytes(b"two newlines\n\n")
    assert cli.main(["protect", str(world["good"]), "--out", str(out), "--checkpoint", str(world["model"]),
                     "--password-file", str(tmp_path / "pw")]) == 0
    pixels, meta = photo.load_protected(out)
    photo.recover_photo(world["ck"], pixels, meta, "two newlines\n")  # verifies the tag
    with pytest.raises(fmt.TagMismatch):
        photo.recover_photo(world["ck"], pixels, meta, "two newlines")


def test_shipped_model_is_found_by_mode_never_by_a_path_in_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "randwr").write_bytes(b"planted")  # a file named like a shipped model in the cwd is not read
    if "randwr" in checkpoint.shipped_names():
        assert checkpoint.load_shipped("randwr").path.endswith("weights/randwr.pfj")
    with pytest.raises(checkpoint.CheckpointError, match="no shipped model"):
        checkpoint.load_shipped("../../etc/passwd")


def test_obfswr_files_have_no_tag_by_default(world):
    ck = world["ck"]._replace(mode="obfswr")
    _, meta = photo.protect_photo(ck, world["face"], PASSWORD, kdf=CHEAP_KDF)
    assert "tag" not in meta
    _, meta = photo.protect_photo(ck, world["face"], PASSWORD, kdf=CHEAP_KDF, tag=True)
    assert "tag" in meta


def test_version_1_files_still_recover(world):
    """Files written before format 2 (no tag, password bytes not normalised) keep recovering as they did."""
    ck, face = world["ck"], world["face"]
    sm = keys.secret_map(PASSWORD, 32, 32, CHEAP_KDF, normalize=False)
    from proface_jax.flow import protect

    y = photo.obfuscate(face, "blur")
    prot, _ = protect(ck.params, images.to_unit(face)[None], y, sm.K, ck.config)
    pixels = images.from_unit(np.asarray(prot[0]))
    meta = {k: v for k, v in world["meta"].items() if k != "tag"} | {"version": 1}
    np.testing.assert_array_equal(photo.recover_photo(ck, pixels, meta, PASSWORD),
                                  photo.recover_photo(ck, world["pixels"], world["meta"], PASSWORD))


# ---- Hypothesis: mutate the metadata and the bytes of a valid file ----

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80)
    | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8)
FIELDS = ["format", "version", "kdf", "model_id", "mode", "obfuscator", "height", "width", "tag",
          "kdf.algorithm", "kdf.salt", "kdf.n", "kdf.r", "kdf.p", "kdf.iterations", "kdf.profile", "é✓"]


def _recover_file(world, path: Path):
    t = time.perf_counter()
    try:
        pixels, meta = photo.load_protected(path)
        photo.recover_photo(world["ck"], pixels, meta, PASSWORD)
    except ProfaceError:
        pass
    return time.perf_counter() - t


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(FIELDS), st.one_of(st.just(DELETE), JSON_VALUES)),
                      min_size=1, max_size=3))
def test_mutated_metadata_only_ever_raises_proface_errors(world, tmp_path, edits):
    meta = json.loads(json.dumps(world["meta"]))
    for field, value in edits:
        obj, _, sub = field.partition(".")
        target = meta.get(obj) if sub else meta
        key = sub or obj
        if not isinstance(target, dict):
            continue
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value
    path = with_meta(world, tmp_path / "h.png", json.dumps(meta))
    assert _recover_file(world, path) < CAP_S


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_png_bytes_only_ever_raise_proface_errors(world, tmp_path, data):
    raw = bytearray(world["good"].read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = _write(tmp_path / "h.png", bytes(raw))
    assert _recover_file(world, path) < CAP_S


def test_docs_format_holds_the_schema_the_code_enforces():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text(encoding="utf-8")
    assert fmt.schema_json() in doc
    assert f"version {fmt.META_VERSION}" in doc.splitlines()[0]

"""`proface protect-folder` / `python -m experiments.protect_folder` (proface_jax.batch_protect):
2 processes write the same bytes as 1 with the same salt seed; reruns resume; bad files are
reported and counted; every output recovers with the password."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import proface_jax
from proface_jax import batch_protect, cli, images, keys, photo
from proface_jax.errors import ProfaceError
from proface_jax.testing import random_params

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
TIMEOUT = 240


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A non-identity model (random params, N=1), so protection visibly changes the image."""
    p = tmp_path_factory.mktemp("model") / "m.pfj"
    proface_jax.save_checkpoint(p, random_params(jax.random.key(0), {"num_blocks": 1}, 0.5, 0.05, 0.5),
                                {"num_blocks": 1}, mode="randwr")
    return p


@pytest.fixture
def folder(tmp_path) -> Path:
    """5 faces (one in a subfolder, one a JPEG), a broken 'image' and a text file."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    g = np.random.default_rng(0)
    for i, rel in enumerate(["a.png", "b.png", "c.jpg", "sub/d.png", "sub/e.png"]):
        img = images.resize(g.uniform(0, 255, (6, 6, 3)).astype(np.uint8), (48, 48))
        if rel.endswith(".jpg"):
            from PIL import Image

            Image.fromarray(img).save(d / rel, quality=95)
        else:
            images.save_png(d / rel, img)
    (d / "broken.png").write_bytes(b"this is not a PNG")
    (d / "notes.txt").write_text("not an image")
    return d


def _env() -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PROFACE_PASSWORD=PASSWORD)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _cmd(folder: Path, out: Path, model: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "experiments.protect_folder", str(folder), str(out), "--checkpoint", str(model),
            "--faces", "whole", "--salt-seed", "test seed", *extra]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_processes_write_the_bytes_of_one(folder, tmp_path, model):
    one = subprocess.run(_cmd(folder, tmp_path / "one", model), cwd=REPO, env=_env(), capture_output=True,
                         text=True, timeout=TIMEOUT)
    procs = [subprocess.Popen(_cmd(folder, tmp_path / "two", model, "--process-id", str(i), "--num-processes", "2"),
                              cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=TIMEOUT))
        finally:
            if p.poll() is None:
                p.kill()
    # broken.png fails (exit 1, one line naming it); the other files are protected.
    assert one.returncode == 1, one.stderr[-3000:]
    assert [ln for ln in one.stderr.splitlines() if "error" in ln] == [
        ln for ln in one.stderr.splitlines() if ln.startswith("proface: error: broken.png: ")]
    assert "1 file(s) without an image extension left alone (e.g. notes.txt)" in one.stderr
    assert "5 protected, 0 already done, 1 failed, of 6 image file(s)" in one.stdout
    # sorted: a, b, broken, c, sub/d, sub/e -> process 0: a, broken, sub/d; process 1: b, c, sub/e
    assert [p.returncode for p in procs] == [1, 0], [o[1][-2000:] for o in outs]
    assert "2 protected, 0 already done, 1 failed, of 3 image file(s)" in outs[0][0]
    assert "3 protected, 0 already done, 0 failed, of 3 image file(s)" in outs[1][0]

    a, b = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert sorted(a) == ["a.png", "b.png", "c.png", "sub/d.png", "sub/e.png"]
    assert a == b  # byte-identical
    # Each file has its own salt; each is what `proface protect` (photo.protect_photo) makes with
    # that salt, and its tag accepts the password and refuses another.
    metas = {rel: photo.load_protected(tmp_path / "one" / rel)[1] for rel in a}
    assert len({m["kdf"]["salt"] for m in metas.values()}) == len(a)
    ck = proface_jax.load_checkpoint(model)
    pixels, meta = photo.load_protected(tmp_path / "two" / "sub" / "d.png")
    original = images.load_rgb(folder / "sub" / "d.png")
    assert np.abs(pixels.astype(int) - original).mean() > 2  # protection changed it
    again, _ = photo.protect_photo(ck, original, PASSWORD, kdf=keys.KDF.from_json(meta["kdf"]))
    np.testing.assert_array_equal(again, pixels)
    photo.recover_photo(ck, pixels, meta, PASSWORD)
    with pytest.raises(photo.TagMismatch):
        photo.recover_photo(ck, pixels, meta, PASSWORD + "!")


def _run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def test_rerun_resumes_and_default_salts_are_random(folder, tmp_path, model, monkeypatch, capsys):
    monkeypatch.setenv("PROFACE_PASSWORD", PASSWORD)
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    base = ("protect-folder", folder, out, "--checkpoint", model, "--faces", "whole")
    assert _run(*base) == 0
    first = _files(out)
    assert len(first) == 5 and "5 protected, 0 already done, 0 failed" in capsys.readouterr().out
    # A rerun skips what is done; a removed output (as after a kill) is redone, the others untouched.
    (out / "b.png").unlink()
    assert _run(*base) == 0
    assert "1 protected, 4 already done, 0 failed" in capsys.readouterr().out
    second = _files(out)
    assert {k: v for k, v in second.items() if k != "b.png"} == {k: v for k, v in first.items() if k != "b.png"}
    # No seed: fresh random salts, so the redone file differs from the first one.
    assert second["b.png"] != first["b.png"]
    # With a seed, a second run into another folder reproduces the bytes.
    seeded = [tmp_path / "s1", tmp_path / "s2"]
    for d in seeded:
        assert _run("protect-folder", folder, d, "--checkpoint", model, "--faces", "whole", "--salt-seed", "x") == 0
    assert _files(seeded[0]) == _files(seeded[1])
    assert _files(seeded[0]) != first


def test_bad_arguments_are_one_line_errors(folder, tmp_path, model, monkeypatch, capsys):
    monkeypatch.setenv("PROFACE_PASSWORD", PASSWORD)
    cases = [
        ((folder, folder / "out"), "inside the input folder"),
        ((tmp_path / "missing", tmp_path / "o"), "does not exist"),
        ((folder, tmp_path / "o", "--process-id", "2", "--num-processes", "2"), "process_id"),
    ]
    for args, match in cases:
        assert _run("protect-folder", *args, "--checkpoint", model) == 2
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    (folder / "a.jpg").write_bytes((folder / "c.jpg").read_bytes())  # a.jpg and a.png -> a.png
    with pytest.raises(ProfaceError, match="both be written"):
        batch_protect.plan(folder, tmp_path / "o")


def test_shards_are_disjoint_and_cover_every_file(folder, tmp_path):
    jobs, ignored = batch_protect.plan(folder, tmp_path / "o")
    assert ignored == ["notes.txt"]
    assert [j.rel for j in jobs] == sorted(j.rel for j in jobs)
    for n in (1, 2, 3, 7):
        parts = [batch_protect.shard(jobs, i, n) for i in range(n)]
        assert sorted(j.rel for p in parts for j in p) == [j.rel for j in jobs]
    s1, s2 = batch_protect.SeededSalts("k", "a.png"), batch_protect.SeededSalts("k", "a.png")
    assert [s1(), s1()] == [s2(), s2()] and len(set([s1(), s1(), batch_protect.SeededSalts("k", "b.png")()])) == 3

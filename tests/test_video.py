"""Videos: a synthetic clip of a real face moving and growing, protected and recovered through the CLI."""
from __future__ import annotations

import subprocess

import jax
import numpy as np
import pytest

import proface_jax
from proface_jax import cli, images, keys, video
from proface_jax import protected_format as fmt
from proface_jax.testing import random_params

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="the [video] extra (imageio-ffmpeg) is not installed")
KDF = keys.KDF(algorithm="scrypt", salt=b"0123456789abcdef", n=2**10, r=8, p=1)
W, H, N = 192, 128, 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory, utkface_faces):
    """N frames: one face pasted on coffee, moving right 10 px and growing 4 px a frame; lossless source."""
    from skimage import data

    d = tmp_path_factory.mktemp("video")
    face = utkface_faces(1, 200)[0]
    bg = images.resize(data.coffee(), (H, W))
    frames = []
    for t in range(N):
        s, x, y = 84 + 4 * t, 10 + 10 * t, 20
        f = bg.copy()
        f[y:y + s, x:x + s] = images.resize(face, (s, s))
        frames.append(f)
    path = d / "clip.mkv"
    w = imageio_ffmpeg.write_frames(str(path), (W, H), pix_fmt_in="rgb24", pix_fmt_out="bgr0", codec="ffv1", fps=5,
                                    macro_block_size=1, ffmpeg_log_level="error")
    w.send(None)
    for f in frames:
        w.send(f)
    w.close()
    params = random_params(jax.random.key(0), {"num_blocks": 1}, 0.5, 0.05, 0.5)
    proface_jax.save_checkpoint(d / "m.pfj", params, {"num_blocks": 1}, mode="randwr")
    return {"path": path, "frames": frames, "model": d / "m.pfj", "dir": d}


def _frames(path):
    info, frames = video._read_frames(path, 10**8)
    return list(frames)


def _outside(meta, i):
    m = np.ones((H, W), bool)
    for x, y, s in meta["faces"][i]:
        m[y:y + s, x:x + s] = False
    return m


def test_cli_round_trip_protects_every_frame_and_recovers_it(clip, tmp_path, monkeypatch):
    monkeypatch.setenv("PROFACE_PASSWORD", "a moving face")
    prot, back = tmp_path / "p.mkv", tmp_path / "r.mkv"
    assert cli.main(["protect-video", str(clip["path"]), "--out", str(prot), "--checkpoint", str(clip["model"])]) == 0
    meta = video.read_meta(prot)
    assert meta["frames"] == N and all(len(f) == 1 for f in meta["faces"])  # the face, in every frame
    protected = _frames(prot)
    for i, (p, f) in enumerate(zip(protected, clip["frames"])):
        out = _outside(meta, i)
        np.testing.assert_array_equal(p[out], f[out])  # lossless: the rest of each frame is untouched
        assert np.mean(np.abs(p[~out].astype(int) - f[~out].astype(int))) > 3
        x, y, s = meta["faces"][i][0]
        assert x <= 10 + 10 * i + 5 and x + s >= 10 + 10 * i + 84 + 4 * i - 5  # the crop follows the face
    assert cli.main(["recover-video", str(prot), "--out", str(back), "--checkpoint", str(clip["model"])]) == 0
    recovered = _frames(back)
    assert len(recovered) == N
    ck = proface_jax.load_checkpoint(clip["model"])
    fk = keys.file_keys("a moving face", keys.KDF.from_json(meta["kdf"]))
    for i, (r, p, f) in enumerate(zip(recovered, protected, clip["frames"])):
        out = _outside(meta, i)
        np.testing.assert_array_equal(r[out], f[out])
        x, y, s = meta["faces"][i][0]
        K = keys.expand_map(fk.map_key, video.face_salt(i, 0), s, s).K
        alone, _ = proface_jax.recover(ck.params, images.to_unit(p[y:y + s, x:x + s])[None], K, ck.config)
        np.testing.assert_array_equal(r[y:y + s, x:x + s], images.from_unit(np.asarray(alone[0])))


def test_wrong_password_lossy_output_and_reencoded_files_are_refused(clip, tmp_path, monkeypatch, capsys):
    ck = proface_jax.load_checkpoint(clip["model"])
    prot = tmp_path / "p.mkv"
    video.protect_video(ck, clip["path"], prot, "right", kdf=KDF, progress=False,
                        boxes=lambda i, f: [(10 + 10 * i, 20, 84 + 4 * i, 84 + 4 * i)])
    with pytest.raises(fmt.TagMismatch):
        video.recover_video(ck, prot, tmp_path / "r.mkv", "wrong", progress=False)
    assert not (tmp_path / "r.mkv").exists() and not list(tmp_path.glob(".*"))
    monkeypatch.setenv("PROFACE_PASSWORD", "right")
    assert cli.main(["recover-video", str(prot), "--out", str(tmp_path / "r.mp4"), "--checkpoint",
                     str(clip["model"])]) == 2
    assert "lossless" in capsys.readouterr().err
    stripped = tmp_path / "s.mkv"  # what a re-encode or a tool that drops tags gives
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(prot), "-map_metadata", "-1",
                    "-c", "copy", str(stripped)], check=True)
    assert cli.main(["recover-video", str(stripped), "--out", str(tmp_path / "r.mkv")]) == 2
    assert "no PROFACE tag" in capsys.readouterr().err


def test_tracker_holds_a_face_the_detector_misses_for_a_few_frames():
    tr = video.Tracker(hold=2)
    assert tr.update([(10, 10, 50, 50)]) == [(10, 10, 50, 50)]
    assert tr.update([]) == [(10, 10, 50, 50)]  # missed: still protected
    assert tr.update([]) == [(10, 10, 50, 50)]
    assert tr.update([]) == []  # gone for longer than `hold`
    tr.update([(10, 10, 50, 50)])
    moved = tr.update([(20, 10, 60, 60)])[0]
    assert moved[0] + moved[2] / 2 == pytest.approx(50, abs=1)  # centre follows the detection at once
    assert 50 < moved[2] < 60  # size is smoothed


def test_without_the_video_extra_the_error_names_it(clip, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if `pip install proface-jax` alone
    monkeypatch.setenv("PROFACE_PASSWORD", "x")
    assert cli.main(["protect-video", str(clip["path"]), "--out", str(tmp_path / "p.mkv"),
                     "--checkpoint", str(clip["model"])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "proface-jax[video]" in err, err
    assert not list(tmp_path.iterdir())

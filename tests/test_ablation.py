"""The ablation runner end to end on a tiny setting: 2 variants, 2 steps, 32×32, a handful of
UTKFace faces (linked by path, never copied), two processes; then the resume path (a finished
variant is skipped)."""
from __future__ import annotations

import json

import pytest

from proface_jax import ablation


def test_ablation_end_to_end_and_resume(tmp_path, utkface_dir, capsys):
    files = sorted(p for p in utkface_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:12]
    faces = tmp_path / "faces"
    faces.mkdir()
    for f in files:
        (faces / f.name).symlink_to(f)
    out = tmp_path / "abl"
    argv = ["--variants", "n1,additive", "--steps", "2", "--size", "32", "--data", f"folder:{faces}",
            "--out", str(out), "--batch", "2", "--eval-n", "4", "--eval-split", "all", "--eval-batch", "4",
            "--obfuscators", "blur,pixelate", "--log-every", "1", "--eval-every", "2", "--jobs", "2"]
    assert ablation.main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert list(r["variants"]) == ["n1", "additive"]
    for v, row in r["variants"].items():
        assert row["parameters"] > 0 and row["flops_per_face"] > 0
        assert row["config"]["num_blocks"] == (1 if v == "n1" else 3)
        assert row["curves"]["train"] and row["curves"]["eval"]
        for k in ("privacy_psnr", "recovery_psnr", "wrong_vs_x_psnr", "reid_wrong_thumb_top1"):
            assert isinstance(row[k], float)
    assert r["variants"]["additive"]["config"]["coupling"] == "additive"
    report = (out / "report.md").read_text()
    assert "| n1 |" in report and "| additive |" in report and "python -m experiments.ablate" in report
    capsys.readouterr()
    assert ablation.main(argv) == 0  # everything finished: training is skipped, evaluation redone
    assert capsys.readouterr().out.count("finished earlier") == 2


def test_unknown_variant_is_refused_before_training(tmp_path, capsys):
    assert ablation.main(["--variants", "paper,nope", "--steps", "1", "--data", "folder:x", "--out",
                          str(tmp_path)]) == 2
    assert "unknown flow variant 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ablation.main(["--variants", "paper,paper", "--steps", "1", "--data", "folder:x", "--out", str(tmp_path)])

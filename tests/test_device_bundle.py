"""experiments.device_bundle: the faces it packs keep their splits (never a test face), and the
float16 LPIPS weights come back as a valid float32 file within float16 rounding."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from experiments import device_bundle  # noqa: E402
from proface_jax import input_pipeline  # noqa: E402
from proface_jax import images  # noqa: E402
from proface_jax.lpips import weights as lw  # noqa: E402


def test_faces_keep_their_split_and_the_validation_batch(tmp_path, utkface_dir):
    out = tmp_path / "faces"
    counts = device_bundle.pack_faces(f"folder:{utkface_dir}", out, 112, budget_bytes=60_000, val=5)
    packed = input_pipeline.list_images(out)
    assert counts["validation"] == 5 and counts["train"] >= 1 and len(packed) == 5 + counts["train"]
    assert counts["bytes"] < 60_000 + 30_000  # stops at the first file past the budget
    splits = [input_pipeline.split_of(n) for n in packed]
    assert "test" not in splits
    # The validation faces are the first ones of the full folder's validation split, so a run on
    # the bundle validates on the same faces as a run on the full folder.
    full_val = [n for n in input_pipeline.list_images(utkface_dir) if input_pipeline.split_of(n) == "validation"]
    assert sorted(n for n, s in zip(packed, splits) if s == "validation") == full_val[:5]
    face = images.load_rgb(out / packed[0])
    assert face.shape == (112, 112, 3)
    ref = images.resize(input_pipeline.CENTER_SQUARE(images.load_rgb(utkface_dir / packed[0])), (112, 112))
    assert np.abs(face.astype(float) - ref).mean() < 3.0  # the JPEG re-encoding is mild


def test_lpips_float16_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    flat = {k: rng.normal(0, 0.05, s).astype(np.float32) for k, s in lw.expected_shapes().items()}
    lw.write_npz(tmp_path / "w.npz", lw.nest(flat), {"source": "synthetic"})
    size = device_bundle.pack_lpips_f16(tmp_path / "w.npz", tmp_path / "w16.npz")
    assert size < 0.55 * (tmp_path / "w.npz").stat().st_size
    device_bundle.unpack_lpips_f16(tmp_path / "w16.npz", tmp_path / "back.npz")
    back, meta = lw.read_npz(tmp_path / "back.npz")  # raises unless float32, expected shapes, finite
    assert meta["source"] == "synthetic" and "float16" in meta["bundle"]
    for k, v in flat.items():
        np.testing.assert_allclose(back[k], v, rtol=2**-11, atol=2**-24)

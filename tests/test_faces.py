"""Faces protected in place: the rest of the photo untouched, every face back with the password."""
from __future__ import annotations

import base64
import json

import jax
import numpy as np
import pytest

import proface_jax
from proface_jax import cli, faces, images, keys, photo
from proface_jax import protected_format as fmt
from proface_jax.errors import ProfaceError
from proface_jax.testing import random_params

KDF = keys.KDF(algorithm="scrypt", salt=b"0123456789abcdef", n=2**10, r=8, p=1)
BOXES = [(10, 12, 40, 40), (70, 30, 56, 56)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    params = random_params(jax.random.key(0), {"num_blocks": 1}, 0.5, 0.05, 0.5)
    proface_jax.save_checkpoint(d / "m.pfj", params, {"num_blocks": 1}, mode="randwr")
    return d / "m.pfj", proface_jax.load_checkpoint(d / "m.pfj")


@pytest.fixture(scope="module")
def group_photo(utkface_faces):
    """Two real faces pasted on a textured background; odd width, as photos have."""
    from skimage import data

    photo_u8 = images.resize(data.coffee(), (100, 141)).copy()
    real = utkface_faces(2, 64)
    for (x, y, w, h), face in zip(BOXES, real):
        photo_u8[y:y + h, x:x + w] = images.resize(face, (h, w))
    return photo_u8


def _crop_mask(meta, shape):
    m = np.zeros(shape[:2], bool)
    for f in meta["faces"]:
        m[f["y"]:f["y"] + f["size"], f["x"]:f["x"] + f["size"]] = True
    return m


def test_round_trip_leaves_everything_outside_the_crops_bit_identical(model, group_photo):
    ck = model[1]
    prot, meta = faces.protect_faces(ck, group_photo, "pw", boxes=BOXES, kdf=KDF)
    assert len(meta["faces"]) == 2 and meta["width"] == 141
    inside = _crop_mask(meta, group_photo.shape)
    np.testing.assert_array_equal(prot[~inside], group_photo[~inside])
    assert np.mean(np.abs(prot[inside].astype(int) - group_photo[inside].astype(int))) > 3  # faces did change
    rec = faces.recover_faces(ck, prot, meta, "pw")
    np.testing.assert_array_equal(rec[~inside], group_photo[~inside])
    # each crop recovers exactly as the flow recovers that crop alone with its own map
    fk = keys.file_keys("pw", KDF)
    for f in meta["faces"]:
        sl = (slice(f["y"], f["y"] + f["size"]), slice(f["x"], f["x"] + f["size"]))
        K = keys.expand_map(fk.map_key, base64.b64decode(f["salt"]), f["size"], f["size"]).K
        alone, _ = proface_jax.recover(ck.params, images.to_unit(prot[sl])[None], K, ck.config)
        np.testing.assert_array_equal(rec[sl], images.from_unit(np.asarray(alone[0])))
    with pytest.raises(fmt.TagMismatch):
        faces.recover_faces(ck, prot, meta, "pW")
    wrong = faces.recover_faces(ck, prot, meta, "pW", verify=False)
    assert np.mean(np.abs(wrong[inside].astype(int) - rec[inside].astype(int))) > 3


def test_each_face_has_its_own_salt_and_map(model, group_photo):
    _, meta = faces.protect_faces(model[1], group_photo, "pw", boxes=[(10, 10, 40, 40), (80, 40, 40, 40)], kdf=KDF)
    salts = [f["salt"] for f in meta["faces"]]
    assert len(set(salts)) == 2 and meta["faces"][0]["size"] == meta["faces"][1]["size"]
    fk = keys.file_keys("pw", KDF)
    maps = [keys.expand_map(fk.map_key, base64.b64decode(s), 48, 48).map for s in salts]
    assert 0.4 < np.mean(maps[0] != maps[1]) < 0.6


def test_crops_merge_when_they_would_overlap_and_stay_inside():
    groups = faces.crops_for([(10, 10, 30, 30), (30, 20, 30, 30), (100, 0, 40, 40)], 90, 141)
    assert len(groups) == 2
    crops = [g[0] for g in groups]
    assert not crops[0].overlaps(crops[1])
    for c in crops:
        assert c.x >= 0 and c.y >= 0 and c.x + c.size <= 141 and c.y + c.size <= 90 and c.size % 2 == 0
    merged = next(g for g in groups if len(g[1]) == 2)[0]
    assert merged.x <= 10 and merged.x + merged.size >= 60  # covers both faces


def test_bad_boxes_and_metadata_are_refused(model, group_photo):
    ck = model[1]
    with pytest.raises(ProfaceError, match="outside"):
        faces.protect_faces(ck, group_photo, "pw", boxes=[(120, 10, 40, 40)], kdf=KDF)
    with pytest.raises(faces.NoFaceFound):
        faces.protect_faces(ck, group_photo, "pw", boxes=[], kdf=KDF)
    prot, meta = faces.protect_faces(ck, group_photo, "pw", boxes=BOXES, kdf=KDF, tag=False)
    bad = json.loads(json.dumps(meta))
    bad["faces"][1].update(x=meta["faces"][0]["x"], y=meta["faces"][0]["y"])
    with pytest.raises(fmt.ProtectedImageError, match="overlap"):
        fmt.validate_meta(bad, prot.shape[:2])
    bad = json.loads(json.dumps(meta))
    bad["faces"][0]["x"] = 130
    with pytest.raises(fmt.ProtectedImageError, match="outside"):
        fmt.validate_meta(bad, prot.shape[:2])


def test_cli_round_trip_with_boxes(model, group_photo, tmp_path, monkeypatch):
    monkeypatch.setenv("PROFACE_PASSWORD", "group photo")
    src, out, back = tmp_path / "g.png", tmp_path / "p.png", tmp_path / "r.png"
    images.save_png(src, group_photo)
    box_args = [a for b in BOXES for a in ("--box", ",".join(map(str, b)))]
    assert cli.main(["protect", str(src), "--out", str(out), "--checkpoint", str(model[0]), "--faces", "boxes",
                     *box_args]) == 0
    pixels, meta = photo.load_protected(out)
    assert len(meta["faces"]) == 2
    assert cli.main(["recover", str(out), "--out", str(back), "--checkpoint", str(model[0])]) == 0
    rec = images.load_rgb(back)
    inside = _crop_mask(meta, rec.shape)
    np.testing.assert_array_equal(rec[~inside], group_photo[~inside])
    np.testing.assert_array_equal(rec, faces.recover_faces(model[1], pixels, meta, "group photo"))


def test_close_faces_keep_crops_of_their_own():
    """Crops that would overlap only through their margins lose the margins instead of merging."""
    groups = faces.crops_for([(10, 10, 40, 40), (54, 10, 40, 40)], 100, 141)
    assert len(groups) == 2 and not groups[0][0].overlaps(groups[1][0])
    assert all(g[0].size >= 40 for g in groups)


def test_cli_round_trip_of_the_demo_photo_finds_the_face(model, tmp_path, monkeypatch):
    """scikit-image's astronaut through `proface protect` (--faces auto) and `proface recover`."""
    from skimage import data

    monkeypatch.setenv("PROFACE_PASSWORD", "astronaut")
    src, out, back = tmp_path / "a.png", tmp_path / "p.png", tmp_path / "r.png"
    original = data.astronaut()
    images.save_png(src, original)
    assert cli.main(["protect", str(src), "--out", str(out), "--checkpoint", str(model[0])]) == 0
    _, meta = photo.load_protected(out)
    face = (180, 80, 100, 110)  # her face (x, y, w, h), by eye
    assert any(f["x"] <= face[0] and f["y"] <= face[1] and f["x"] + f["size"] >= face[0] + face[2]
               and f["y"] + f["size"] >= face[1] + face[3] for f in meta["faces"]), meta["faces"]
    assert cli.main(["recover", str(out), "--out", str(back), "--checkpoint", str(model[0])]) == 0
    rec = images.load_rgb(back)
    inside = _crop_mask(meta, rec.shape)
    assert inside.mean() < 0.25  # a face crop or two, not the whole photo
    np.testing.assert_array_equal(rec[~inside], original[~inside])

"""Every face of a photo, protected in place and recovered in place (the `faces` of protected-file format 2).

    pixels, meta = protect_faces(ck, photo_u8, "pass phrase")        # detect, protect each face
    photo_back = recover_faces(ck, pixels, meta, "pass phrase")     # every face back, the rest untouched

Each face box (from `face_detect` or the user; it frames the face as an
aligned crop does) becomes a square crop of even side (grown by `margin`,
10 % a side by default), rounded up to a multiple of 16 so that faces of similar
size share one compiled flow; crops that would overlap merge into one. The
model runs on each crop at the crop's own size (measured: recovery holds up
from 64 to 320 px, see docs/format.md), so the protected crop is pasted back
pixel for pixel and recovery reads it back exactly. Pixels outside the crops
are never touched, by protection or by recovery.

The obfuscated target y is the obfuscator's output at its native 112×112,
resized to the crop, and faded into the original towards the crop's border
(`blend_mask`): ŷ ≈ y, so the crop's edge matches its surroundings and no
seam shows. One password serves every face: one KDF call per file gives a
map key and a tag key (`keys.file_keys`); each face's map comes from the map
key and the face's own salt (`keys.expand_map`).
"""
from __future__ import annotations

import base64
import os
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from proface_jax import images, keys, photo, protocol
from proface_jax import protected_format as fmt
from proface_jax.checkpoint import Checkpoint
from proface_jax.errors import ProfaceError

# Face boxes frame a face as an aligned crop does (forehead to chin, some hair and neck; what
# face_detect returns and the model was trained on); 10 % more on each side covers a tilted face
# and the detector's jitter (with none, 4 of 81 composite faces were < 90 % inside their crop).
MARGIN = 0.1
SIDE_STEP = 16
MODEL_SIZE = 112  # the obfuscators' native size (preset paper112)
SMALL_IMAGE = 256  # a face-less image this small is taken for an aligned face crop (faces="auto")


class NoFaceFound(ProfaceError):
    """Detection found no face (pass --box, or --faces whole to protect the whole image)."""


class Crop(NamedTuple):
    x: int
    y: int
    size: int

    def slices(self):
        return slice(self.y, self.y + self.size), slice(self.x, self.x + self.size)

    def overlaps(self, other: "Crop") -> bool:
        return (self.x < other.x + other.size and other.x < self.x + self.size
                and self.y < other.y + other.size and other.y < self.y + self.size)


def _square(cx: float, cy: float, side: float, height: int, width: int, step: int = SIDE_STEP) -> Crop:
    """A square of about `side` (rounded up to `step`) centred on (cx, cy), shifted (if need be shrunk) into the image."""
    side = -(-int(np.ceil(side)) // step) * step
    side = min(side, height - height % 2, width - width % 2)
    x = int(np.clip(round(cx - side / 2), 0, width - side))
    y = int(np.clip(round(cy - side / 2), 0, height - side))
    return Crop(x, y, side)


def _crop_of(members, height: int, width: int, margin: float, tight: bool) -> Crop:
    """The square around a group of face boxes: with margin and the side step, or `tight` (neither)."""
    x0, y0 = min(b[0] for b in members), min(b[1] for b in members)
    x1, y1 = max(b[0] + b[2] for b in members), max(b[1] + b[3] for b in members)
    side = max(x1 - x0, y1 - y0) * (1 if tight else 1 + 2 * margin)
    return _square((x0 + x1) / 2, (y0 + y1) / 2, side, height, width, 2 if tight else SIDE_STEP)


def check_boxes(boxes: Sequence[Sequence[int]], height: int, width: int) -> list[tuple[int, int, int, int]]:
    out = []
    for b in boxes:
        if len(b) != 4:
            raise ProfaceError(f"face box {tuple(b)}: need x,y,w,h")
        x, y, w, h = (int(v) for v in b)
        if w < 8 or h < 8:
            raise ProfaceError(f"face box {x},{y},{w},{h}: a face must be at least 8×8 pixels")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise ProfaceError(f"face box {x},{y},{w},{h} lies outside the {width}×{height} image")
        out.append((x, y, w, h))
    return out


def crops_for(boxes: Sequence[tuple[int, int, int, int]], height: int, width: int,
              margin: float = MARGIN) -> list[tuple[Crop, list[tuple[int, int, int, int]]]]:
    """Square crops (each with the face boxes it holds), none overlapping, sorted top-left first.

    Two crops that would overlap first lose their margin and side rounding (so close faces keep
    crops of their own and the background between them stays untouched); if they still overlap,
    they merge into one crop around both.
    """
    groups = [{"members": [tuple(b)], "tight": False} for b in boxes]
    for g in groups:
        g["crop"] = _crop_of(g["members"], height, width, margin, False)
    changed = True
    while changed:
        changed = False
        for i, j in ((i, j) for i in range(len(groups)) for j in range(i + 1, len(groups))):
            a, b = groups[i], groups[j]
            if not a["crop"].overlaps(b["crop"]):
                continue
            if not (a["tight"] and b["tight"]):
                for g in (a, b):
                    g["tight"] = True
                    g["crop"] = _crop_of(g["members"], height, width, margin, True)
            else:
                a["members"] += b["members"]
                a["crop"] = _crop_of(a["members"], height, width, margin, True)
                del groups[j]
            changed = True
            break
    for g in groups:
        if g["crop"].size < fmt.MIN_SIDE:
            raise ProfaceError(f"the image is too small for a face crop ({width}×{height}; need {fmt.MIN_SIDE}×{fmt.MIN_SIDE})")
    return sorted(((g["crop"], g["members"]) for g in groups), key=lambda g: (g[0].y, g[0].x))


def plan(image_u8: np.ndarray, faces: str = "auto", boxes=(), detector: str | None = None,
         where: str = "the image") -> list | None:
    """The face boxes to protect in place, or None to protect the whole image.

    faces="whole": None. "boxes": `boxes` as given. "auto": detected faces plus `boxes`; None for a
    small face-less image (taken for an aligned crop) or an image that is itself one face crop;
    `NoFaceFound` for a larger image without a face.
    """
    h, w = image_u8.shape[:2]
    if faces == "whole":
        return None
    boxes = list(boxes or [])
    if faces == "boxes":
        if not boxes:
            raise ProfaceError("--faces boxes needs at least one --box x,y,w,h")
        return boxes
    if faces != "auto":
        raise ProfaceError(f"faces must be 'auto', 'whole' or 'boxes', got {faces!r}")
    from proface_jax import face_detect

    boxes = list(face_detect.detect_faces(image_u8, detector or face_detect.DEFAULT_DETECTOR)) + boxes
    if not boxes:
        if max(h, w) <= SMALL_IMAGE:
            return None
        raise NoFaceFound(f"no face found in {where}: nothing written; pass --box x,y,w,h "
                          "(repeatable), or --faces whole to protect the whole image")
    groups = crops_for(check_boxes(boxes, h, w), h, w)
    if len(groups) == 1 and groups[0][0].size >= 0.8 * min(h, w) and not (h % 2 or w % 2):
        return None  # the image is a face crop: protect it whole, as the model was trained
    return boxes


def blend_mask(size: int, boxes_in_crop: Sequence[tuple[float, float, float, float]], feather: float = 0.35) -> np.ndarray:
    """[size, size] in [0, 1]: 1 over each face (an ellipse a little larger than its box), 0 at the crop's border."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    m = np.zeros((size, size), np.float32)
    for bx, by, bw, bh in boxes_in_crop:
        d = np.hypot((xx - bx - bw / 2) / (0.4 * bw), (yy - by - bh / 2) / (0.45 * bh))
        t = np.clip((1 + feather - d) / feather, 0, 1)
        m = np.maximum(m, t * t * (3 - 2 * t))
    edge = np.minimum(np.minimum(xx, yy), np.minimum(size - xx, size - yy))
    return m * np.clip(edge / (0.06 * size), 0, 1)


def obfuscated_target(crop_u8: np.ndarray, boxes_in_crop, obfuscator: str, seed: int = 0,
                      donors: str | None = None) -> np.ndarray:
    """y for one crop, [-1, 1] float32 [S, S, 3]: the obfuscator at 112×112, resized, faded into the original."""
    s = crop_u8.shape[0]
    small = crop_u8 if s == MODEL_SIZE else images.resize(crop_u8, (MODEL_SIZE, MODEL_SIZE))
    y = images.from_unit(photo.obfuscate(small, obfuscator, seed, donors)[0])
    if s != MODEL_SIZE:
        y = images.resize(y, (s, s))
    m = blend_mask(s, boxes_in_crop)[..., None]
    return m * images.to_unit(y) + (1 - m) * images.to_unit(crop_u8)


def protect_crop(ck: Checkpoint, image_u8: np.ndarray, crop: Crop, members, K, obfuscator: str, seed: int = 0,
                 donors: str | None = None) -> None:
    """Protects one crop of `image_u8` in place (its face boxes `members` in image coordinates)."""
    crop_u8 = image_u8[crop.slices()]
    inside = [(bx - crop.x, by - crop.y, bw, bh) for bx, by, bw, bh in members]
    y = obfuscated_target(crop_u8, inside, obfuscator, seed, donors)
    prot, _ = protocol.protect_jit(ck.params, images.to_unit(crop_u8)[None], y[None], K, ck.config)
    image_u8[crop.slices()] = images.from_unit(np.asarray(prot[0]))


def recover_crop(ck: Checkpoint, image_u8: np.ndarray, crop: Crop, K) -> None:
    """Recovers one protected crop of `image_u8` in place."""
    rec, _ = protocol.recover_jit(ck.params, images.to_unit(image_u8[crop.slices()])[None], K, ck.config)
    image_u8[crop.slices()] = images.from_unit(np.asarray(rec[0]))


def protect_faces(ck: Checkpoint, photo_u8: np.ndarray, password: str | bytes, boxes=None,
                  detector: str | None = None, obfuscator: str = "blur", kdf: str | keys.KDF = "strong",
                  margin: float = MARGIN, seed: int = 0, donors: str | None = None,
                  tag: bool | None = None,
                  salts: Callable[[], bytes] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """-> (the photo with every face protected in place, format-3 metadata).

    `boxes` (x, y, w, h) are used as given; None detects faces with `detector`.
    Raises `NoFaceFound` when there is none. `salts` draws each face's salt (default: fresh
    random ones; `batch_protect` passes seeded ones for reproducible runs).
    """
    a = np.asarray(photo_u8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
        raise ProfaceError(f"expected 8-bit RGB pixels [H, W, 3], got {a.dtype} {tuple(a.shape)}")
    h, w = a.shape[:2]
    if boxes is None:
        from proface_jax import face_detect

        boxes = face_detect.detect_faces(a, detector or face_detect.DEFAULT_DETECTOR)
    boxes = check_boxes(boxes, h, w)
    if not boxes:
        raise NoFaceFound("no face found in the photo: pass --box x,y,w,h, or --faces whole to protect it whole")
    groups = crops_for(boxes, h, w, margin)
    kdf = keys.strong_kdf() if kdf == "strong" else keys.resolve_kdf(kdf)
    fk = keys.file_keys(password, kdf)
    out = a.copy()
    faces = []
    for crop, members in groups:
        salt = salts() if salts is not None else os.urandom(keys.SALT_BYTES)
        protect_crop(ck, out, crop, members, keys.expand_map(fk.map_key, salt, crop.size, crop.size).K,
                     obfuscator, seed, donors)
        faces.append({"x": crop.x, "y": crop.y, "size": crop.size, "salt": base64.b64encode(salt).decode()})
    meta = {"format": fmt.META_FORMAT, "version": fmt.META_VERSION, "kdf": kdf.to_json(), "model_id": ck.model_id,
            "mode": ck.mode, "obfuscator": obfuscator, "height": h, "width": w, "faces": faces}
    if fmt.wants_tag(ck.mode, tag):
        meta["tag"] = fmt.compute_tag(fk.mac_key, meta, out)
    return out, fmt.validate_meta(meta, (h, w))


def recover_faces(ck: Checkpoint, pixels_u8: np.ndarray, meta: dict[str, Any], password: str | bytes,
                  check_model: bool = True, verify: bool = True) -> np.ndarray:
    """-> the photo with every face recovered; pixels outside the face crops are returned as they are."""
    a = np.asarray(pixels_u8)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3:
        raise ProfaceError(f"expected 8-bit RGB pixels [H, W, 3], got {a.dtype} {tuple(a.shape)}")
    fmt.validate_meta(meta, a.shape[:2])
    if "faces" not in meta:
        raise ProfaceError("this file protects the whole image, not faces in it: use photo.recover_photo")
    if check_model and meta["model_id"] != ck.model_id:
        raise fmt.ProtectedImageError(f"image was protected with model {meta['model_id']}, but the checkpoint "
                                      f"{ck.path} is model {ck.model_id} ({ck.mode}); pass the matching --checkpoint")
    fk = keys.file_keys(password, keys.KDF.from_json(meta["kdf"]))
    if verify and "tag" in meta:
        fmt.verify_tag(fk.mac_key, meta, a)
    out = a.copy()
    for face in meta["faces"]:
        crop = Crop(face["x"], face["y"], face["size"])
        recover_crop(ck, out, crop, keys.expand_map(fk.map_key, base64.b64decode(face["salt"]), crop.size, crop.size).K)
    return out

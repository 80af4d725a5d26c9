"""Videos: every face of every frame protected in place, stored losslessly (FFV1 in Matroska).

    protect_video(ck, "clip.mp4", "protected.mkv", "pass phrase")
    recover_video(ck, "protected.mkv", "clip_back.mkv", "pass phrase")

Frame by frame, as `faces` does for one photo: faces are detected in each
frame and followed by a small IoU tracker (`Tracker`), so a face the detector
misses for a few frames stays protected and crops do not flicker in size.
Recovery needs every bit of every protected frame, so the output is FFV1
(lossless) in Matroska, written through the ffmpeg binary that the
`imageio-ffmpeg` wheel ships (the `[video]` extra); a lossy container is refused.

The metadata (JSON in the Matroska tag PROFACE) holds the KDF, the model id,
and each frame's crops; each crop's map comes from the file's map key and the
crop's (frame, index) as salt (`keys.expand_map`), so one KDF call serves the
whole video. The optional tag is an HMAC over the metadata and the SHA-256 of
all frames, checked in a first pass before anything is recovered. Outputs are
written to a temporary file and renamed into place: nothing half-written.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import jsonschema
import numpy as np

from proface_jax import faces, images, keys
from proface_jax import protected_format as fmt
from proface_jax.checkpoint import Checkpoint
from proface_jax.errors import ProfaceError, one_line

VIDEO_FORMAT = "proface-jax-protected-video"
VIDEO_VERSION = 1
MAX_META_BYTES = 8 * 2**20
MAX_FRAMES = 10**6
MAX_FACES_PER_FRAME = 64
TAG_NAME = "PROFACE"

_CROP = {"type": "array", "prefixItems": [{"type": "integer", "minimum": 0, "maximum": fmt.MAX_SIDE}] * 2
         + [{"type": "integer", "minimum": fmt.MIN_SIDE, "maximum": fmt.MAX_SIDE, "multipleOf": 2}],
         "minItems": 3, "maxItems": 3, "description": "x, y, side of a square crop"}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "proface-jax-protected-video.schema.json",
    "title": "proface-jax protected-video metadata (Matroska tag PROFACE of an FFV1 video)",
    "type": "object",
    "additionalProperties": False,
    "required": ["format", "version", "kdf", "model_id", "mode", "obfuscator", "height", "width", "frames", "fps",
                 "faces"],
    "properties": {
        **{k: fmt.SCHEMA["properties"][k] for k in ("kdf", "model_id", "mode", "obfuscator", "height", "width", "tag")},
        "format": {"const": VIDEO_FORMAT},
        "version": {"const": VIDEO_VERSION},
        "frames": {"type": "integer", "minimum": 1, "maximum": MAX_FRAMES},
        "fps": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
        "faces": {"type": "array", "maxItems": MAX_FRAMES,
                  "items": {"type": "array", "maxItems": MAX_FACES_PER_FRAME, "items": _CROP}},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class VideoError(ProfaceError):
    """A video that cannot be read, written or recovered."""


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError("video needs the ffmpeg binary of imageio-ffmpeg: pip install 'proface-jax[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def face_salt(frame: int, index: int) -> bytes:
    """Each crop's salt: unique within the file, whose own KDF salt makes the map key unique."""
    return b"proface-video-face" + struct.pack(">II", frame, index)


# ---- following faces from frame to frame ----

class Tracker:
    """Greedy IoU tracking: a face missed for up to `hold` frames keeps its last box.

    A matched box takes the detection's centre (a lagging centre would let a moving
    face slip out of its crop) and a smoothed size (so crops do not flicker).
    """

    def __init__(self, hold: int = 5, iou: float = 0.3, smooth: float = 0.5):
        self.hold, self.iou, self.smooth = hold, iou, smooth
        self.tracks: list[dict] = []

    @staticmethod
    def _iou(a, b) -> float:
        ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / (a[2] * a[3] + b[2] * b[3] - inter + 1e-9)

    def update(self, detections) -> list[tuple[int, int, int, int]]:
        unmatched = list(detections)
        for t in self.tracks:
            best = max(unmatched, key=lambda d: self._iou(t["box"], d), default=None)
            if best is not None and self._iou(t["box"], best) >= self.iou:
                unmatched.remove(best)
                side = self.smooth * np.asarray(t["box"][2:]) + (1 - self.smooth) * np.asarray(best[2:], float)
                cx, cy = best[0] + best[2] / 2, best[1] + best[3] / 2
                t["box"] = (cx - side[0] / 2, cy - side[1] / 2, side[0], side[1])
                t["missed"] = 0
            else:
                t["missed"] += 1
        self.tracks = [t for t in self.tracks if t["missed"] <= self.hold]
        self.tracks += [{"box": tuple(float(v) for v in d), "missed": 0} for d in unmatched]
        return [tuple(int(round(v)) for v in t["box"]) for t in self.tracks]


# ---- reading and writing frames ----

def _read_frames(path: Path, max_pixels: int) -> tuple[dict, Iterator[np.ndarray]]:
    _ffmpeg()  # a one-line error naming the [video] extra where imageio-ffmpeg is missing
    import imageio_ffmpeg

    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        info = next(gen)
    except (RuntimeError, OSError, StopIteration) as e:
        raise VideoError(f"{path}: not a video ffmpeg can read ({one_line(e, 120)})") from None
    w, h = info["size"]
    if w * h > max_pixels:
        gen.close()
        raise VideoError(f"{path}: frames of {w}×{h} exceed the limit of {max_pixels:,} pixels (--max-pixels)")

    def frames():
        try:
            for raw in gen:
                yield np.frombuffer(raw, np.uint8).reshape(h, w, 3)
        except RuntimeError as e:
            raise VideoError(f"{path}: corrupt video ({one_line(e, 120)})") from None

    return info, frames()


class _LosslessWriter:
    """FFV1/Matroska frames into a temporary file beside `out`; `commit` adds the metadata tag and renames."""

    def __init__(self, out: Path, width: int, height: int, fps: float):
        _ffmpeg()
        import imageio_ffmpeg

        if out.suffix.lower() != ".mkv":
            raise VideoError(f"--out {out}: write .mkv (FFV1, lossless); lossy video destroys the hidden faces")
        self.out = out
        fd, self.tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".frames.mkv", dir=out.parent)
        os.close(fd)
        self.writer = imageio_ffmpeg.write_frames(self.tmp, (width, height), pix_fmt_in="rgb24", pix_fmt_out="bgr0",
                                                  codec="ffv1", fps=fps, macro_block_size=1,
                                                  output_params=["-level", "3"], ffmpeg_log_level="error")
        self.writer.send(None)

    def send(self, frame: np.ndarray) -> None:
        self.writer.send(np.ascontiguousarray(frame))

    def commit(self, meta: dict | None) -> None:
        """Into place: with the metadata tag (a protected video, one remux) or as written (a recovered one)."""
        self.writer.close()
        final = self.tmp
        try:
            if meta is not None:  # the tag holds what only the finished frames decide: add it by a stream copy
                fd, final = tempfile.mkstemp(prefix=f".{self.out.name}.", suffix=".mkv", dir=self.out.parent)
                os.close(fd)
                text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
                run = subprocess.run([_ffmpeg(), "-v", "error", "-y", "-i", self.tmp, "-c", "copy",
                                      "-metadata", f"{TAG_NAME}={text}", final], capture_output=True, text=True)
                if run.returncode:
                    raise VideoError(f"cannot write {self.out}: ffmpeg: {one_line(run.stderr, 200)}")
            os.chmod(final, images.new_file_mode(self.out))
            os.replace(final, self.out)
            final = None
        finally:
            for p in (self.tmp, final):
                if p and os.path.exists(p):
                    os.unlink(p)

    def abort(self) -> None:
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - cleaning up after an error already on its way
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


def read_meta(path: Path) -> dict[str, Any]:
    """The PROFACE tag of a protected video, parsed strictly and validated."""
    run = subprocess.run([_ffmpeg(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"], capture_output=True)
    if run.returncode:
        raise VideoError(f"{path}: not a video ffmpeg can read ({one_line(run.stderr.decode(errors='replace'), 160)})")
    text = None
    for line in run.stdout.decode("utf-8", errors="replace").split("\n"):
        if line.upper().startswith(TAG_NAME + "="):
            text = re.sub(r"\\(.)", r"\1", line[len(TAG_NAME) + 1:])  # ffmetadata escapes = ; # \ with a backslash
    if text is None:
        raise VideoError(f"{path}: not a proface-protected video (no {TAG_NAME} tag); was it re-encoded?")
    return validate_meta(fmt.parse_meta(text, MAX_META_BYTES))


def validate_meta(meta: Any) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != VIDEO_FORMAT:
        raise VideoError("not a proface-protected video (no proface video metadata object)")
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(meta))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise VideoError(f"invalid proface video metadata at {where}: {one_line(error.message, 160)}")
    keys.KDF.from_json(meta["kdf"])
    if len(meta["faces"]) != meta["frames"]:
        raise VideoError(f"invalid proface video metadata: {len(meta['faces'])} frames of faces for {meta['frames']} frames")
    for i, crops in enumerate(meta["faces"]):
        try:
            fmt.check_crops(crops, meta["height"], meta["width"])
        except fmt.ProtectedImageError as e:
            raise VideoError(f"frame {i}: {e}") from None
    return meta


def _tag(mac_key: bytes, meta: dict, frames_sha256: bytes) -> str:
    import base64

    body = json.dumps({k: v for k, v in meta.items() if k != "tag"}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()
    mac = hmac.new(mac_key, b"proface-jax video tag v1\x00" + struct.pack(">I", len(body)) + body + frames_sha256,
                   hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, leave=False)


# ---- the two operations ----

def protect_video(ck: Checkpoint, src: str | os.PathLike, out: str | os.PathLike, password: str | bytes,
                  detector: str | None = None, obfuscator: str = "blur", kdf: str | keys.KDF = "strong",
                  tag: bool | None = None, boxes: Callable[[int, np.ndarray], list] | None = None,
                  max_pixels: int = images.MAX_PIXELS, progress: bool = True) -> dict[str, Any]:
    """Protects every tracked face of every frame of `src` into `out` (.mkv); returns the metadata.

    `boxes(frame_index, frame)` replaces detection (tests, or boxes from elsewhere).
    """
    src, out = Path(src), Path(out)
    info, frames = _read_frames(src, max_pixels)
    (w, h), fps = info["size"], float(info.get("fps") or 25.0)
    if boxes is None:
        from proface_jax import face_detect

        name = detector or face_detect.DEFAULT_DETECTOR
        boxes = lambda i, frame: face_detect.detect_faces(frame, name)  # noqa: E731
    kdf = keys.strong_kdf() if kdf == "strong" else keys.resolve_kdf(kdf)
    fk = keys.file_keys(password, kdf)
    tracker, digest, all_crops = Tracker(), hashlib.sha256(), []
    writer = _LosslessWriter(out, w, h, fps)
    try:
        total = int(round(info.get("duration", 0) * fps)) or None
        with _progress(total, "protect", progress) as bar:
            for i, frame in enumerate(frames):
                frame = frame.copy()
                tracked = faces.check_boxes([_inside(b, h, w) for b in tracker.update(boxes(i, frame))], h, w)
                groups = faces.crops_for(tracked, h, w) if tracked else []
                for j, (crop, members) in enumerate(groups):
                    K = keys.expand_map(fk.map_key, face_salt(i, j), crop.size, crop.size).K
                    faces.protect_crop(ck, frame, crop, members, K, obfuscator)
                all_crops.append([[c.x, c.y, c.size] for c, _ in groups])
                digest.update(frame.tobytes())
                writer.send(frame)
                bar.update(1)
        if not all_crops:
            raise VideoError(f"{src}: no frames")
        meta = {"format": VIDEO_FORMAT, "version": VIDEO_VERSION, "kdf": kdf.to_json(), "model_id": ck.model_id,
                "mode": ck.mode, "obfuscator": obfuscator, "height": h, "width": w, "frames": len(all_crops),
                "fps": fps, "faces": all_crops}
        if fmt.wants_tag(ck.mode, tag):
            meta["tag"] = _tag(fk.mac_key, meta, digest.digest())
        validate_meta(meta)
        writer.commit(meta)
    except BaseException:
        writer.abort()
        raise
    return meta


def _inside(box, h: int, w: int):
    """A tracked box clipped to the frame (smoothing can push one a pixel past the edge)."""
    x, y, bw, bh = box
    x0, y0 = min(max(x, 0), w - 8), min(max(y, 0), h - 8)
    return x0, y0, max(8, min(bw, w - x0)), max(8, min(bh, h - y0))


def recover_video(ck: Checkpoint, src: str | os.PathLike, out: str | os.PathLike, password: str | bytes,
                  verify: bool = True, max_pixels: int = images.MAX_PIXELS, progress: bool = True) -> dict[str, Any]:
    """Recovers every face of every frame of a protected `src` into `out` (.mkv); returns the metadata."""
    src, out = Path(src), Path(out)
    meta = read_meta(src)
    if meta["model_id"] != ck.model_id:
        raise fmt.ProtectedImageError(f"video was protected with model {meta['model_id']}, but the checkpoint "
                                      f"{ck.path} is model {ck.model_id} ({ck.mode}); pass the matching --checkpoint")
    fk = keys.file_keys(password, keys.KDF.from_json(meta["kdf"]))
    if verify and "tag" in meta:  # first pass: check every bit before recovering anything
        info, frames = _read_frames(src, max_pixels)
        digest, n = hashlib.sha256(), 0
        for frame in frames:
            digest.update(frame.tobytes())
            n += 1
        if n != meta["frames"] or not hmac.compare_digest(_tag(fk.mac_key, meta, digest.digest()), meta["tag"]):
            raise fmt.TagMismatch("wrong password, or the protected video was modified (authentication tag "
                                  "mismatch); nothing recovered")
    info, frames = _read_frames(src, max_pixels)
    if tuple(info["size"]) != (meta["width"], meta["height"]):
        raise VideoError(f"{src}: frames are {info['size'][0]}×{info['size'][1]}, metadata says "
                         f"{meta['width']}×{meta['height']}")
    writer = _LosslessWriter(out, meta["width"], meta["height"], meta["fps"])
    try:
        n = 0
        with _progress(meta["frames"], "recover", progress) as bar:
            for i, frame in enumerate(frames):
                if i >= meta["frames"]:
                    raise VideoError(f"{src}: more frames than its metadata's {meta['frames']}")
                frame = frame.copy()
                for j, (x, y, s) in enumerate(meta["faces"][i]):
                    faces.recover_crop(ck, frame, faces.Crop(x, y, s), keys.expand_map(fk.map_key, face_salt(i, j), s, s).K)
                writer.send(frame)
                n += 1
                bar.update(1)
        if n != meta["frames"]:
            raise VideoError(f"{src}: {n} frames, its metadata says {meta['frames']}")
        writer.commit(None)
    except BaseException:
        writer.abort()
        raise
    return meta

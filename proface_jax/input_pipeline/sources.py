"""Face sources: folders and TFDS datasets, their train/validation/test splits and face crops.


Sources (`open_source(spec, split)`)
------------------------------------
- ``folder:PATH`` -- every image file (.jpg .jpeg .png .bmp .webp, any case) under
  PATH, recursively, hidden files skipped, sorted by relative path. The split is
  chosen per file by a hash of its path relative to PATH (`split_bucket`):
  sha256 -> a number in [0, 1) -> train [0, 0.8), validation [0.8, 0.9),
  test [0.9, 1). The fractions can be overridden; the intervals are always laid
  out in the order train, validation, test. Adding or removing files never
  moves another file between splits (changing the fractions does). Faces are
  assumed aligned crops: the centre square is taken.
  A corrupt or unreadable file is an error naming the file (`images.ImageError`),
  raised where the batch that needs it is consumed -- never a silent skip,
  so that a "deterministic" order never depends on which files happen to decode.
- ``tfds:celeb_a`` -- `tfds.data_source("celeb_a", split=...)` (array_record
  format, no TensorFlow needed to read). Splits train/validation/test are the
  dataset's own; any tfds split string ("train[:1000]") is passed through.
  Crop: the 148x148 face square at rows 40:188, cols 15:163 of the 218x178
  aligned image (the usual CelebA face crop), scaled proportionally if the
  image has another size.
- ``tfds:lfw`` -- tfds has only a "train" split (13,233 images). train /
  validation / test are derived from it by the same hash rule applied to the
  record index (``"lfw:<index>"``), so they are stable for one prepared copy of
  the dataset (tfds fixes the record order per dataset version); "all" is the
  whole set. Identities are NOT kept disjoint across these splits (LFW serves
  as an evaluation set in the paper). Crop: the central 150x150 of 250x250
  (faces in LFW are centred by the detector).
- ``tfds:OTHER`` -- passed through to tfds with a centre-square crop.

`open_source` raises ValueError naming the problem for an unknown scheme, a
missing folder, a split with no images, or a tfds dataset that is not
prepared (data_source never downloads unless `download=True`).

A source is random access: ``len(src)`` and ``src[i] -> Face(image, name)``
where image is the face-cropped uint8 [H, W, 3] (not yet resized).

Values: faces are cropped here; `batches` resizes them to float32 [-1, 1].
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import operator
import os
from pathlib import Path
from typing import Any, NamedTuple, Protocol, Sequence

import numpy as np

from proface_jax import images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


class Face(NamedTuple):
    image: np.ndarray  # uint8 [H, W, 3], face-cropped
    name: str


class Source(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Face: ...


# --------------------------------------------------------------------------- crops


@dataclasses.dataclass(frozen=True)
class FaceCrop:
    """A square crop: centre (cy, cx) as fractions of height/width, side as a fraction of min(h, w)."""

    cy: float = 0.5
    cx: float = 0.5
    side: float = 1.0

    def box(self, h: int, w: int) -> tuple[int, int, int]:
        """(top, left, side) in pixels, clamped inside the image."""
        s = max(1, min(h, w, int(round(self.side * min(h, w)))))
        top = min(max(int(round(self.cy * h - s / 2)), 0), h - s)
        left = min(max(int(round(self.cx * w - s / 2)), 0), w - s)
        return top, left, s

    def __call__(self, image: np.ndarray) -> np.ndarray:
        top, left, s = self.box(image.shape[0], image.shape[1])
        return image[top:top + s, left:left + s]


CENTER_SQUARE = FaceCrop()
# CelebA aligned (218 high, 178 wide): rows 40:188, cols 15:163.
CELEBA_CROP = FaceCrop(cy=114 / 218, cx=89 / 178, side=148 / 178)
# LFW (250x250, face centred by the Viola-Jones detector): central 150x150.
LFW_CROP = FaceCrop(cy=0.5, cx=0.5, side=0.6)


def preprocess(face_u8: np.ndarray, size: int) -> np.ndarray:
    """Face-cropped uint8 [H, W, 3] -> float32 [size, size, 3] in [-1, 1]."""
    if face_u8.shape[:2] != (size, size):
        face_u8 = images.resize(np.ascontiguousarray(face_u8), (size, size))
    return images.to_unit(face_u8)


def _as_rgb_u8(image: Any, where: str) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{where}: expected an [H, W, 3] image, got shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return a[..., :3]


# --------------------------------------------------------------------------- splits


def split_bucket(key: str) -> float:
    """A stable number in [0, 1) for a file name (sha256, so it never depends on the Python hash seed)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _check_fractions(fractions: dict[str, float] | None) -> dict[str, float]:
    f = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    unknown = set(f) - set(SPLITS)
    if unknown:
        raise ValueError(f"split fractions: unknown split(s) {sorted(unknown)}; known: {SPLITS}")
    f = {s: float(f.get(s, 0.0)) for s in SPLITS}
    if any(v < 0 for v in f.values()) or not math.isclose(sum(f.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {f}")
    return f


def split_of(key: str, fractions: dict[str, float] | None = None) -> str:
    """Which of train/validation/test a file name falls into."""
    f = _check_fractions(fractions)
    b = split_bucket(key)
    lo = 0.0
    for s in SPLITS:
        hi = lo + f[s]
        if b < hi:
            return s
        lo = hi
    return [s for s in SPLITS if f[s] > 0][-1]  # b within rounding of 1.0


def _select(keys: Sequence[str], split: str, fractions: dict[str, float] | None) -> list[int]:
    split = _normalize_split(split)
    if split == "all":
        return list(range(len(keys)))
    f = _check_fractions(fractions)
    return [i for i, k in enumerate(keys) if split_of(k, f) == split]


def _normalize_split(split: str) -> str:
    s = {"val": "validation", "valid": "validation"}.get(split, split)
    if s not in SPLITS + ("all",):
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS + ('all',)}")
    return s


# --------------------------------------------------------------------------- sources


def list_images(root: str | os.PathLike) -> list[str]:
    """Image files under `root` (recursive, hidden ones skipped), as sorted relative POSIX paths."""
    root = Path(root)
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file():
            out.append(rel.as_posix())
    return sorted(out)


class FolderSource:
    """Image files of one split of a folder; names are paths relative to the folder."""

    def __init__(self, root: str | os.PathLike, names: Sequence[str], crop: FaceCrop = CENTER_SQUARE):
        self.root = Path(root)
        self.names = list(names)
        self.crop = crop

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> Face:
        i = _check_index(index, len(self))
        path = self.root / self.names[i]
        return Face(self.crop(images.load_rgb(path)), self.names[i])

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r}, {len(self)} images)"


class TfdsSource:
    """Records of a `tfds.data_source`, optionally a subset of its indices."""

    def __init__(self, data_source: Any, dataset: str, split: str, crop: FaceCrop,
                 indices: Sequence[int] | None = None):
        self.data_source = data_source
        self.dataset = dataset
        self.split = split
        self.crop = crop
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.data_source) if self.indices is None else len(self.indices)

    def __getitem__(self, index: int) -> Face:
        i = _check_index(index, len(self))
        j = int(i if self.indices is None else self.indices[i])
        ex = self.data_source[j]
        where = f"tfds:{self.dataset} {self.split} record {j}"
        image = self.crop(_as_rgb_u8(ex["image"], where))
        label = ex.get("label") if isinstance(ex, dict) else None
        if isinstance(label, bytes):
            label = label.decode("utf-8", "replace")
        name = f"{self.dataset}/{self.split}/{j:06d}" + (f"_{label}" if isinstance(label, str) else "")
        return Face(image, name)

    def __repr__(self) -> str:
        return f"TfdsSource({self.dataset!r}, {self.split!r}, {len(self)} records)"


class ArraySource:
    """Already decoded faces in memory: uint8 [N, H, W, 3] plus names."""

    def __init__(self, images_u8: np.ndarray, names: Sequence[str]):
        images_u8 = np.asarray(images_u8)
        if images_u8.dtype != np.uint8 or images_u8.ndim != 4 or images_u8.shape[-1] != 3:
            raise ValueError(f"ArraySource: expected uint8 [N, H, W, 3], got {images_u8.dtype} {images_u8.shape}")
        if len(names) != len(images_u8):
            raise ValueError(f"ArraySource: {len(images_u8)} images but {len(names)} names")
        self.images = images_u8
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Face:
        i = _check_index(index, len(self))
        return Face(self.images[i], self.names[i])


class Subset:
    """The records of `source` at `indices`, in that order (e.g. `test_sample`'s 1K)."""

    def __init__(self, source: Source, indices: Sequence[int]):
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise ValueError(f"Subset: indices out of range for a source of {len(source)}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Face:
        return self.source[int(self.indices[_check_index(index, len(self))])]


def _check_index(index: int, n: int) -> int:
    i = operator.index(index)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"index {index} out of range for a source of {n}")
    return i


_TFDS_CROPS = {"celeb_a": CELEBA_CROP, "lfw": LFW_CROP}


def open_source(spec: str, split: str, data_dir: str | os.PathLike | None = None, *,
                fractions: dict[str, float] | None = None, crop: FaceCrop | None = None,
                download: bool = False) -> Source:
    """Opens ``folder:PATH`` or ``tfds:NAME`` for one split (see the module docstring).

    `data_dir` is the tfds data directory (ignored for folders); `fractions`
    overrides the hash-split fractions of folders and of lfw; `crop` overrides
    the face crop; `download=True` lets tfds download and prepare a dataset.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"data source {spec!r}: expected 'folder:PATH' or 'tfds:NAME'")
    scheme, _, rest = spec.partition(":")
    if not rest:
        raise ValueError(f"data source {spec!r}: nothing after '{scheme}:'")
    if scheme == "folder":
        return _open_folder(spec, Path(rest).expanduser(), split, fractions, crop)
    if scheme == "tfds":
        return _open_tfds(spec, rest, split, data_dir, fractions, crop, download)
    raise ValueError(f"data source {spec!r}: unknown scheme {scheme!r}; expected 'folder:' or 'tfds:'")


def _open_folder(spec, root: Path, split, fractions, crop) -> FolderSource:
    if not root.exists():
        raise ValueError(f"data source {spec!r}: folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"data source {spec!r}: {root} is not a folder")
    names = list_images(root)
    if not names:
        raise ValueError(f"data source {spec!r}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {root}")
    chosen = [names[i] for i in _select(names, split, fractions)]
    if not chosen:
        raise ValueError(f"data source {spec!r}: split {split!r} is empty ({len(names)} files in the folder)")
    return FolderSource(root, chosen, CENTER_SQUARE if crop is None else crop)


def _open_tfds(spec, name, split, data_dir, fractions, crop, download) -> TfdsSource:
    import tensorflow_datasets as tfds  # lazily: folders need no tfds

    base = name.split("/")[0].split(":")[0]
    crop = _TFDS_CROPS.get(base, CENTER_SQUARE) if crop is None else crop
    derived = base == "lfw"  # only a "train" split upstream: derive ours by hash
    tfds_split = "train" if derived else split
    if derived:
        split = _normalize_split(split)
    try:
        ds = tfds.data_source(name, split=tfds_split, data_dir=data_dir, download=download)
    except Exception as e:  # DatasetNotFoundError, AssertionError (not prepared), format errors...
        first = (str(e).strip().splitlines() or [""])[0]  # DatasetNotFoundError lists every dataset
        where = data_dir if data_dir is not None else "$TFDS_DATA_DIR or ~/tensorflow_datasets"
        hint = "" if download else (f"; tfds.data_source needs it prepared in array_record format in {where}"
                                    f" (`tfds build {base} --file_format=array_record`) or download=True")
        raise ValueError(f"data source {spec!r}, split {tfds_split!r}: cannot open with "
                         f"tfds.data_source: {type(e).__name__}: {first}{hint}") from e
    indices = None
    if derived and split != "all":
        keys = [f"{base}:{j}" for j in range(len(ds))]
        indices = _select(keys, split, fractions)
    src = TfdsSource(ds, base, split, crop, indices)
    if len(src) == 0:
        raise ValueError(f"data source {spec!r}: split {split!r} is empty")
    return src


# --------------------------------------------------------------------------- samplers


def test_sample(source: Source | int, n: int = 1000, seed: int = 0) -> np.ndarray:
    """Fixed indices for the paper's 1K test protocol: n distinct indices, sorted; all if fewer.

    A pure function of (len(source), n, seed). Wrap with `Subset(source, idx)`.
    """
    size = source if isinstance(source, int) else len(source)
    if n < 0:
        raise ValueError(f"test_sample: n must be >= 0, got {n}")
    if size <= n:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng([int(seed), 1000003])
    return np.sort(rng.choice(size, size=n, replace=False)).astype(np.int64)


test_sample.__test__ = False  # not a pytest test despite its name

"""Protecting a whole folder of face images with one model: resumable, and splittable over processes.

    summary = protect_folder(ck, "faces/", "protected/", password, Options(obfuscator="blur"))

Which files: every file under the input folder with an image extension (`IMAGE_EXTENSIONS`;
hidden files and other extensions are left alone, and counted), in the order of their sorted
relative paths. `a/b.jpg` is written to OUT/a/b.png (protected files are PNG); two inputs that
would share an output (a.jpg and a.png) are refused before any work.

Each file is protected as `proface protect` does it (`faces.plan`: detected faces in place, or
the whole image when it is itself a face crop; `Options.faces="whole"` skips detection), with
its own salts: one for the KDF (a scrypt per file, as `proface protect`) and one per face.

Several processes: process i of N takes files i, i+N, i+2N, ... of that order (`shard`); they
share nothing but the output folder, so no coordinator is needed (SLURM: --process-id
$SLURM_PROCID --num-processes $SLURM_NTASKS).

Resuming: outputs are written atomically, so an output that exists is whole; it is skipped.

Salts: fresh random ones (os.urandom) by default, the safe choice. With a `salt_seed`, each
file's salts are HMAC-SHA256(seed, file's relative path, counter) (`SeededSalts`), so the
outputs are byte-identical whatever the number of processes, and a rerun reproduces them.
Salts are stored in the files (they are public), but a seed known in advance lets an attacker
precompute password guesses for the files it will salt: keep it as secret as the password.

A file that cannot be read or protected gets one error line, and the run goes on;
`protect_folder` returns the counts (failures too) and the CLI exits non-zero if any failed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import sys
from pathlib import Path
from typing import Callable, NamedTuple, TextIO

from proface_jax import images, keys
from proface_jax.errors import ProfaceError, one_line

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
SALT_INFO = b"proface-jax protect-folder salts v1"


class Job(NamedTuple):
    rel: str  # relative path of the input, POSIX separators (the sort key and the salt label)
    src: Path
    dst: Path


@dataclasses.dataclass(frozen=True)
class Options:
    """How each file is protected (the options of `proface protect`)."""
    obfuscator: str = "blur"
    kdf: str = "strong"  # strong (scrypt, a salt per file) | paper (the authors' PBKDF2: weak, no salt)
    faces: str = "auto"  # auto | whole (see faces.plan)
    detector: str | None = None
    size: int | None = None  # centre-crop to a square and resize first
    seed: int = 0  # the obfuscator's random choices (mask sticker)
    donors: str | None = None  # swap's donor folder
    tag: bool | None = None
    max_pixels: int = images.MAX_PIXELS


class Summary(NamedTuple):
    protected: int
    skipped: int  # outputs already there (a resumed run)
    failed: int
    ignored: int  # files without an image extension (whole folder, not just this process's share)
    total: int  # this process's share of the image files


def plan(in_dir: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[list[Job], list[str]]:
    """(every image file as a Job in sorted relative-path order, the relative paths left alone)."""
    src_root, dst_root = Path(in_dir).resolve(), Path(out_dir).resolve()
    if not src_root.is_dir():
        raise ProfaceError(f"input folder {in_dir} does not exist or is not a folder")
    if dst_root == src_root or src_root in dst_root.parents:
        raise ProfaceError(f"output folder {out_dir} is inside the input folder {in_dir}: its files would be "
                           "taken for inputs on the next run; choose a folder outside it")
    jobs, ignored = [], []
    for dirpath, dirnames, filenames in os.walk(src_root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(src_root).as_posix()
            if name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored.append(rel)
                continue
            jobs.append(Job(rel, path, dst_root / Path(rel).with_suffix(".png")))
    jobs.sort(key=lambda j: j.rel)
    by_dst: dict[Path, str] = {}
    for j in jobs:
        if j.dst in by_dst:
            raise ProfaceError(f"{by_dst[j.dst]} and {j.rel} would both be written to {j.dst}; rename one")
        by_dst[j.dst] = j.rel
    return jobs, sorted(ignored)


def check_share(process_id: int, num_processes: int) -> None:
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ProfaceError(f"need --num-processes >= 1 and 0 <= --process-id < --num-processes, "
                           f"got process_id {process_id} of {num_processes}")


def shard(jobs: list[Job], process_id: int = 0, num_processes: int = 1) -> list[Job]:
    """Process `process_id`'s share: jobs process_id, process_id + N, ... (disjoint, together all)."""
    check_share(process_id, num_processes)
    return jobs[process_id::num_processes]


class SeededSalts:
    """The salts of one file, drawn in turn: HMAC-SHA256(key from the seed, info | path | counter)."""

    def __init__(self, salt_seed: str, rel: str):
        self.key = hashlib.sha256(SALT_INFO + b"\0seed\0" + str(salt_seed).encode("utf-8")).digest()
        self.rel, self.count = rel, 0

    def __call__(self) -> bytes:
        msg = SALT_INFO + b"\0" + self.rel.encode("utf-8") + b"\0" + str(self.count).encode()
        self.count += 1
        return hmac.new(self.key, msg, hashlib.sha256).digest()[:keys.SALT_BYTES]


def protect_file(ck, job: Job, password: str | bytes, opts: Options,
                 salts: Callable[[], bytes] | None = None) -> str:
    """Protects one file (the output written atomically); -> what was protected, for the log."""
    from proface_jax import faces, photo

    image = images.load_rgb(job.src, max_pixels=opts.max_pixels)
    if opts.size:
        image = images.resize(images.center_square(image), (opts.size, opts.size))
    boxes = faces.plan(image, opts.faces, (), opts.detector, job.rel)
    if opts.kdf == "strong":
        kdf = keys.strong_kdf(salts() if salts is not None else None)
    else:
        kdf = keys.resolve_kdf(opts.kdf)
    common = dict(obfuscator=opts.obfuscator, kdf=kdf, seed=opts.seed, donors=opts.donors, tag=opts.tag)
    if boxes is None:
        photo.check_photo(image, job.rel)
        protected, meta = photo.protect_photo(ck, image, password, **common)
        what = "whole image"
    else:
        protected, meta = faces.protect_faces(ck, image, password, boxes=boxes, salts=salts, **common)
        what = f"{len(meta['faces'])} face(s)"
    photo.save_protected(job.dst, protected, meta)
    return what


def protect_folder(ck, in_dir, out_dir, password: str | bytes, opts: Options = Options(), *,
                   salt_seed: str | None = None, process_id: int = 0, num_processes: int = 1,
                   progress: bool = False, log: TextIO | None = None) -> Summary:
    """Protects this process's share of the image files under `in_dir` into `out_dir` (see the module doc).

    Per-file failures are logged to `log` (default stderr) as one line each and counted.
    """
    from tqdm import tqdm

    log = sys.stderr if log is None else log
    if opts.kdf not in ("strong", "paper"):
        raise ProfaceError(f"kdf must be 'strong' or 'paper', got {opts.kdf!r}")
    keys.password_bytes(password)  # an empty password fails here, not once per file
    check_share(process_id, num_processes)
    jobs, ignored = plan(in_dir, out_dir)
    if ignored:
        print(f"proface: note: {len(ignored)} file(s) without an image extension left alone "
              f"(e.g. {ignored[0]})", file=log)
    mine = shard(jobs, process_id, num_processes)
    done = skipped = failed = 0
    with tqdm(mine, disable=not progress, desc=f"protect {process_id + 1}/{num_processes}", unit="file",
              dynamic_ncols=True) as bar:
        for job in bar:
            if job.dst.exists():
                skipped += 1
                continue
            salts = SeededSalts(salt_seed, job.rel) if salt_seed is not None else None
            try:
                protect_file(ck, job, password, opts, salts)
                done += 1
            except Exception as e:  # noqa: BLE001 - this file fails, the run goes on
                failed += 1
                why = one_line(e, 300) if isinstance(e, ProfaceError) else f"{type(e).__name__}: {one_line(e, 300)}"
                bar.write(f"proface: error: {job.rel}: {why}", file=log)
    return Summary(done, skipped, failed, len(ignored), len(mine))

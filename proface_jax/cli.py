"""The `proface` command: protect / recover a face photo, and a demo.

    proface demo [--out demo.png]
    proface protect FACE.jpg --out PROTECTED.png [--obfuscator blur] [--mode randwr|obfswr]
    proface recover PROTECTED.png --out RECOVERED.png
    proface protect-folder IN_DIR OUT_DIR [--salt-seed S] [--process-id I --num-processes N]

The password comes from --password-file FILE, the environment variable named by
--password-env (default PROFACE_PASSWORD), or a prompt; never from argv, where
other users of the machine can read it. Passwords are UTF-8 and normalised to
Unicode NFC; a password file loses exactly one trailing newline.

Every error is one line on stderr with exit status 2, and no output file is left
behind (writes are atomic); `--debug` shows the traceback instead. A protected
PNG is a stranger's input: `protected_format` validates it before use.
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
import traceback
from pathlib import Path

import numpy as np

from proface_jax.errors import ProfaceError, one_line

DEFAULT_PASSWORD_ENV = "PROFACE_PASSWORD"
MAX_PASSWORD_FILE_BYTES = 4096
DEFAULT_MAX_PIXELS = 40_000_000  # = images.MAX_PIXELS; not imported, to keep `--help` free of heavy imports


class CLIError(ProfaceError):
    pass


def _read_password_file(name: str) -> bytes:
    # Bounded read: the "file" may be /dev/zero or a pipe; FIFOs (`<(pass show x)`) are fine.
    try:
        with open(name, "rb") as f:
            data = f.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as e:
        raise CLIError(f"cannot read password file {name}: {e.strerror or e}") from None
    if len(data) > MAX_PASSWORD_FILE_BYTES:
        raise CLIError(f"password file {name} is longer than {MAX_PASSWORD_FILE_BYTES} bytes; is it the right file?")
    for newline in (b"\r\n", b"\n"):  # exactly one: `echo pw > file` adds it; other whitespace is the password's
        if data.endswith(newline):
            return data[: -len(newline)]
    return data


def read_password(args, confirm: bool) -> bytes:
    if args.password_file:
        pw = _read_password_file(args.password_file)
    elif os.environ.get(args.password_env):
        pw = os.environ[args.password_env].encode("utf-8", "surrogateescape")
    else:
        if not sys.stdin.isatty():
            raise CLIError(f"no password: use --password-file FILE, set ${args.password_env}, or run in a terminal")
        pw = getpass.getpass("password: ").encode("utf-8")
        if confirm and getpass.getpass("repeat password: ").encode("utf-8") != pw:
            raise CLIError("passwords do not match")
    if not pw:
        raise CLIError("empty password refused")
    try:
        pw.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError("the password is not UTF-8 text; save the password file as UTF-8") from None
    return pw


def load_model(name_or_path: str | None, mode: str | None = None):
    """The user's --checkpoint (path or shipped name), else the shipped model of `mode` (a name, never a path)."""
    from proface_jax import checkpoint

    if name_or_path:
        return checkpoint.load_checkpoint(name_or_path)
    return checkpoint.load_shipped(mode or "randwr")


def check_out(out: str, *inputs: str, video: bool = False) -> None:
    """Refuse, before any work, an output we could not write or that would replace an input."""
    out_p = Path(out)
    if video and out_p.suffix.lower() != ".mkv":
        raise CLIError(f"--out {out}: write .mkv (FFV1, lossless); lossy video destroys the hidden faces")
    if not video and out_p.suffix.lower() != ".png":
        raise CLIError(f"--out {out}: write PNG (.png); lossy formats destroy the hidden face")
    parent = out_p.parent
    if not parent.is_dir():
        raise CLIError(f"--out {out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"--out {out}: directory {parent} is not writable")
    if out_p.is_dir():
        raise CLIError(f"--out {out}: is a directory")
    for src in inputs:
        try:
            if out_p.exists() and os.path.samefile(out_p, src):
                raise CLIError(f"--out {out} is the input file; refusing to overwrite it")
        except OSError:
            pass


def load_face(path: str, size: int | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    from proface_jax import images

    notes: list[str] = []
    face = images.load_rgb(path, max_pixels=max_pixels, notes=notes)
    for note in notes:
        print(f"proface: note: {note}", file=sys.stderr)
    if size:
        face = images.resize(images.center_square(face), (size, size))
    return face


def plan_faces(args, image: np.ndarray) -> list | None:
    """The face boxes to protect in place, or None to protect the whole image (see --faces)."""
    from proface_jax import faces

    return faces.plan(image, args.faces, args.box, args.detector, args.input)


def cmd_protect(args) -> int:
    from proface_jax import faces, photo

    check_out(args.out, args.input)
    image = load_face(args.input, args.size, args.max_pixels)
    ck = load_model(args.checkpoint, args.mode)
    boxes = plan_faces(args, image)
    if boxes is None:
        photo.check_photo(image, args.input)
    pw = read_password(args, confirm=True)
    if boxes is None:
        protected, meta = photo.protect_photo(ck, image, pw, obfuscator=args.obfuscator, kdf=args.kdf,
                                              seed=args.seed, donors=args.donors, tag=args.tag)
        what = "whole image"
    else:
        protected, meta = faces.protect_faces(ck, image, pw, boxes=boxes, obfuscator=args.obfuscator, kdf=args.kdf,
                                              seed=args.seed, donors=args.donors, tag=args.tag)
        what = f"{len(meta['faces'])} face crop(s) in place"
    photo.save_protected(args.out, protected, meta)
    print(f"protected {args.input} -> {args.out} ({what}; model {ck.model_id}, {ck.mode}, {args.obfuscator}, "
          f"KDF {meta['kdf']['algorithm']}, {'with' if 'tag' in meta else 'no'} authentication tag)")
    return 0


def cmd_protect_folder(args) -> int:
    from proface_jax import batch_protect

    if args.faces == "whole" and args.detector:
        raise CLIError("--detector has no effect with --faces whole")
    batch_protect.check_share(args.process_id, args.num_processes)
    ck = load_model(args.checkpoint, args.mode)
    pw = read_password(args, confirm=True)
    opts = batch_protect.Options(obfuscator=args.obfuscator, kdf=args.kdf, faces=args.faces, detector=args.detector,
                                 size=args.size, seed=args.seed, donors=args.donors, tag=args.tag,
                                 max_pixels=args.max_pixels)
    s = batch_protect.protect_folder(ck, args.input, args.output, pw, opts, salt_seed=args.salt_seed,
                                     process_id=args.process_id, num_processes=args.num_processes,
                                     progress=args.progress if args.progress is not None else sys.stderr.isatty())
    part = f" (process {args.process_id} of {args.num_processes})" if args.num_processes > 1 else ""
    print(f"protect-folder{part}: {s.protected} protected, {s.skipped} already done, {s.failed} failed, "
          f"of {s.total} image file(s); model {ck.model_id}, {ck.mode}, {args.obfuscator}, "
          f"{'seeded' if args.salt_seed is not None else 'random'} salts")
    return 1 if s.failed else 0


def cmd_recover(args) -> int:
    from proface_jax import images, photo

    check_out(args.out, args.input)
    pixels, meta = photo.load_protected(args.input, max_pixels=args.max_pixels)
    ck = load_model(args.checkpoint, meta["mode"])
    pw = read_password(args, confirm=False)
    recovered = photo.recover_photo(ck, pixels, meta, pw, verify=not args.no_verify)
    images.save_png(args.out, recovered)
    checked = ("password checked by the file's authentication tag" if "tag" in meta and not args.no_verify
               else "a wrong password gives a wrong image, not an error")
    print(f"recovered {args.input} -> {args.out} (model {ck.model_id}, {ck.mode}); {checked}")
    return 0


def cmd_protect_video(args) -> int:
    from proface_jax import video

    check_out(args.out, args.input, video=True)
    ck = load_model(args.checkpoint, args.mode)
    pw = read_password(args, confirm=True)
    meta = video.protect_video(ck, args.input, args.out, pw, detector=args.detector, obfuscator=args.obfuscator,
                               kdf=args.kdf, tag=args.tag, max_pixels=args.max_pixels, progress=sys.stderr.isatty())
    n = sum(len(f) for f in meta["faces"])
    print(f"protected {args.input} -> {args.out} ({meta['frames']} frames, {n} face crops; model {ck.model_id}, "
          f"{ck.mode}, FFV1 lossless, {'with' if 'tag' in meta else 'no'} authentication tag)")
    return 0


def cmd_recover_video(args) -> int:
    from proface_jax import video

    check_out(args.out, args.input, video=True)
    meta = video.read_meta(Path(args.input))
    ck = load_model(args.checkpoint, meta["mode"])
    pw = read_password(args, confirm=False)
    video.recover_video(ck, args.input, args.out, pw, verify=not args.no_verify, max_pixels=args.max_pixels,
                        progress=sys.stderr.isatty())
    print(f"recovered {args.input} -> {args.out} ({meta['frames']} frames; model {ck.model_id}, {ck.mode})")
    return 0


def cmd_demo(args) -> int:
    from proface_jax import checkpoint, demo

    check_out(args.out)
    if not 16 <= args.size <= 1024 or args.size % 2:
        raise CLIError(f"--size {args.size}: the demo needs an even size in 16..1024")
    try:
        ck = load_model(args.checkpoint, args.mode)
        untrained = False
    except checkpoint.CheckpointError as e:
        if args.checkpoint:
            raise
        ck = checkpoint.untrained_checkpoint(mode=args.mode)
        untrained = True
        print(f"NOTE: {e}\nNOTE: running with UNTRAINED params (identity flow): the protected image equals the "
              "obfuscated one and recovery does not work. Train a model to see the real method.")
    print(f"model: {'UNTRAINED' if untrained else ck.path} ({ck.mode}, id {ck.model_id}); obfuscator {args.obfuscator}")
    print(demo.run(ck, args.out, args.obfuscator, args.size))
    return 0


def _size_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 16 <= v <= 8192 or v % 2:
        raise argparse.ArgumentTypeError(f"{v}: need an even size in 16..8192")
    return v


def _seed_arg(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"{v}: need 0 <= seed < 2^32")
    return v


def _box_arg(text: str) -> tuple[int, int, int, int]:
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: need x,y,w,h in pixels") from None
    if len(box) != 4 or min(box) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: need four non-negative integers x,y,w,h")
    return box


def _pixels_arg(text: str) -> int:
    try:
        v = int(float(text))
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v < 256:
        raise argparse.ArgumentTypeError(f"{v}: too small")
    return v


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (its default prints the usage block too)."""

    def error(self, message):
        self.exit(2, f"proface: error: {one_line(message)} (see {self.prog} --help)\n")


def _common_args(p):
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    p.add_argument("--max-pixels", type=_pixels_arg, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images with more pixels than this, checked before decoding "
                        f"(default {DEFAULT_MAX_PIXELS:,})")


def _protection_args(p, obfuscators) -> None:
    """What protect and protect-video share: model, obfuscator, KDF, detector, tag, password, limits."""
    p.add_argument("--obfuscator", default="blur", choices=obfuscators)
    p.add_argument("--mode", default="randwr", choices=("randwr", "obfswr"),
                   help="which shipped model: a wrong password gives noise (randwr) or the obfuscated face (obfswr)")
    p.add_argument("--checkpoint", help="checkpoint path or shipped name (overrides --mode)")
    p.add_argument("--kdf", default="strong", choices=("strong", "paper"),
                   help="strong: scrypt with a fresh salt (default); paper: the authors' PBKDF2 (weak, reproducible)")
    p.add_argument("--detector", help="face detector (default: the measured best; see proface_jax.face_detect)")
    p.add_argument("--tag", action=argparse.BooleanOptionalAction, default=None,
                   help="store an authentication tag so that recovery refuses a wrong password or a modified file "
                        "(default: on for randwr, off for obfswr, where a wrong password should look like y)")
    _password_args(p)
    _common_args(p)


def _recovery_args(p) -> None:
    p.add_argument("--checkpoint", help="checkpoint path or shipped name (default: the shipped model of the file's mode)")
    p.add_argument("--no-verify", action="store_true",
                   help="recover even if the authentication tag does not match (shows what a wrong password gives)")
    _password_args(p)
    _common_args(p)


def _password_args(p):
    p.add_argument("--password-file", help="read the password from this file (trailing newline dropped)")
    p.add_argument("--password-env", default=DEFAULT_PASSWORD_ENV,
                   help=f"environment variable holding the password (default {DEFAULT_PASSWORD_ENV})")


def build_parser() -> argparse.ArgumentParser:
    from proface_jax.photo import PHOTO_OBFUSCATORS

    ap = _Parser(prog="proface", description="Reversible password-keyed face obfuscation (PRO-Face S).")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("protect", help="hide a face inside its obfuscated version")
    p.add_argument("input", help="photo or aligned face crop (any format PIL reads)")
    p.add_argument("--out", required=True, help="protected image, written as 8-bit PNG")
    _protection_args(p, PHOTO_OBFUSCATORS)
    p.add_argument("--donors", help="folder of donor faces (for --obfuscator swap)")
    p.add_argument("--size", type=_size_arg, help="centre-crop to a square and resize to SIZE×SIZE first")
    p.add_argument("--seed", type=_seed_arg, default=0, help="seed of the obfuscator's random choices (mask sticker)")
    p.add_argument("--faces", default="auto", choices=("auto", "whole", "boxes"),
                   help="auto: detect every face (plus any --box) and protect each in place, the rest of the photo "
                        "untouched (an image that is itself a face crop is protected whole); whole: the whole "
                        "image as one face crop; boxes: only the --box faces")
    p.add_argument("--box", type=_box_arg, action="append", metavar="X,Y,W,H",
                   help="a face the detector missed (repeatable); pixels, top-left corner and size")
    p.set_defaults(func=cmd_protect)

    p = sub.add_parser("protect-folder", help="protect every face image of a folder (resumable; splits over processes)",
                       description="Protects every image under IN_DIR into OUT_DIR (same relative paths, .png), each "
                                   "file with its own salts. Files already in OUT_DIR are skipped, so a rerun resumes. "
                                   "A file that fails gets an error line and the run goes on; the exit status is 1 "
                                   "if any failed. See proface_jax.batch_protect.")
    p.add_argument("input", help="folder of face images (searched recursively)")
    p.add_argument("output", help="folder for the protected PNGs (created; not inside IN_DIR)")
    _protection_args(p, PHOTO_OBFUSCATORS)
    p.add_argument("--donors", help="folder of donor faces (for --obfuscator swap)")
    p.add_argument("--size", type=_size_arg, help="centre-crop each image to a square and resize to SIZE×SIZE first")
    p.add_argument("--seed", type=_seed_arg, default=0, help="seed of the obfuscator's random choices (mask sticker)")
    p.add_argument("--faces", default="auto", choices=("auto", "whole"),
                   help="auto: detect faces and protect each in place (a face crop is protected whole); "
                        "whole: every image is one face crop (no detection)")
    p.add_argument("--salt-seed", metavar="TEXT",
                   help="derive every file's salts from this secret and the file's path (reproducible, byte-identical "
                        "outputs whatever the number of processes); default: random salts (os.urandom), the safe "
                        "choice. A seed an attacker learns in advance lets them precompute password guesses")
    p.add_argument("--process-id", type=int, default=0, help="this process's index, 0..N-1 (SLURM: $SLURM_PROCID)")
    p.add_argument("--num-processes", type=int, default=1,
                   help="N processes split the files (sorted paths, every N-th); no coordinator needed")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_protect_folder)

    p = sub.add_parser("recover", help="get the face back with the password")
    p.add_argument("input", help="protected PNG written by `proface protect`")
    p.add_argument("--out", required=True, help="recovered image (PNG)")
    _recovery_args(p)
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("protect-video", help="protect every face of every frame of a video (lossless .mkv out)")
    p.add_argument("input", help="video (any format ffmpeg reads)")
    p.add_argument("--out", required=True, help="protected video, FFV1 in Matroska (.mkv)")
    _protection_args(p, [o for o in PHOTO_OBFUSCATORS if o != "swap"])
    p.set_defaults(func=cmd_protect_video)

    p = sub.add_parser("recover-video", help="recover every face of a protected video (lossless .mkv out)")
    p.add_argument("input", help="protected .mkv written by `proface protect-video`")
    p.add_argument("--out", required=True, help="recovered video, FFV1 in Matroska (.mkv)")
    _recovery_args(p)
    p.set_defaults(func=cmd_recover_video)

    p = sub.add_parser("demo", help="protect and recover a sample face; writes one picture")
    p.add_argument("--out", default="proface_demo.png")
    p.add_argument("--obfuscator", default="blur", choices=[o for o in PHOTO_OBFUSCATORS if o != "swap"])
    p.add_argument("--mode", default="randwr", choices=("randwr", "obfswr"))
    p.add_argument("--checkpoint", help="checkpoint path or shipped name")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed on one line
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("proface: interrupted; nothing written", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the boundary where every failure becomes one line
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"proface: error: {_describe(e)}", file=sys.stderr)
        return 2


def _describe(e: BaseException) -> str:
    if isinstance(e, ProfaceError):
        return one_line(e, 500)
    if isinstance(e, MemoryError):
        return "out of memory (the image is too large for this machine; try --size or a smaller --max-pixels)"
    if isinstance(e, OSError):
        where = f" {e.filename}" if e.filename else ""
        return one_line(f"cannot access{where}: {e.strerror or e}")
    text = one_line(e, 200)
    if "RESOURCE_EXHAUSTED" in text or "Out of memory" in text:
        return "out of memory running the model (try --size or a smaller image)"
    return f"internal error ({type(e).__name__}: {text}); rerun with --debug for the traceback"


if __name__ == "__main__":
    sys.exit(main())

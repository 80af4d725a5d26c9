"""The `proface` command: protect / recover a face photo, and a demo.

    proface demo [--out demo.png]
    proface protect FACE.jpg --out PROTECTED.png [--obfuscator blur] [--mode randwr|obfswr]
    proface recover PROTECTED.png --out RECOVERED.png

The password comes from --password-file FILE, the environment variable named by
--password-env (default PROFACE_PASSWORD), or a prompt; never from argv, where
other users of the machine can read it. Every error is one line on stderr with
exit status 2, and no output file is left behind (writes are atomic).
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

import numpy as np

DEFAULT_PASSWORD_ENV = "PROFACE_PASSWORD"


class CLIError(Exception):
    pass


def read_password(args, confirm: bool) -> bytes:
    if args.password_file:
        try:
            data = Path(args.password_file).read_bytes()
        except OSError as e:
            raise CLIError(f"cannot read password file {args.password_file}: {e.strerror}") from None
        pw = data.rstrip(b"\r\n")  # a trailing newline from `echo > file` is not part of the password
    elif os.environ.get(args.password_env):
        pw = os.environ[args.password_env].encode("utf-8")
    else:
        if not sys.stdin.isatty():
            raise CLIError(f"no password: use --password-file FILE, set ${args.password_env}, or run in a terminal")
        pw = getpass.getpass("password: ").encode("utf-8")
        if confirm and getpass.getpass("repeat password: ").encode("utf-8") != pw:
            raise CLIError("passwords do not match")
    if not pw:
        raise CLIError("empty password refused")
    return pw


def load_model(name_or_path: str | None, mode: str | None = None):
    """A checkpoint by path or shipped name; None -> the shipped model of `mode`."""
    from proface_jax import checkpoint

    return checkpoint.load_checkpoint(name_or_path or mode or "randwr")


def load_face(path: str, size: int | None) -> np.ndarray:
    from proface_jax import images

    face = images.load_rgb(path)
    if size:
        face = images.resize(images.center_square(face), (size, size))
    return face


def cmd_protect(args) -> int:
    from proface_jax import photo

    face = load_face(args.input, args.size)
    photo.check_photo(face, args.input)
    ck = load_model(args.checkpoint, args.mode)
    pw = read_password(args, confirm=True)
    protected, meta = photo.protect_photo(ck, face, pw, obfuscator=args.obfuscator, kdf=args.kdf,
                                          seed=args.seed, donors=args.donors)
    photo.save_protected(args.out, protected, meta)
    print(f"protected {args.input} -> {args.out} (model {ck.model_id}, {ck.mode}, {args.obfuscator}, "
          f"KDF {meta['kdf']['algorithm']})")
    return 0


def cmd_recover(args) -> int:
    from proface_jax import images, photo

    pixels, meta = photo.load_protected(args.input)
    ck = load_model(args.checkpoint, meta["mode"])
    pw = read_password(args, confirm=False)
    recovered = photo.recover_photo(ck, pixels, meta, pw)
    images.save_png(args.out, recovered)
    print(f"recovered {args.input} -> {args.out} (model {ck.model_id}, {ck.mode}). "
          "A wrong password gives a wrong image, not an error.")
    return 0


def demo_face(size: int = 112) -> np.ndarray:
    """scikit-image's astronaut (public domain), cropped to her face by OpenCV's Haar cascade."""
    from skimage import data

    from proface_jax import images

    img = data.astronaut()
    box = None
    try:
        import cv2

        cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
        found = cascade.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), 1.1, 5, minSize=(64, 64))
        if len(found):
            box = max(found, key=lambda b: b[2] * b[3])
    except ImportError:
        pass
    if box is None:  # where the cascade finds it, for installs without OpenCV
        box = (166, 62, 138, 138)
    x, y, w, h = (int(v) for v in box)
    # Grow the detector's tight box to an aligned-crop-like framing (forehead to chin).
    side = int(1.4 * max(w, h))
    cx, cy = x + w // 2, y + h // 2 + int(0.05 * h)
    x0 = int(np.clip(cx - side // 2, 0, img.shape[1] - side))
    y0 = int(np.clip(cy - side // 2, 0, img.shape[0] - side))
    return images.resize(img[y0:y0 + side, x0:x0 + side], (size, size))


def cmd_demo(args) -> int:
    from proface_jax import checkpoint, images, metrics, photo

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
    face = demo_face(args.size)
    pw = b"correct horse battery staple"
    y = photo.obfuscate(face, args.obfuscator)
    protected, meta = photo.protect_photo(ck, face, pw, obfuscator=args.obfuscator, kdf="strong")
    recovered = photo.recover_photo(ck, protected, meta, pw)
    wrong = photo.recover_photo(ck, protected, meta, b"correct horse battery stapler")
    cells = [face, images.from_unit(y[0]), protected, recovered, wrong]
    images.save_png(args.out, images.grid([cells]))
    s_prot = metrics.score(protected[None], images.from_unit(y[0])[None])
    s_rec = metrics.score(recovered[None], face[None])
    s_wrong = metrics.score(wrong[None], face[None])
    print(f"model: {'UNTRAINED' if untrained else ck.path} ({ck.mode}, id {ck.model_id}); obfuscator {args.obfuscator}")
    print(f"protection  ŷ vs y : PSNR {s_prot['psnr'][0]:.2f} dB  SSIM {s_prot['ssim'][0]:.3f}")
    print(f"recovery    x̌ vs x : PSNR {s_rec['psnr'][0]:.2f} dB  SSIM {s_rec['ssim'][0]:.3f}")
    print(f"wrong pass  ẍ vs x : PSNR {s_wrong['psnr'][0]:.2f} dB  SSIM {s_wrong['ssim'][0]:.3f}")
    if ck.mode == "obfswr":  # the wrong password should give the obfuscated face
        s_wy = metrics.score(wrong[None], images.from_unit(y[0])[None])
        print(f"wrong pass  ẍ vs y : PSNR {s_wy['psnr'][0]:.2f} dB  SSIM {s_wy['ssim'][0]:.3f}")
    print(f"wrote {args.out}: original | obfuscated | protected | recovered | wrong-password recovery")
    return 0


def _password_args(p):
    p.add_argument("--password-file", help="read the password from this file (trailing newline dropped)")
    p.add_argument("--password-env", default=DEFAULT_PASSWORD_ENV,
                   help=f"environment variable holding the password (default {DEFAULT_PASSWORD_ENV})")


def build_parser() -> argparse.ArgumentParser:
    from proface_jax.photo import PHOTO_OBFUSCATORS

    ap = argparse.ArgumentParser(prog="proface", description="Reversible password-keyed face obfuscation (PRO-Face S).")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("protect", help="hide a face inside its obfuscated version")
    p.add_argument("input", help="face image (aligned crop; any format PIL reads)")
    p.add_argument("--out", required=True, help="protected image, written as 8-bit PNG")
    p.add_argument("--obfuscator", default="blur", choices=PHOTO_OBFUSCATORS)
    p.add_argument("--donors", help="folder of donor faces (for --obfuscator swap)")
    p.add_argument("--mode", default="randwr", choices=("randwr", "obfswr"),
                   help="which shipped model: a wrong password gives noise (randwr) or the obfuscated face (obfswr)")
    p.add_argument("--checkpoint", help="checkpoint path or shipped name (overrides --mode)")
    p.add_argument("--kdf", default="strong", choices=("strong", "paper"),
                   help="strong: scrypt with a fresh salt (default); paper: the authors' PBKDF2 (weak, reproducible)")
    p.add_argument("--size", type=int, help="centre-crop to a square and resize to SIZE×SIZE first")
    p.add_argument("--seed", type=int, default=0, help="seed of the obfuscator's random choices (mask sticker)")
    _password_args(p)
    p.set_defaults(func=cmd_protect)

    p = sub.add_parser("recover", help="get the face back with the password")
    p.add_argument("input", help="protected PNG written by `proface protect`")
    p.add_argument("--out", required=True, help="recovered image (PNG)")
    p.add_argument("--checkpoint", help="checkpoint path or shipped name (default: the image's mode)")
    _password_args(p)
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("demo", help="protect and recover a sample face; writes one picture")
    p.add_argument("--out", default="proface_demo.png")
    p.add_argument("--obfuscator", default="blur", choices=[o for o in PHOTO_OBFUSCATORS if o != "swap"])
    p.add_argument("--mode", default="randwr", choices=("randwr", "obfswr"))
    p.add_argument("--checkpoint", help="checkpoint path or shipped name")
    p.add_argument("--size", type=int, default=112)
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from proface_jax import checkpoint, images, photo

    for name in ("out",):
        out = getattr(args, name, None)
        if out and not str(out).lower().endswith(".png"):
            print(f"proface: error: --out {out}: write PNG (.png); lossy formats destroy the hidden face",
                  file=sys.stderr)
            return 2
    try:
        return args.func(args)
    except (CLIError, checkpoint.CheckpointError, images.ImageError, photo.ProtectedImageError,
            ValueError, TypeError) as e:
        print(f"proface: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("proface: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

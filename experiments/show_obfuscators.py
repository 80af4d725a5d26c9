"""Renders one row per pre-obfuscator (eval setting) on a few real faces.

    python -m experiments.show_obfuscators --out grid.png [--size 112] [--preset paper112]
    python -m experiments.show_obfuscators --stickers-sheet stickers.png   # 16 generated stickers on faces

Faces are the first --n UTKFace files (sorted); swap donors come from the last
--donors files, so donors and protected faces never overlap. Without
--template-folder, the `template` row reads a temporary folder of classical-swap
outputs (made with a different key), to show the plumbing of precomputed swaps.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import jax
import numpy as np
from PIL import Image, ImageDraw

from proface_jax import images, obfuscators

DEFAULT_UTKFACE = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "utkface"


def face_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def load_faces(paths, size: int) -> np.ndarray:
    return np.stack([images.resize(images.load_rgb(p), (size, size)) for p in paths])


def labelled(grid_u8: np.ndarray, labels: list[str], cell: int, pad: int = 2, margin: int = 90) -> np.ndarray:
    """Adds a white left margin with one label per row."""
    h, w = grid_u8.shape[:2]
    canvas = Image.new("RGB", (w + margin, h), (255, 255, 255))
    canvas.paste(Image.fromarray(grid_u8), (margin, 0))
    d = ImageDraw.Draw(canvas)
    for i, text in enumerate(labels):
        d.text((4, pad + i * (cell + pad) + cell // 2 - 6), text, fill=(0, 0, 0))
    return np.asarray(canvas)


def obfuscator_rows(faces_u8, donors_u8, names, preset, seed, template_folder=None):
    """{name: uint8 batch} at the eval setting of each obfuscator."""
    x = images.to_unit(faces_u8)
    key = jax.random.key(seed)
    rows = {}
    for i, name in enumerate(obfuscators.names()):
        opts = {}
        if name == "swap":
            opts["donors"] = donors_u8
        if name == "template":
            opts["folder"] = template_folder
        obf = obfuscators.make(name, preset=preset, mode="eval", **opts)
        k = jax.random.fold_in(key, i)
        y = jax.jit(obf.__call__)(k, x) if obf.jittable else obf(k, x, names=names)
        rows[name] = images.from_unit(np.asarray(y))
    return rows


def write_template_folder(folder: Path, faces_u8, donors_u8, names, seed) -> None:
    """Stands in for an external swapper's results: classical swaps saved by image name."""
    swap = obfuscators.make("swap", mode="eval", donors=donors_u8)
    out = images.from_unit(swap(jax.random.key(seed + 1000), images.to_unit(faces_u8)))
    for n, im in zip(names, out):
        images.save_png(folder / f"{n}.png", im)


def stickers_sheet(faces_u8, seed: int, count: int = 16) -> np.ndarray:
    """`count` different procedural stickers (indices 0..count-1), each on a real face, above the raw stickers."""
    mask = obfuscators.make("mask", mode="eval", sticker_seed=seed)
    on_faces = [mask.composite(f, i) for i, f in zip(range(count), faces_u8)]
    size = faces_u8.shape[1]
    raw = []
    for i in range(count):
        st = mask.sticker(i, size)
        a = st[..., 3:]
        raw.append(np.round((st[..., :3] * a + 0.85 * (1 - a)) * 255).astype(np.uint8))
    rows = [raw[j:j + 8] for j in range(0, count, 8)] + [on_faces[j:j + 8] for j in range(0, count, 8)]
    return images.grid(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="grid PNG: one row per obfuscator")
    ap.add_argument("--stickers-sheet", type=Path, help="contact sheet of 16 generated stickers on real faces")
    ap.add_argument("--utkface", type=Path, default=Path(os.environ.get("PROFACE_UTKFACE", DEFAULT_UTKFACE)))
    ap.add_argument("--n", type=int, default=6, help="faces per row")
    ap.add_argument("--offset", type=int, default=0, help="first face (sorted order)")
    ap.add_argument("--donors", type=int, default=300, help="donor pool: this many files from the end of the list")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--preset", default="paper112", choices=sorted(obfuscators.PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--template-folder", type=Path, help="precomputed swaps keyed by image name")
    args = ap.parse_args(argv)
    if not args.out and not args.stickers_sheet:
        ap.error("give --out and/or --stickers-sheet")

    files = face_files(args.utkface)
    if len(files) < args.offset + max(args.n, 16) + args.donors:
        raise SystemExit(f"{args.utkface}: not enough faces for {args.n} targets and {args.donors} donors")
    if args.stickers_sheet:
        sheet_faces = load_faces(files[args.offset:args.offset + 16], args.size)
        images.save_png(args.stickers_sheet, stickers_sheet(sheet_faces, args.seed))
        print(f"wrote {args.stickers_sheet}")
    if args.out:
        target_files = files[args.offset:args.offset + args.n]
        faces = load_faces(target_files, args.size)
        donors = load_faces(files[-args.donors:], args.size)
        names = [p.name for p in target_files]
        with tempfile.TemporaryDirectory() as tmp:
            folder = args.template_folder
            if folder is None:
                folder = Path(tmp)
                write_template_folder(folder, faces, donors, names, args.seed)
            rows = obfuscator_rows(faces, donors, names, args.preset, args.seed, folder)
        labels = ["original"] + [f"{n} ({obfuscators.LABELS[n]})" for n in rows]
        grid = images.grid([list(faces)] + [list(r) for r in rows.values()])
        images.save_png(args.out, labelled(grid, labels, args.size))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Precomputed obfuscations (e.g. SimSwap or FaceShifter results) read from a folder by image name.

Users who can run an external swapper save its output for each protected image under the
same name (any of .png/.jpg/...; `face.jpg` may be stored as `face.jpg`, `face.png` or
`face.jpg.png`) and call `obf(rng, images, names=[...])`. Outputs are resized to the batch's
size if they differ. numpy/PIL: not jittable, call it in the input pipeline. There is no
strength to draw, so train and eval modes behave alike and `rng` is unused.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from proface_jax.obfuscators.base import Obfuscator, from_uint8_batch, to_uint8_batch

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class Template(Obfuscator):
    name = "template"
    jittable = False

    def __init__(self, preset: str, mode: str, folder=None):
        super().__init__(preset, mode)
        if folder is None:
            raise ValueError("template needs the folder of precomputed outputs: make('template', folder=FOLDER)")
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"template folder {self.folder} does not exist or is not a directory")
        self.files = {p.name: p for p in self.folder.iterdir() if p.suffix.lower() in SUFFIXES}
        if not self.files:
            raise ValueError(f"template folder {self.folder} holds no images ({', '.join(SUFFIXES)})")

    def setting(self, height, width):
        return {"folder": str(self.folder), "outputs": len(self.files)}

    def path_for(self, name: str) -> Path:
        """The stored output for image `name` (its file name, or path: only the base name counts)."""
        base = Path(os.fspath(name)).name
        stem = Path(base).stem
        for cand in (base, *(base + s for s in SUFFIXES), *(stem + s for s in SUFFIXES)):
            if cand in self.files:
                return self.files[cand]
        raise ValueError(f"template: no precomputed output for image {base!r} in {self.folder} "
                         f"(looked for {base!r}, {base}.png, {stem}.png, …)")

    def __call__(self, rng, images, *, names=None):
        from proface_jax import images as imgs

        x = to_uint8_batch(images, self.name)
        if names is None:
            raise ValueError("template needs the image names: call obf(rng, images, names=[one name per image])")
        if isinstance(names, (str, os.PathLike)):
            names = [names]
        names = list(names)
        if len(names) != len(x):
            raise ValueError(f"template: got {len(names)} names for a batch of {len(x)} images")
        h, w = x.shape[1:3]
        out = []
        for n in names:
            face = imgs.load_rgb(self.path_for(n))
            out.append(face if face.shape[:2] == (h, w) else imgs.resize(face, (h, w)))
        return from_uint8_batch(np.stack(out) if out else x)

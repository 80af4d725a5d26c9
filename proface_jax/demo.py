"""`proface demo`: protect and recover a sample face, and a picture of every step.

The sample is scikit-image's astronaut (public domain), cropped to her face; the picture is
original | obfuscated | protected | recovered | recovered with a password one character off.
"""
from __future__ import annotations

import os

import numpy as np

from proface_jax import images, metrics, photo
from proface_jax.checkpoint import Checkpoint


def demo_face(size: int = 112) -> np.ndarray:
    """scikit-image's astronaut (public domain), cropped to her face by OpenCV's Haar cascade."""
    from skimage import data

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


def run(ck: Checkpoint, out: str, obfuscator: str = "blur", size: int = 112) -> str:
    """Writes the picture to `out`; returns the scores as text."""
    lines: list[str] = []
    face = demo_face(size)
    pw = b"correct horse battery staple"
    y = photo.obfuscate(face, obfuscator)
    protected, meta = photo.protect_photo(ck, face, pw, obfuscator=obfuscator, kdf="strong")
    recovered = photo.recover_photo(ck, protected, meta, pw)
    wrong = photo.recover_photo(ck, protected, meta, b"correct horse battery stapler", verify=False)
    cells = [face, images.from_unit(y[0]), protected, recovered, wrong]
    images.save_png(out, images.grid([cells]))
    s_prot = metrics.score(protected[None], images.from_unit(y[0])[None])
    s_rec = metrics.score(recovered[None], face[None])
    s_wrong = metrics.score(wrong[None], face[None])
    lines.append(f"protection  ŷ vs y : PSNR {s_prot['psnr'][0]:.2f} dB  SSIM {s_prot['ssim'][0]:.3f}")
    lines.append(f"recovery    x̌ vs x : PSNR {s_rec['psnr'][0]:.2f} dB  SSIM {s_rec['ssim'][0]:.3f}")
    lines.append(f"wrong pass  ẍ vs x : PSNR {s_wrong['psnr'][0]:.2f} dB  SSIM {s_wrong['ssim'][0]:.3f}")
    if ck.mode == "obfswr":  # the wrong password should give the obfuscated face
        s_wy = metrics.score(wrong[None], images.from_unit(y[0])[None])
        lines.append(f"wrong pass  ẍ vs y : PSNR {s_wy['psnr'][0]:.2f} dB  SSIM {s_wy['ssim'][0]:.3f}")
    lines.append(f"wrote {out}: original | obfuscated | protected | recovered | wrong-password recovery")
    return "\n".join(lines)

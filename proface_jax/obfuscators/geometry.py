"""Where the inner face sits in an aligned face crop (UTKFace/CelebA-style: eyes at ~31 % of
the height, mouth at ~70 %, face filling most of the width). Fractions of the image size, so
they hold at any resolution.
"""
from __future__ import annotations

import numpy as np

# Square box the sticker is fitted into: centre (x, y) and side, as fractions of min(H, W).
STICKER_CENTRE = (0.5, 0.53)
STICKER_SIDE = 0.95

# Ellipse covering brows, eyes, nose, mouth and chin: centre (x, y), semi-axes (x, y).
FACE_CENTRE = (0.5, 0.55)
FACE_AXES = (0.31, 0.37)


def face_ellipse_mask(height: int, width: int, scale: float = 1.0, feather: float = 0.0) -> np.ndarray:
    """float32 [H, W] in [0, 1]: 1 inside the inner-face ellipse; `feather` (fraction of the
    semi-axes) makes a soft edge."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = FACE_CENTRE[0] * width, FACE_CENTRE[1] * height
    ax, ay = FACE_AXES[0] * width * scale, FACE_AXES[1] * height * scale
    r = np.sqrt(((x + 0.5 - cx) / ax) ** 2 + ((y + 0.5 - cy) / ay) ** 2)
    if feather <= 0:
        return (r <= 1.0).astype(np.float32)
    return np.clip((1.0 + feather - r) / (2 * feather), 0.0, 1.0).astype(np.float32)

"""VGG16 convolutional trunk (torchvision's `vgg16().features` layout), as a pure function.

Only the part LPIPS uses: conv1_1 … conv5_3 with ReLUs and the four 2×2 max-pools
between the blocks; the features returned are the ReLU outputs of conv1_2, conv2_2,
conv3_3, conv4_3 and conv5_3 (`relu1_2 … relu5_3` in the `lpips` package).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# (name, in_channels, out_channels); "pool" is a 2×2 / stride-2 max-pool.
LAYERS = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), "pool",
    ("conv2_1", 64, 128), ("conv2_2", 128, 128), "pool",
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), "pool",
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), "pool",
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
CONVS = tuple(layer for layer in LAYERS if layer != "pool")
CONV_NAMES = tuple(name for name, _, _ in CONVS)

# Layers whose ReLU output LPIPS compares, and their channel counts.
TAPS = ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3")
TAP_CHANNELS = (64, 128, 256, 512, 512)

# Index of each conv inside torchvision's `vgg16().features` Sequential
# (conv, ReLU, conv, ReLU, MaxPool, ...), used to convert state dicts.
TORCHVISION_FEATURE_INDEX = {
    "conv1_1": 0, "conv1_2": 2,
    "conv2_1": 5, "conv2_2": 7,
    "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv4_1": 17, "conv4_2": 19, "conv4_3": 21,
    "conv5_1": 24, "conv5_2": 26, "conv5_3": 28,
}


def conv_shapes() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """name -> (HWIO kernel shape, bias shape)."""
    return {name: ((3, 3, cin, cout), (cout,)) for name, cin, cout in CONVS}


def _conv3x3(x, kernel, bias):
    y = jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return y + bias


def _max_pool2x2(x):
    # VALID floors odd sizes, as torch's MaxPool2d(2, 2) (ceil_mode=False) does.
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def features(vgg_params, x) -> list[jax.Array]:
    """ReLU outputs at TAPS for NHWC input `x` (already ImageNet/LPIPS-scaled).

    `vgg_params` maps conv name -> {"kernel": HWIO, "bias": [C]}. The final pool
    after conv5_3 is not needed, so it is not computed.
    """
    taps = []
    for layer in LAYERS:
        if layer == "pool":
            x = _max_pool2x2(x)
            continue
        name = layer[0]
        x = jax.nn.relu(_conv3x3(x, vgg_params[name]["kernel"], vgg_params[name]["bias"]))
        if name in TAPS:
            taps.append(x)
    return taps

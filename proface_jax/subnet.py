"""The dense-block subnet used for ω, φ, ρ, η (spec §4).

Five 3×3 convs (stride 1, padding 1, bias), growth 32; conv j sees the block
input concatenated with every earlier conv's output; LeakyReLU(0.01) after
convs 1–4. Channels 16→32, 48→32, 80→32, 112→32, 144→12: 89,420 parameters.

Init as the authors' code: every weight and bias ~ 0.01·N(0, 1), conv 5 zero,
so each coupling starts as the identity.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

PRECISIONS = {
    "highest": lax.Precision.HIGHEST,  # true float32 everywhere
    "high": lax.Precision.HIGH,  # bf16_3x on GPU/TPU
    "default": lax.Precision.DEFAULT,  # TF32 / bf16 on accelerators; float32 on CPU
}


def precision_of(name: str):
    try:
        return PRECISIONS[name]
    except KeyError:
        raise ValueError(f"unknown precision {name!r}; one of {sorted(PRECISIONS)}") from None


class DenseSubnet(nn.Module):
    out_channels: int = 12
    growth: int = 32
    num_convs: int = 5
    init_scale: float = 0.01
    precision: str = "highest"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        init = nn.initializers.normal(stddev=self.init_scale)
        conv = lambda features, name, k_init, b_init: nn.Conv(  # noqa: E731
            features, (3, 3), padding=((1, 1), (1, 1)), kernel_init=k_init, bias_init=b_init,
            precision=precision_of(self.precision), name=name)
        feats = x
        for j in range(1, self.num_convs):
            h = nn.leaky_relu(conv(self.growth, f"conv{j}", init, init)(feats), negative_slope=0.01)
            feats = jnp.concatenate([feats, h], axis=-1)
        zeros = nn.initializers.zeros_init()
        return conv(self.out_channels, f"conv{self.num_convs}", zeros, zeros)(feats)

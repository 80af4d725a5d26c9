"""The conditioners (subnets) of a coupling: ω, φ, ρ, η (spec §4) and the variants' alternatives.

`dense` — the paper's: five 3×3 convs (stride 1, padding 1, bias), growth 32; conv j sees the
block input concatenated with every earlier conv's output; LeakyReLU(0.01) after convs 1–4.
Channels 16→32, 48→32, 80→32, 112→32, 144→12: 89,420 parameters.

`resnet` — a 3×3 stem to 48 channels, two residual blocks of two 3×3 convs, a 3×3 head:
about the dense block's multiply-adds per position (10,560 vs 9,920).

`unet` — two scales: two 3×3 convs at 32 channels, 2×2 average pool, two at 64, nearest
upsampling, skip concatenation, a 3×3 conv to 32 and the head.

Key injection `film`: the key map K enters not as input channels but as a per-channel scale
and shift of each hidden activation, h·(1 + γ(K)) + β(K), γ and β from a 1×1 conv of K
(`film{j}`). With `concat` (the paper) the caller concatenates K to the input; with `none` K
is not seen at all.

Init as the authors' code: every weight and bias ~ init_scale·N(0, 1), the head zero, so each
coupling starts as the identity.
"""
from __future__ import annotations

import flax.linen as nn
import jax
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
    except (KeyError, TypeError):
        raise ValueError(f"unknown precision {name!r}; one of {sorted(PRECISIONS)}") from None


class _Convs(nn.Module):
    """Shared conv / FiLM helpers of the conditioners."""

    out_channels: int = 12
    init_scale: float = 0.01
    precision: str = "highest"

    def conv(self, features, name, zero=False, size=3):
        init = nn.initializers.zeros_init() if zero else nn.initializers.normal(stddev=self.init_scale)
        pad = (size - 1) // 2
        return nn.Conv(features, (size, size), padding=((pad, pad), (pad, pad)), kernel_init=init, bias_init=init,
                       precision=precision_of(self.precision), name=name)

    def film(self, h, key, name):
        """h·(1 + γ(K)) + β(K) with (γ, β) from a 1×1 conv of K; identity when key is None."""
        if key is None:
            return h
        gb = self.conv(2 * h.shape[-1], name, size=1)(jnp.broadcast_to(key, h.shape[:-1] + key.shape[-1:]))
        g, b = jnp.split(gb, 2, axis=-1)
        return h * (1 + g) + b


class DenseSubnet(_Convs):
    growth: int = 32
    num_convs: int = 5

    @nn.compact
    def __call__(self, x: jnp.ndarray, key: jnp.ndarray | None = None) -> jnp.ndarray:
        feats = x
        for j in range(1, self.num_convs):
            h = nn.leaky_relu(self.conv(self.growth, f"conv{j}")(feats), negative_slope=0.01)
            feats = jnp.concatenate([feats, self.film(h, key, f"film{j}")], axis=-1)
        return self.conv(self.out_channels, f"conv{self.num_convs}", zero=True)(feats)


class ResNetSubnet(_Convs):
    width: int = 48
    num_blocks: int = 2

    @nn.compact
    def __call__(self, x: jnp.ndarray, key: jnp.ndarray | None = None) -> jnp.ndarray:
        act = lambda h: nn.leaky_relu(h, negative_slope=0.01)  # noqa: E731
        h = self.film(act(self.conv(self.width, "stem")(x)), key, "film_stem")
        for i in range(self.num_blocks):
            r = act(self.conv(self.width, f"res{i}_a")(h))
            r = self.conv(self.width, f"res{i}_b")(r)
            h = self.film(act(h + r), key, f"film{i}")
        return self.conv(self.out_channels, "head", zero=True)(h)


class UNetSubnet(_Convs):
    width: int = 32

    @nn.compact
    def __call__(self, x: jnp.ndarray, key: jnp.ndarray | None = None) -> jnp.ndarray:
        act = lambda h: nn.leaky_relu(h, negative_slope=0.01)  # noqa: E731
        h, w = x.shape[1], x.shape[2]
        a = act(self.conv(self.width, "down_a")(x))
        a = self.film(act(self.conv(self.width, "down_b")(a)), key, "film_a")
        # 2×2 average pool (odd sizes padded at the end by edge repetition)
        p = jnp.pad(a, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        p = p.reshape(p.shape[0], p.shape[1] // 2, 2, p.shape[2] // 2, 2, p.shape[3]).mean(axis=(2, 4))
        kp = None if key is None else jax.image.resize(
            jnp.broadcast_to(key, x.shape[:1] + key.shape[1:]), p.shape[:3] + key.shape[-1:], "linear")
        b = act(self.conv(2 * self.width, "mid_a")(p))
        b = self.film(act(self.conv(2 * self.width, "mid_b")(b)), kp, "film_b")
        up = jnp.repeat(jnp.repeat(b, 2, axis=1), 2, axis=2)[:, :h, :w]
        u = act(self.conv(self.width, "up")(jnp.concatenate([a, up], axis=-1)))
        return self.conv(self.out_channels, "head", zero=True)(u)


CONDITIONERS = {"dense": DenseSubnet, "resnet": ResNetSubnet, "unet": UNetSubnet}

"""Named flow variants: presets of `FlowConfig` for research and ablations (issue 21).

    from proface_jax import variants
    variants.names()              # ['additive', 'film', 'glow', ...]
    cfg = variants.get("glow")    # a FlowConfig; init_params / protect / recover take it
    variants.describe()           # {name: one line}

Every axis is a `FlowConfig` field, so training picks one with `--config.flow.<field>=…`;
checkpoints record the config (and with it the variant) in their header. The property tests
run over the whole registry: a variant is tested by being registered here.
"""
from __future__ import annotations

import dataclasses

from proface_jax.flow import FlowConfig

_PAPER = FlowConfig()

# name -> (changed fields, description)
_REGISTRY: dict[str, tuple[dict, str]] = {
    "paper": ({}, "the paper: affine soft-clamp coupling, dense subnets, K concatenated, K‖K‖K stand-in, N=3"),
    "additive": (dict(coupling="additive"), "additive (volume-preserving) couplings: no scale subnets"),
    "film": (dict(key_injection="film"), "K as per-channel FiLM scale/shift inside the subnets, not as input"),
    "keyless": (dict(key_injection="none", standin="noise"),
                "HiNet-style baseline: no key anywhere, noise stand-in; anyone can recover"),
    "noise": (dict(standin="noise"), "Gaussian-noise stand-in for the byproduct at recovery (paper Fig. 6)"),
    "glow": (dict(coupling="affine_sigmoid", mixing="inv1x1"), "Glow: sigmoid scale and LU invertible 1×1 mixing"),
    "permute": (dict(mixing="permute"), "a fixed channel permutation of [X‖Y] between blocks"),
    "resnet": (dict(conditioner="resnet"), "residual-block subnets of about the dense block's cost"),
    "unet": (dict(conditioner="unet"), "two-scale U-Net subnets"),
    "n1": (dict(num_blocks=1), "one SACB"),
    "n2": (dict(num_blocks=2), "two SACBs"),
    "n4": (dict(num_blocks=4), "four SACBs"),
}


def names() -> list[str]:
    """Every registered variant, 'paper' first."""
    return ["paper"] + sorted(n for n in _REGISTRY if n != "paper")


def get(name: str, **overrides) -> FlowConfig:
    """The FlowConfig of variant `name` (fields in `overrides` replaced, e.g. num_blocks=1)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown flow variant {name!r}; one of {names()}")
    return dataclasses.replace(_PAPER, **{**_REGISTRY[name][0], **overrides})


def describe() -> dict[str, str]:
    return {n: _REGISTRY[n][1] for n in names()}


def name_of(config) -> str | None:
    """The registered name of a config (ignoring reversible_backprop and precision), or None."""
    cfg = FlowConfig.from_any(config)
    key = dataclasses.replace(cfg, reversible_backprop=False, precision="highest")
    for n in names():
        if get(n) == key:
            return n
    return None

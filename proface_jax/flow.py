"""The whole flow: N SACBs between a Haar DWT and its inverse (spec §1).

    protect:   X = DWT(x), Y = DWT(y); (X, Y) = SACB_N ∘ … ∘ SACB_1 (X, Y; K)
               -> (ŷ = IWT(Y), x̂ = IWT(X))           ŷ protected, x̂ byproduct
    unprotect: the exact inverse of protect, given the true byproduct x̂
    recover:   unprotect with K‖K‖K standing in for DWT(x̂) (what a user has)

Params are a plain dict {"block_0": {"omega", "phi", "rho", "eta"}, ...}; the
number of blocks is read from them. Images are NHWC float in [-1, 1]; K is
[B or 1, H/2, W/2, 4].
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from proface_jax import coupling
from proface_jax.dwt import NUM_BANDS, haar_dwt, haar_iwt
from proface_jax.subnet import DenseSubnet, precision_of

IMAGE_CHANNELS = 3
KEY_CHANNELS = NUM_BANDS  # K = DWT of a one-channel map


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    num_blocks: int = 3
    clamp: float = 2.0
    init_scale: float = 0.01
    precision: str = "highest"  # subnet convs; DWT/IWT are always HIGHEST
    # Gradients of flow_forward / flow_inverse by reversible backprop (RevNet): the
    # backward pass rebuilds each coupling step's input from its output with the exact
    # inverse instead of keeping the subnets' activations. Same values, same gradients
    # (to float32 rounding), far less memory, one more subnet pass per step. Not a
    # property of the model: it changes how gradients are computed, nothing else.
    reversible_backprop: bool = False

    def __post_init__(self):
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if not self.clamp > 0:
            raise ValueError(f"clamp must be > 0, got {self.clamp}")
        precision_of(self.precision)

    @classmethod
    def from_any(cls, config: "FlowConfig | Mapping[str, Any] | None") -> "FlowConfig":
        """Accepts a FlowConfig, a dict or an ml_collections ConfigDict (extra keys ignored)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in dict(config).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def block_names(params: Mapping) -> list[str]:
    names = sorted((k for k in params if k.startswith("block_")), key=lambda k: int(k.split("_")[1]))
    if not names or names != [f"block_{i}" for i in range(len(names))]:
        raise ValueError(f"params must hold block_0..block_{{N-1}}, got keys {sorted(params)}")
    return names


def init_params(rng: jax.Array, config: FlowConfig | Mapping | None = None) -> dict:
    """Fresh params: N blocks × (ω, φ, ρ, η), authors' init (each block starts as the identity)."""
    cfg = FlowConfig.from_any(config)
    net = DenseSubnet(out_channels=IMAGE_CHANNELS * NUM_BANDS, init_scale=cfg.init_scale)
    dummy = jnp.zeros((1, 8, 8, IMAGE_CHANNELS * NUM_BANDS + KEY_CHANNELS), jnp.float32)
    keys = jax.random.split(rng, (cfg.num_blocks, len(coupling.SUBNETS)))
    return {
        f"block_{i}": {name: net.init(keys[i, j], dummy)["params"] for j, name in enumerate(coupling.SUBNETS)}
        for i in range(cfg.num_blocks)
    }


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


# ---- input checks (run at trace time under jit: shapes are static) ----

def _check_images(**named):
    shape = None
    for name, a in named.items():
        if a.ndim != 4:
            raise ValueError(f"{name} must be NHWC of rank 4, got shape {tuple(a.shape)}")
        if a.shape[-1] != IMAGE_CHANNELS:
            raise ValueError(f"{name} must have {IMAGE_CHANNELS} (RGB) channels, got {a.shape[-1]}")
        if a.shape[1] % 2 or a.shape[2] % 2:
            raise ValueError(f"{name}: height and width must be even, got {a.shape[1]}×{a.shape[2]}")
        if shape is not None and a.shape != shape:
            raise ValueError(f"image shapes differ: {tuple(shape)} vs {name} {tuple(a.shape)}")
        shape = a.shape
    return shape


def _check_key(K, image_shape):
    b, h, w, _ = image_shape
    if K.ndim != 4 or K.shape[1:] != (h // 2, w // 2, KEY_CHANNELS) or K.shape[0] not in (1, b):
        raise ValueError(f"K must have shape [{b} or 1, {h // 2}, {w // 2}, {KEY_CHANNELS}] for images "
                         f"{h}×{w}, got {tuple(K.shape)} (use secret_map(password, {h}, {w}).K)")


# ---- the flow, in the wavelet domain ----

def flow_forward(params, X, Y, K, config: FlowConfig | None = None):
    cfg = FlowConfig.from_any(config)
    if cfg.reversible_backprop:
        return _reversible_flow(cfg, False, params, X, Y, K)
    for name in block_names(params):
        X, Y = coupling.sacb_forward(params[name], X, Y, K, clamp=cfg.clamp, precision=cfg.precision)
    return X, Y


def flow_inverse(params, X, Y, K, config: FlowConfig | None = None):
    cfg = FlowConfig.from_any(config)
    if cfg.reversible_backprop:
        return _reversible_flow(cfg, True, params, X, Y, K)
    for name in reversed(block_names(params)):
        X, Y = coupling.sacb_inverse(params[name], X, Y, K, clamp=cfg.clamp, precision=cfg.precision)
    return X, Y


# ---- reversible backprop: the flow's VJP rebuilt from its outputs ----

def _steps(params, inverse: bool):
    """The coupling steps in the order they run: (block, scale, shift, cond is X, forward step)."""
    steps = []
    for name in block_names(params):
        steps += [(name, "omega", "phi", True), (name, "rho", "eta", False)]
    if inverse:
        return [(b, s, t, cx, False) for b, s, t, cx in reversed(steps)]
    return [(b, s, t, cx, True) for b, s, t, cx in steps]


def _run_steps(cfg, inverse, params, X, Y, K):
    for b, s, t, cond_is_x, fwd in _steps(params, inverse):
        p = params[b]
        step = coupling.coupling_forward if fwd else coupling.coupling_inverse
        if cond_is_x:
            Y = step(p[s], p[t], coupling._with_key(X, K), Y, clamp=cfg.clamp, precision=cfg.precision)
        else:
            X = step(p[s], p[t], coupling._with_key(Y, K), X, clamp=cfg.clamp, precision=cfg.precision)
    return X, Y


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _reversible_flow(cfg, inverse, params, X, Y, K):
    return _run_steps(cfg, inverse, params, X, Y, K)


def _reversible_fwd(cfg, inverse, params, X, Y, K):
    X, Y = _run_steps(cfg, inverse, params, X, Y, K)
    return (X, Y), (params, X, Y, K)  # outputs only: no activations are kept


def _reversible_bwd(cfg, inverse, res, g):
    params, X, Y, K = res
    gX, gY = g
    gK = jnp.zeros(K.shape, K.dtype)
    gp = {b: dict(v) for b, v in jax.tree_util.tree_map(jnp.zeros_like, params).items()}
    for b, s, t, cond_is_x, fwd in reversed(_steps(params, inverse)):
        p = params[b]
        cond, out, g_out = (X, Y, gY) if cond_is_x else (Y, X, gX)
        ch = out.shape[-1]

        def scale_shift(sp, tp, z, K):
            return coupling.scale_shift(sp, tp, coupling._with_key(z, K), clamp=cfg.clamp, channels=ch,
                                        precision=cfg.precision)

        (a, t_), vjp = jax.vjp(scale_shift, p[s], p[t], cond, K)
        if fwd:  # out = in·e^a + t  ->  in = (out − t)·e^−a
            inp = (out - t_) * jnp.exp(-a)
            g_in = g_out * jnp.exp(a)
            g_a, g_t = g_out * (out - t_), g_out
        else:  # out = (in − t)·e^−a  ->  in = out·e^a + t
            inp = out * jnp.exp(a) + t_
            g_in = g_out * jnp.exp(-a)
            g_a, g_t = -g_out * out, -g_in
        g_sp, g_tp, g_cond, g_K = vjp((g_a, g_t))
        gp[b][s] = jax.tree_util.tree_map(jnp.add, gp[b][s], g_sp)
        gp[b][t] = jax.tree_util.tree_map(jnp.add, gp[b][t], g_tp)
        gK = gK + g_K
        if cond_is_x:
            Y, gY, gX = inp, g_in, gX + g_cond
        else:
            X, gX, gY = inp, g_in, gY + g_cond
    return gp, gX, gY, gK


_reversible_flow.defvjp(_reversible_fwd, _reversible_bwd)


# ---- the public API, in image space ----

def protect(params, x, y, K, config: FlowConfig | None = None):
    """(original x, pre-obfuscated y, key K) -> (protected ŷ, byproduct x̂). Never store x̂: it leaks x."""
    shape = _check_images(x=x, y=y)
    _check_key(K, shape)
    X, Y = flow_forward(params, haar_dwt(x), haar_dwt(y), K.astype(x.dtype), config)
    return haar_iwt(Y), haar_iwt(X)


def unprotect(params, protected, byproduct, K, config: FlowConfig | None = None):
    """The exact inverse of `protect` given its true byproduct: -> (x, y)."""
    shape = _check_images(protected=protected, byproduct=byproduct)
    _check_key(K, shape)
    X, Y = flow_inverse(params, haar_dwt(byproduct), haar_dwt(protected), K.astype(protected.dtype), config)
    return haar_iwt(X), haar_iwt(Y)


def key_stand_in(K, shape):
    """K‖K‖K, broadcast to the batch: what recovery puts where DWT(x̂) was (spec §1)."""
    b, h, w, _ = shape
    K = jnp.broadcast_to(K, (b, h // 2, w // 2, KEY_CHANNELS))
    return jnp.concatenate([K] * IMAGE_CHANNELS, axis=-1)


def recover(params, protected, K, config: FlowConfig | None = None):
    """(protected ŷ, key K) -> (recovered x̌, recovery byproduct y̌). x̌ ≈ x only with the right key."""
    shape = _check_images(protected=protected)
    _check_key(K, shape)
    K = K.astype(protected.dtype)
    X, Y = flow_inverse(params, key_stand_in(K, shape), haar_dwt(protected), K, config)
    return haar_iwt(X), haar_iwt(Y)


def recover_keys(params, protected, Ks, config: FlowConfig | None = None):
    """`recover` of one batch under several keys as ONE inverse pass over the stacked batch.

    Ks: a sequence of keys, each [B or 1, H/2, W/2, 4]. Returns a list with, for each key,
    (x̌, y̌) equal to `recover(params, protected, K)`. A training step's right-key and
    wrong-key recoveries share one call: larger convolutions, one set of kernels traced.
    """
    shape = _check_images(protected=protected)
    if not Ks:
        raise ValueError("recover_keys needs at least one key")
    for K in Ks:
        _check_key(K, shape)
    b, h, w, _ = shape
    n = len(Ks)
    K = jnp.concatenate([jnp.broadcast_to(K.astype(protected.dtype), (b, h // 2, w // 2, KEY_CHANNELS))
                         for K in Ks], axis=0)
    Y = haar_dwt(protected)
    Y = jnp.broadcast_to(Y[None], (n,) + Y.shape).reshape((n * b,) + Y.shape[1:])
    X, Y = flow_inverse(params, key_stand_in(K, (n * b, h, w, IMAGE_CHANNELS)), Y, K, config)
    x, y = haar_iwt(X), haar_iwt(Y)
    return [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(n)]

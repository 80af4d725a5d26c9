"""The whole flow: N SACBs between a Haar DWT and its inverse (spec §1), as one `bijectors.Chain`.

    protect:   (x, y) -> Haar -> SACB_1 … SACB_N (mixing layers between, if any) -> Haar⁻¹
               -> (ŷ = IWT(Y), x̂ = IWT(X))           ŷ protected, x̂ byproduct
    unprotect: the chain's derived inverse, given the true byproduct x̂
    recover:   the wavelet chain's inverse with a stand-in where DWT(x̂) was (what a user has):
               K‖K‖K (`standin="key"`, the paper) or Gaussian noise (`standin="noise"`, Fig. 6)

Params are a plain dict {"block_0": {"omega", "phi", "rho", "eta"}, ..., "mix_0": ...}; the
number of blocks is read from them. Images are NHWC float in [-1, 1]; K is [B or 1, H/2, W/2, 4].
Every variant axis is a field of `FlowConfig` (named presets: `proface_jax.variants`); the
defaults are the paper's network, bit for bit.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from proface_jax import bijectors, coupling
from proface_jax.bijectors import Chain, HaarPair, Invert
from proface_jax.dwt import NUM_BANDS, haar_dwt, haar_iwt
from proface_jax.subnet import CONDITIONERS, precision_of

IMAGE_CHANNELS = 3
KEY_CHANNELS = NUM_BANDS  # K = DWT of a one-channel map
STANDINS = ("key", "noise")
# `standin="noise"`: recovery draws N(0, 1) from its `rng` argument, or from this fixed key when
# none is given, so that recovery stays a deterministic function of (ŷ, K).
NOISE_STANDIN_KEY = 0

CHOICES = {"coupling": coupling.COUPLINGS, "conditioner": tuple(CONDITIONERS),
           "key_injection": coupling.KEY_INJECTIONS, "standin": STANDINS, "mixing": tuple(bijectors.MIXERS)}


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    num_blocks: int = 3
    clamp: float = 2.0
    init_scale: float = 0.01
    precision: str = "highest"  # subnet convs; DWT/IWT are always HIGHEST
    # Gradients of flow_forward / flow_inverse by reversible backprop (RevNet): the
    # backward pass rebuilds each step's input from its output with the exact inverse
    # instead of keeping the subnets' activations. Same values, same gradients (to
    # float32 rounding), far less memory, one more subnet pass per step. Not a property
    # of the model: it changes how gradients are computed, nothing else. (log_det, which
    # no loss uses, carries no gradient under it.)
    reversible_backprop: bool = False
    # ---- variant axes (issue 21); the defaults are the paper's
    coupling: str = "affine"  # | additive | affine_sigmoid
    conditioner: str = "dense"  # | resnet | unet
    key_injection: str = "concat"  # | film | none (keyless: anyone can recover)
    standin: str = "key"  # | noise: what recovery puts where DWT(x̂) was
    mixing: str = "none"  # | permute | inv1x1: between blocks, on [X‖Y]

    def __post_init__(self):
        if isinstance(self.num_blocks, bool) or not isinstance(self.num_blocks, int) or self.num_blocks < 1:
            raise ValueError(f"FlowConfig.num_blocks must be an integer >= 1, got {self.num_blocks!r}")
        if not self.clamp > 0:
            raise ValueError(f"FlowConfig.clamp must be > 0, got {self.clamp}")
        precision_of(self.precision)
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"FlowConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @classmethod
    def from_any(cls, config: "FlowConfig | Mapping[str, Any] | None") -> "FlowConfig":
        """Accepts a FlowConfig, a dict or an ml_collections ConfigDict (extra keys ignored;
        missing ones take the paper's values, so old checkpoint headers read as the paper)."""
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


def block(cfg: FlowConfig) -> Chain:
    """One SACB of this variant (a chain of two coupling steps)."""
    return coupling.sacb(cfg.clamp, cfg.precision, kind=cfg.coupling, conditioner=cfg.conditioner,
                         key_injection=cfg.key_injection, init_scale=cfg.init_scale)


def wavelet_chain(cfg: FlowConfig, num_blocks: int | None = None) -> Chain:
    """The flow in the wavelet domain: block_0, [mix_0], block_1, …; state (X, Y), condition K."""
    steps = []
    for i in range(cfg.num_blocks if num_blocks is None else num_blocks):
        if i and cfg.mixing != "none":
            steps.append((f"mix_{i - 1}", bijectors.mixer(cfg.mixing, i - 1)))
        steps.append((f"block_{i}", block(cfg)))
    return Chain(tuple(steps))


@dataclasses.dataclass(frozen=True)
class WaveletFlow:
    """`wavelet_chain` as one bijector, with reversible backprop when the config asks for it."""

    cfg: FlowConfig
    num_blocks: int

    @property
    def chain(self) -> Chain:
        return wavelet_chain(self.cfg, self.num_blocks)

    def init(self, rng, z, K):
        return self.chain.init(rng, z, K)

    def forward(self, params, z, K):
        return _run(self.chain, self.cfg.reversible_backprop, False, params, z, K)

    def inverse(self, params, z, K):
        return _run(self.chain, self.cfg.reversible_backprop, True, params, z, K)


def image_bijector(cfg: FlowConfig | Mapping | None = None, num_blocks: int | None = None) -> Chain:
    """(x, y) images -> (IWT X, IWT Y): Haar, the wavelet chain, Haar⁻¹. protect = its forward."""
    cfg = FlowConfig.from_any(cfg)
    n = cfg.num_blocks if num_blocks is None else num_blocks
    return Chain(((None, HaarPair()), (None, WaveletFlow(cfg, n)), (None, Invert(HaarPair()))))


def init_params(rng: jax.Array, config: FlowConfig | Mapping | None = None) -> dict:
    """Fresh params: N blocks of this variant's subnets (+ mixers), the authors' init (each block
    starts as the identity). Block i's subnets get keys split(rng, (N, 4))[i], as before variants."""
    cfg = FlowConfig.from_any(config)
    chain = wavelet_chain(cfg)
    c = IMAGE_CHANNELS * NUM_BANDS
    z = (jnp.zeros((1, 8, 8, c), jnp.float32),) * 2
    K = jnp.zeros((1, 8, 8, KEY_CHANNELS), jnp.float32)
    keys = jax.random.split(rng, (cfg.num_blocks, len(coupling.SUBNETS)))
    params = {}
    for name, step in chain.steps:
        if name.startswith("block_"):
            i = int(name.split("_")[1])
            (_, c1), (_, c2) = step.steps
            params[name] = {**c1.init(keys[i, :len(c1.names)], z, K), **c2.init(keys[i, 2:2 + len(c2.names)], z, K)}
        else:
            params[name] = step.init(jax.random.fold_in(rng, 1 << 20), z, K)
    return params


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

def _run(chain: Chain, reversible: bool, inverse: bool, params, z, K):
    if reversible:
        return _reversible(chain, inverse, params, z, K)
    return chain.inverse(params, z, K) if inverse else chain.forward(params, z, K)


def flow_forward(params, X, Y, K, config: FlowConfig | None = None):
    cfg = FlowConfig.from_any(config)
    return WaveletFlow(cfg, len(block_names(params))).forward(params, (X, Y), K)[0]


def flow_inverse(params, X, Y, K, config: FlowConfig | None = None):
    cfg = FlowConfig.from_any(config)
    return WaveletFlow(cfg, len(block_names(params))).inverse(params, (X, Y), K)[0]


# ---- reversible backprop: any chain's VJP rebuilt from its outputs ----

def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


def _leaf_steps(chain: Chain, inverse: bool, path=()):
    """[(path of its params, step, runs inverted)] in the order they run."""
    out = []
    for name, step in chain.steps:
        sub = path if name is None else path + (name,)
        out += _leaf_steps(step, False, sub) if isinstance(step, Chain) else [(sub, step, False)]
    return [(p, s, True) for p, s, _ in reversed(out)] if inverse else out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _reversible_core(chain, inverse, params, z, K):
    return (chain.inverse if inverse else chain.forward)(params, z, K)[0]


def _reversible_fwd(chain, inverse, params, z, K):
    out = _reversible_core(chain, inverse, params, z, K)
    return out, (params, out, K)  # outputs only: no activations are kept


def _reversible_bwd(chain, inverse, res, g):
    params, z, K = res
    gK = jnp.zeros(K.shape, K.dtype)
    gp = jax.tree_util.tree_map(jnp.zeros_like, params)
    for path, step, inv in reversed(_leaf_steps(chain, inverse)):
        p = _get(params, path)
        if hasattr(step, "rebuild_vjp"):  # couplings: the input and the VJP from one subnet pass
            z, g_p, g, g_K = step.rebuild_vjp(p, z, K, g, forward=not inv)
        else:  # generic: rebuild the input with the inverse, then the VJP of the forward
            run, back = (step.inverse, step.forward) if inv else (step.forward, step.inverse)
            z, _ = back(p, z, K)
            _, vjp = jax.vjp(lambda p_, z_, k_: run(p_, z_, k_)[0], p, z, K)
            g_p, g, g_K = vjp(g)
        node = _get(gp, path)
        for k, v in g_p.items():
            node[k] = jax.tree_util.tree_map(jnp.add, node[k], v)
        gK = gK + g_K
    return gp, g, gK


_reversible_core.defvjp(_reversible_fwd, _reversible_bwd)


def _reversible(chain, inverse, params, z, K):
    # log_det is computed outside the custom VJP and carries no gradient (no loss uses it;
    # under jit an unused log_det is dead code and costs nothing)
    out = _reversible_core(chain, inverse, params, z, K)
    ld = (chain.inverse if inverse else chain.forward)(params, z, K)[1]
    return out, jax.lax.stop_gradient(ld)


# ---- the public API, in image space ----

def protect(params, x, y, K, config: FlowConfig | None = None):
    """(original x, pre-obfuscated y, key K) -> (protected ŷ, byproduct x̂). Never store x̂: it leaks x."""
    shape = _check_images(x=x, y=y)
    _check_key(K, shape)
    cfg = FlowConfig.from_any(config)
    (x_hat, y_hat), _ = image_bijector(cfg, len(block_names(params))).forward(params, (x, y), K.astype(x.dtype))
    return y_hat, x_hat


def unprotect(params, protected, byproduct, K, config: FlowConfig | None = None):
    """The exact inverse of `protect` given its true byproduct: -> (x, y)."""
    shape = _check_images(protected=protected, byproduct=byproduct)
    _check_key(K, shape)
    cfg = FlowConfig.from_any(config)
    (x, y), _ = image_bijector(cfg, len(block_names(params))).inverse(params, (byproduct, protected),
                                                                         K.astype(protected.dtype))
    return x, y


def key_stand_in(K, shape):
    """K‖K‖K, broadcast to the batch: what recovery puts where DWT(x̂) was (spec §1)."""
    b, h, w, _ = shape
    K = jnp.broadcast_to(K, (b, h // 2, w // 2, KEY_CHANNELS))
    return jnp.concatenate([K] * IMAGE_CHANNELS, axis=-1)


def stand_in(cfg: FlowConfig, K, shape, rng=None):
    """The stand-in for DWT(x̂) at recovery: K‖K‖K, or N(0, 1) drawn from `rng`
    (default `jax.random.key(NOISE_STANDIN_KEY)`: a fixed draw per shape)."""
    if cfg.standin == "key":
        return key_stand_in(K, shape)
    b, h, w, _ = shape
    rng = jax.random.key(NOISE_STANDIN_KEY) if rng is None else rng
    return jax.random.normal(rng, (b, h // 2, w // 2, IMAGE_CHANNELS * NUM_BANDS), K.dtype)


def recover(params, protected, K, config: FlowConfig | None = None, rng=None):
    """(protected ŷ, key K) -> (recovered x̌, recovery byproduct y̌). x̌ ≈ x only with the right key.
    `rng` is used only by the `standin="noise"` variants (see `stand_in`)."""
    shape = _check_images(protected=protected)
    _check_key(K, shape)
    cfg = FlowConfig.from_any(config)
    K = K.astype(protected.dtype)
    flow = WaveletFlow(cfg, len(block_names(params)))
    (X, Y), _ = flow.inverse(params, (stand_in(cfg, K, shape, rng), haar_dwt(protected)), K)
    return haar_iwt(X), haar_iwt(Y)


def recover_keys(params, protected, Ks, config: FlowConfig | None = None, rng=None):
    """`recover` of one batch under several keys as ONE inverse pass over the stacked batch.

    Ks: a sequence of keys, each [B or 1, H/2, W/2, 4]. Returns a list with, for each key,
    (x̌, y̌) equal to `recover(params, protected, K, rng=rng)`. A training step's right-key and
    wrong-key recoveries share one call: larger convolutions, one set of kernels traced.
    """
    shape = _check_images(protected=protected)
    if not Ks:
        raise ValueError("recover_keys needs at least one key")
    for K in Ks:
        _check_key(K, shape)
    cfg = FlowConfig.from_any(config)
    b, h, w, _ = shape
    n = len(Ks)
    K = jnp.concatenate([jnp.broadcast_to(K.astype(protected.dtype), (b, h // 2, w // 2, KEY_CHANNELS))
                         for K in Ks], axis=0)
    Y = haar_dwt(protected)
    Y = jnp.broadcast_to(Y[None], (n,) + Y.shape).reshape((n * b,) + Y.shape[1:])
    if cfg.standin == "key":
        X = key_stand_in(K, (n * b, h, w, IMAGE_CHANNELS))
    else:  # the same draw for every key, as `recover` makes it for this batch
        X = jnp.concatenate([stand_in(cfg, K[:b], shape, rng)] * n, axis=0)
    (X, Y), _ = WaveletFlow(cfg, len(block_names(params))).inverse(params, (X, Y), K)
    x, y = haar_iwt(X), haar_iwt(Y)
    return [(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b]) for i in range(n)]

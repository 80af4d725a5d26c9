"""Training losses of PRO-Face S (spec §5), for both wrong-recovery modes.

Notation (images NHWC in [-1, 1]): x original, y pre-obfuscated, ŷ protected,
x̌ recovered with the right key, ẍ recovered with a wrong key.
Triplet(A, P, N; d, m) = max(d(A, P) − d(A, N) + m, 0).

    L_P  = β·LPIPS(ŷ, y) + L1(ŷ, y)
    L_R  = L1(x̌, x)
    RandWR:  L_WR = Triplet(x, x̌, ẍ; LPIPS) + Triplet(x, x̌, ẍ; L1)
    ObfsWR:  L_WR = L1(ẍ, y) + Triplet(ẍ, y, x; LPIPS) + Triplet(x̌, x, y; LPIPS)
    total = λ1·L_P + λ2·L_R + λ3·L_WR

L1(a, b) is the mean absolute difference over pixels and channels (PyTorch's
`nn.L1Loss`, the authors' choice), averaged over the batch. LPIPS is the VGG16
LPIPS of `proface_jax.lpips` on [-1, 1] inputs; its params are an argument and
never trained (`lpips` stops their gradient).

Choices, all in the `loss` section of a training config (see `LossConfig`):

* ``triplet_reduction`` — ``"per_image"`` (default): one hinge per image, then
  the batch mean of the hinges. ``"batch_mean"``: the authors' code, one hinge
  on the batch means of the distances. Per image is the default because with
  batch means an easy sample (a wrong recovery that is already far) pays for a
  hard one (a wrong recovery that still looks like x), whose gradient then
  vanishes as soon as the batch mean clears the margin; per-image hinges keep
  every sample's constraint, and the loss no longer depends on which faces
  share a batch. It applies to the LPIPS triplets and to the ``image_mean`` L1
  triplet.
* ``l1_triplet`` — the distance of the L1 triplet (RandWR). ``"image_mean"``
  (default): per-image mean absolute difference, the same L1 as the other
  terms, so the margin is in units of the [-1, 1] pixel range.
  ``"torch_rows"``: what the authors' `nn.TripletMarginLoss(p=1)` computes on
  NCHW tensors: `pairwise_distance` reduces only the last axis, so each image
  row (one channel, W pixels) gets its own summed-L1 distance ‖a − b + 1e-6‖₁
  and its own hinge; the loss is the mean over rows. Distances there are
  sums over W pixels, so the margin is tiny relative to them.
* ``wrong_on_clamped`` — compute the wrong-recovery terms on clip(ẍ, −1, 1),
  the image a viewer sees (spec §6: the per-image L1 hinge was met by pushing
  ẍ far outside [−1, 1], which clamps back to a recognisable face). ``None``
  means by mode: on for RandWR, off for ObfsWR (where L1(ẍ, y) already pulls ẍ
  into range). Pixels outside the range then get no gradient from these terms.
  Note: with clamping, the L1 hinge at margin 1.0 asks for mean |x − ẍ| ≥ 1 +
  L1(x, x̌), which a clamped ẍ can only reach near ẍ = −sign(x) (a saturated
  negative); watch wrong recoveries for that, and prefer the structural
  scores of `proface_jax.metrics` over PSNR to judge them.
* ``wr_l1_margin`` — the RandWR L1 triplet's margin; ``None`` uses ``margin``. On the
  clamped image the paper's 1.0 is out of reach (see above); 0.5 is what a uniform-noise
  ẍ gives (E|n − x| = (1 + x²)/2 for n ~ U[−1, 1]), so the hinge can be met by noise.
* ``wr_decorrelate`` — weight (inside L_WR) of the squared Pearson correlation between
  the wrong recovery and x, per image, at full resolution and on 4×4-pooled grayscale
  thumbnails (the re-identification attack of spec §6 matches on the absolute
  correlation of thumbnails; squared, the term is blind to sign as that attack is).
  Always on the clamped ẍ, so it sees the face a hinge met out of range would show.
  RandWR only; 0 turns it off (the paper).
* ``decorrelate_thumbs`` — thumbnail sizes (pixels a side) for the thumbnail part of both
  decorrelation terms. Empty (the default): one thumbnail, 4×4-pooled, whose size grows with the
  image (16×16 at 64×64 but 28×28 at 112×112). Set, e.g. ``(8, 16)``: one term per fixed size,
  area-averaged, so the term sees what a thumbnail attacker sees at any training size. Measured
  here: a model trained at 112×112 with the default kept corr² at 28×28 near 6e-4 while its
  16×16 thumbnails still correlated with x at |r| ≈ 0.11, enough for the attack to pick the right
  face 33–48 % of the time among 40. Pooling averages the noise away faster than the low-frequency
  face, so the smaller the thumbnail the stronger the leak it shows.
* ``wr_reid_hinge`` — weight (inside L_WR, RandWR only) of the thumbnail attack run inside the
  batch: per image, how far |corr(ẍ_i, x_i)| stands above the mean |corr(ẍ_i, x_j)| over the
  batch's other faces, hinged at 0, at full resolution and at the thumbnail sizes of
  ``decorrelate_thumbs`` (on the clamped ẍ). The attack needs only the true face to stand out of
  its gallery, and corr² gives little gradient near the small |r| (≈ 0.1 against ≈ 0.05 for
  other faces) that is enough for it; this term's gradient does not fade there. 0 turns it off.
* ``obfs_decorrelate`` — ObfsWR only: weight (inside L_WR) of the squared correlation between
  what the wrong recovery adds to y and what x differs from y, corr(ẍ − y, x − y)², per image,
  at full resolution and as 4×4-pooled grayscale thumbnails (on the clamped ẍ). Without it every
  ObfsWR run here found a key-independent recovery (ẍ ≈ x̌ ≈ x, or ≈ y): L1(ẍ, y) and L1(x̌, x)
  are each cheap to trade against the other when the key is ignored, and a wrong recovery equal
  to x costs only L1(x, y) ≈ 0.1. The correlation is scale-free, so it charges the *direction*
  of the leak: a wrong recovery equal to x scores 1 per part (2 in all) whatever |x − y| is; y plus
  noise scores ~0.
  0 turns it off (the paper).
* ``obfs_l1_triplet_margin`` — ObfsWR only: >0 adds the L1 twins of the paper's two ObfsWR
  triplets, Triplet(ẍ, y, x; L1) + Triplet(x̌, x, y; L1), at this margin (per image, in units
  of the [-1, 1] range: L1(x, y) is 0.05–0.3 for the obfuscators here, so the margin must be
  below it). The right-recovery one is what stops the collapse to x̌ ≈ y when LPIPS is off;
  with LPIPS on, the LPIPS triplets do that job. 0 turns them off (the paper).
* ``obfswr_l1_in_recovery`` — the authors' code puts ObfsWR's L1(ẍ, y) in L_R
  (weight λ2) instead of L_WR (weight λ3). Off by default (the paper).
* ``use_lpips`` — off drops every LPIPS term (fast smoke runs only).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from proface_jax.checkpoint import MODES
from proface_jax.lpips import lpips as _lpips


TRIPLET_REDUCTIONS = ("per_image", "batch_mean")
L1_TRIPLETS = ("image_mean", "torch_rows")
TORCH_PAIRWISE_EPS = 1e-6  # torch.pairwise_distance adds eps to the difference


@dataclasses.dataclass(frozen=True)
class LossConfig:
    mode: str = "randwr"
    use_lpips: bool = True
    beta: float = 5.0
    margin: float = 1.0
    lambdas: tuple[float, float, float] = (0.3, 0.5, 0.2)
    triplet_reduction: str = "per_image"
    l1_triplet: str = "image_mean"
    wrong_on_clamped: bool | None = None  # None: on for randwr, off for obfswr
    obfswr_l1_in_recovery: bool = False
    wr_l1_margin: float | None = None  # None: `margin`
    wr_decorrelate: float = 0.0
    obfs_decorrelate: float = 0.0
    obfs_l1_triplet_margin: float = 0.0
    decorrelate_thumbs: tuple[int, ...] = ()
    wr_reid_hinge: float = 0.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"loss mode must be one of {MODES}, got {self.mode!r}")
        if self.triplet_reduction not in TRIPLET_REDUCTIONS:
            raise ValueError(f"triplet_reduction must be one of {TRIPLET_REDUCTIONS}, got {self.triplet_reduction!r}")
        if self.l1_triplet not in L1_TRIPLETS:
            raise ValueError(f"l1_triplet must be one of {L1_TRIPLETS}, got {self.l1_triplet!r}")
        if len(self.lambdas) != 3:
            raise ValueError(f"lambdas must be (λ1, λ2, λ3), got {self.lambdas!r}")
        object.__setattr__(self, "lambdas", tuple(float(v) for v in self.lambdas))
        thumbs = tuple(int(v) for v in self.decorrelate_thumbs)
        if any(v < 2 for v in thumbs):
            raise ValueError(f"decorrelate_thumbs must be sizes ≥ 2, got {self.decorrelate_thumbs!r}")
        object.__setattr__(self, "decorrelate_thumbs", thumbs)

    @property
    def clamp_wrong(self) -> bool:
        return self.mode == "randwr" if self.wrong_on_clamped is None else bool(self.wrong_on_clamped)

    @classmethod
    def from_train_config(cls, config: Any) -> "LossConfig":
        """From a training ConfigDict: `config.mode` and `config.loss` (λ per mode: `lambdas_<mode>`)."""
        mode = config.mode
        loss = config.loss
        lam = loss.get(f"lambdas_{mode}", None)
        if lam is None:
            lam = loss.lambdas
        return cls(mode=mode, use_lpips=bool(loss.use_lpips), beta=float(loss.beta), margin=float(loss.margin),
                   lambdas=tuple(lam), triplet_reduction=loss.triplet_reduction, l1_triplet=loss.l1_triplet,
                   wrong_on_clamped=loss.get("wrong_on_clamped", None),
                   obfswr_l1_in_recovery=bool(loss.get("obfswr_l1_in_recovery", False)),
                   wr_l1_margin=loss.get("wr_l1_margin", None),
                   wr_decorrelate=float(loss.get("wr_decorrelate", 0.0)),
                   obfs_decorrelate=float(loss.get("obfs_decorrelate", 0.0)),
                   obfs_l1_triplet_margin=float(loss.get("obfs_l1_triplet_margin", 0.0)),
                   decorrelate_thumbs=tuple(loss.get("decorrelate_thumbs", None) or ()),
                   wr_reid_hinge=float(loss.get("wr_reid_hinge", 0.0)))


# ---------------------------------------------------------------------------- distances


def l1_per_image(a, b) -> jax.Array:
    """Mean absolute difference per image: [B]."""
    return jnp.mean(jnp.abs(a - b), axis=tuple(range(1, a.ndim)))


def l1_rows_torch(a, b) -> jax.Array:
    """torch.pairwise_distance(p=1) on NCHW: ‖a − b + eps‖₁ along W, per (image, channel, row): [B, H, C]."""
    return jnp.sum(jnp.abs(a - b + TORCH_PAIRWISE_EPS), axis=2)


def lpips_per_image(lpips_params, a, b) -> jax.Array:
    return _lpips(lpips_params, a, b)


def triplet(d_ap, d_an, margin: float, reduction: str = "per_image") -> jax.Array:
    """max(d(A,P) − d(A,N) + m, 0) reduced to a scalar.

    per_image: mean over samples of the hinge (any extra axes are hinged elementwise too);
    batch_mean: the hinge of the mean distances (the authors' LPIPS triplet).
    """
    if reduction == "per_image":
        return jnp.mean(jnp.maximum(d_ap - d_an + margin, 0.0))
    if reduction == "batch_mean":
        return jnp.maximum(jnp.mean(d_ap) - jnp.mean(d_an) + margin, 0.0)
    raise ValueError(f"unknown triplet reduction {reduction!r}; use one of {TRIPLET_REDUCTIONS}")


def _l1_triplet(anchor, positive, negative, cfg: LossConfig) -> jax.Array:
    margin = cfg.margin if cfg.wr_l1_margin is None else float(cfg.wr_l1_margin)
    if cfg.l1_triplet == "torch_rows":
        return triplet(l1_rows_torch(anchor, positive), l1_rows_torch(anchor, negative), margin, "per_image")
    return triplet(l1_per_image(anchor, positive), l1_per_image(anchor, negative), margin, cfg.triplet_reduction)


def pearson_per_image(a, b) -> jax.Array:
    """Pearson correlation of two images over all their pixels and channels: [B]."""
    axes = tuple(range(1, a.ndim))
    a = a - jnp.mean(a, axis=axes, keepdims=True)
    b = b - jnp.mean(b, axis=axes, keepdims=True)
    num = jnp.sum(a * b, axis=axes)
    return num / jnp.sqrt(jnp.sum(a * a, axis=axes) * jnp.sum(b * b, axis=axes) + 1e-8)


def _gray_pool(images, factor: int = 4) -> jax.Array:
    b, h, w, _ = images.shape
    gray = jnp.mean(images, axis=-1)[:, : h - h % factor, : w - w % factor]
    return gray.reshape(b, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def area_resize(gray, size: int) -> jax.Array:
    """[B, H, W] -> [B, size, size] by area averaging (exact when H, W are multiples of size).
    Shared with the thumbnail attack (proface_jax.evaluation.attacks), so the loss sees what it sees."""
    b, h, w = gray.shape
    if h % size == 0 and w % size == 0:
        return gray.reshape(b, size, h // size, size, w // size).mean(axis=(2, 4))
    return jax.image.resize(gray, (b, size, size), "linear", antialias=True)


def _gray_thumb(images, size: int) -> jax.Array:
    return area_resize(jnp.mean(images, axis=-1), size)


def _resolutions(wrong, x, thumbs: tuple[int, ...]) -> list[tuple[jax.Array, jax.Array]]:
    """(ẍ, x) at full resolution, then as grayscale thumbnails: 4×4-pooled when `thumbs` is
    empty, else area-averaged to each size in `thumbs` — the views every leak term scores."""
    if not thumbs:
        return [(wrong, x), (_gray_pool(wrong), _gray_pool(x))]
    return [(wrong, x)] + [(_gray_thumb(wrong, size), _gray_thumb(x, size)) for size in thumbs]


def decorrelation_loss(wrong, x, thumbs: tuple[int, ...] = ()) -> jax.Array:
    """Mean squared correlation of ẍ with x, summed over the views of `_resolutions`."""
    return sum(jnp.mean(pearson_per_image(w, t) ** 2) for w, t in _resolutions(wrong, x, thumbs))


def pearson_matrix(a, b) -> jax.Array:
    """[B, B] Pearson correlations of every a_i with every b_j (flattened)."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    a = a - jnp.mean(a, axis=1, keepdims=True)
    b = b - jnp.mean(b, axis=1, keepdims=True)
    a = a / jnp.sqrt(jnp.sum(a * a, axis=1, keepdims=True) + 1e-8)
    b = b / jnp.sqrt(jnp.sum(b * b, axis=1, keepdims=True) + 1e-8)
    return jnp.matmul(a, b.T, precision=jax.lax.Precision.HIGHEST)


def reid_hinge_loss(wrong, x, thumbs: tuple[int, ...] = ()) -> jax.Array:
    """The thumbnail attack, in the batch: how far |corr(ẍ_i, x_i)| stands above the mean
    |corr(ẍ_i, x_j)| over the batch's other faces j, hinged at 0, per grayscale thumbnail size
    (4×4-pooled when `thumbs` is empty) and at full resolution, averaged over i.
    The gallery side is held fixed (stop_gradient): the term may only lower the true match,
    never raise ẍ's likeness to other faces. Unlike corr², its gradient does not fade as |r|
    shrinks, and it stops once the true face no longer stands out. Needs a batch of ≥ 2."""
    b = x.shape[0]
    if b < 2:
        raise ValueError(f"reid_hinge_loss needs a batch of at least 2 faces, got {b}")
    off = 1.0 - jnp.eye(b, dtype=x.dtype)

    def one(w, t):
        c = jnp.abs(pearson_matrix(w, t))
        gallery = jax.lax.stop_gradient(jnp.sum(c * off, axis=1) / (b - 1))
        return jnp.mean(jax.nn.relu(jnp.diagonal(c) - gallery))

    return sum(one(w, t) for w, t in _resolutions(wrong, x, thumbs))


def residual_decorrelation_loss(wrong, x, y, thumbs: tuple[int, ...] = ()) -> jax.Array:
    """ObfsWR leak: mean squared correlation of (ẍ − y) with (x − y), full size and as thumbnails."""
    return decorrelation_loss(wrong - y, x - y, thumbs)


# ---------------------------------------------------------------------------- the terms


def protection_loss(protected, y, lpips_params, cfg: LossConfig):
    """L_P = β·LPIPS(ŷ, y) + L1(ŷ, y) -> (scalar, terms)."""
    l1 = jnp.mean(l1_per_image(protected, y))
    terms = {"p_l1": l1}
    total = l1
    if cfg.use_lpips:
        lp = jnp.mean(lpips_per_image(lpips_params, protected, y))
        terms["p_lpips"] = lp
        total = total + cfg.beta * lp
    return total, terms


def recovery_loss(recovered, x):
    """L_R = L1(x̌, x)."""
    return jnp.mean(l1_per_image(recovered, x))


def wrong_recovery_loss(x, y, recovered, wrong, lpips_params, cfg: LossConfig):
    """L_WR for cfg.mode -> (L_WR, extra term moved into L_R (0 unless obfswr_l1_in_recovery), terms)."""
    shown = jnp.clip(wrong, -1.0, 1.0)  # what a viewer (and an attacker) sees
    if cfg.clamp_wrong:
        wrong = shown
    terms: dict[str, jax.Array] = {}
    extra_r = jnp.zeros((), jnp.float32)
    if cfg.mode == "randwr":
        t_l1 = _l1_triplet(x, recovered, wrong, cfg)
        terms["wr_triplet_l1"] = t_l1
        total = t_l1
        if cfg.wr_decorrelate:
            dec = decorrelation_loss(shown, x, cfg.decorrelate_thumbs)  # on the clamped image, whatever the hinge sees
            terms["wr_decorrelation"] = dec
            total = total + cfg.wr_decorrelate * dec
        if cfg.wr_reid_hinge:
            hinge = reid_hinge_loss(shown, x, cfg.decorrelate_thumbs)  # also on the clamped image
            terms["wr_reid_hinge"] = hinge
            total = total + cfg.wr_reid_hinge * hinge
        if cfg.use_lpips:
            t_lp = triplet(lpips_per_image(lpips_params, x, recovered), lpips_per_image(lpips_params, x, wrong),
                           cfg.margin, cfg.triplet_reduction)
            terms["wr_triplet_lpips"] = t_lp
            total = total + t_lp
        return total, extra_r, terms
    # obfswr
    l1_wy = jnp.mean(l1_per_image(wrong, y))
    terms["wr_l1"] = l1_wy
    if cfg.obfswr_l1_in_recovery:
        extra_r, total = l1_wy, jnp.zeros((), jnp.float32)
    else:
        total = l1_wy
    if cfg.obfs_decorrelate:
        dec = residual_decorrelation_loss(shown, x, y, cfg.decorrelate_thumbs)
        terms["wr_residual_decorrelation"] = dec
        total = total + cfg.obfs_decorrelate * dec
    if cfg.obfs_l1_triplet_margin > 0:
        m = cfg.obfs_l1_triplet_margin
        t_wrong = triplet(l1_per_image(wrong, y), l1_per_image(wrong, x), m, cfg.triplet_reduction)
        t_right = triplet(l1_per_image(recovered, x), l1_per_image(recovered, y), m, cfg.triplet_reduction)
        terms["wr_triplet_wrong_l1"] = t_wrong
        terms["wr_triplet_right_l1"] = t_right
        total = total + t_wrong + t_right
    if cfg.use_lpips:
        t_wrong = triplet(lpips_per_image(lpips_params, wrong, y), lpips_per_image(lpips_params, wrong, x),
                          cfg.margin, cfg.triplet_reduction)
        t_right = triplet(lpips_per_image(lpips_params, recovered, x), lpips_per_image(lpips_params, recovered, y),
                          cfg.margin, cfg.triplet_reduction)
        terms["wr_triplet_wrong"] = t_wrong
        terms["wr_triplet_right"] = t_right
        total = total + t_wrong + t_right
    return total, extra_r, terms


def total_loss(x, y, protected, recovered, wrong, lpips_params, cfg: LossConfig | Mapping):
    """λ1·L_P + λ2·L_R + λ3·L_WR -> (scalar, dict of every term, for logging).

    `lpips_params` may be None only when cfg.use_lpips is False.
    """
    if not isinstance(cfg, LossConfig):
        cfg = LossConfig(**dict(cfg))
    if cfg.use_lpips and lpips_params is None:
        raise ValueError("use_lpips is on but no LPIPS params were given (proface_jax.lpips.load_params())")
    l_p, p_terms = protection_loss(protected, y, lpips_params, cfg)
    l_wr, extra_r, wr_terms = wrong_recovery_loss(x, y, recovered, wrong, lpips_params, cfg)
    l_r = recovery_loss(recovered, x) + extra_r
    lam1, lam2, lam3 = cfg.lambdas
    total = lam1 * l_p + lam2 * l_r + lam3 * l_wr
    return total, {"loss": total, "L_P": l_p, "L_R": l_r, "L_WR": l_wr, **p_terms, **wr_terms}

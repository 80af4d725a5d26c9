"""Training configs (ml_collections ConfigDicts): `base_config` documents every field, and the
named presets start from it.

    paper112    the paper's setting (default): N=3, 112×112, batch 12, Adam 1e-5, margin 1.0
    authors256  the authors' public code: 256×256, batch 6, margin 1.2, Adam eps 1e-6, weight decay 1e-5
    fast        the schedule measured on this project's CPUs (spec §6): Adam 3e-4, warmup + cosine, clip 1.0
    smoke       tiny (32×32, one block, batch 2, a few steps, LPIPS off): tests and plumbing checks

`get(name, mode)` builds one; the config files of a checkout (`experiments/configs/*.py`, for
`--config=`) are each a `get_config` over this, and notebooks call `get` directly.
"""
from __future__ import annotations

from pathlib import Path

import ml_collections
from ml_collections import config_dict

from proface_jax.checkpoint import MODES

# The shared UTKFace folder beside a checkout (an editable install); any data is a --config.data away.
DEFAULT_DATA = "folder:" + str((Path(__file__).resolve().parents[3] / "shared" / "datasets" / "utkface").resolve())
# The authors' (λ1, λ2, λ3) per mode (spec §5); the paper gives none.
AUTHORS_LAMBDAS = {"randwr": (0.3, 0.5, 0.2), "obfswr": (0.2, 0.3, 0.5)}


def _mode(arg: str | None) -> str:
    mode = (arg or "randwr").strip().lower()
    if mode not in MODES:
        raise ValueError(f"config argument must be a mode, one of {MODES}; got {arg!r}")
    return mode


def base_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.mode = _mode(arg)  # randwr | obfswr (overridden by --mode)

    # ---- data
    c.data = DEFAULT_DATA  # folder:PATH (relative paths: from the working directory) | tfds:celeb_a | tfds:lfw
    c.tfds_data_dir = ""  # "" -> tfds default ($TFDS_DATA_DIR or ~/tensorflow_datasets)
    c.image_size = 112
    c.batch_size = 12
    c.small_size = 0  # >0: train the first `small_size_steps` steps at this size (a cheap first stage)
    c.small_size_steps = 0
    c.num_workers = 2  # decoding threads
    c.prefetch = 2
    c.seed = 0

    # ---- augmentation of the training faces (input_pipeline.augment): re-crops unlike the aligned
    # crops, each image with probability `prob`, a pure function of (seed, step, position in batch);
    # off by default (existing runs unchanged)
    c.augment = ml_collections.ConfigDict(dict(enabled=False, prob=0.5, scale_min=0.8, scale_max=1.25, shift=0.10,
                                               angle=10.0, brightness=0.15, contrast=0.15, saturation=0.20,
                                               channel_gain=0.05))

    # ---- model (proface_jax.flow.FlowConfig)
    c.flow = ml_collections.ConfigDict(dict(num_blocks=3, clamp=2.0, init_scale=0.01, precision="highest",
                                            reversible_backprop=False,  # True: less memory, ~1.3× time
                                            # variant axes (proface_jax.variants presets; the paper's values):
                                            coupling="affine",  # | additive | affine_sigmoid
                                            conditioner="dense",  # | resnet | unet
                                            key_injection="concat",  # | film | none
                                            standin="key",  # | noise
                                            mixing="none"))  # | permute | inv1x1
    c.init_from = ""  # a .pfj to start from (warm start, e.g. ObfsWR from a RandWR model); fresh optimiser
    c.quantize_protected = True  # straight-through 8-bit rounding of ŷ before recovery
    # right- and wrong-key recoveries as one inverse pass over the stacked batch (True) or two (False):
    # the same values, but on XLA:CPU the stacked pass was slower (b12 @112, LPIPS off: 11.1 vs 8.7 s/step
    # on 2 threads, 16.5 vs 13.5 s on one core; benchmarks/bench_train_step.py), so two is the default
    c.paired_recovery = False

    # ---- pre-obfuscators: one drawn per batch
    c.obfuscators = "blur,pixelate,median,mask,swap"
    # per-obfuscator draw weights for training batches, "name=w,..." (unnamed: 1; "": uniform, the paper),
    # e.g. "mask=2" draws the mask obfuscator twice as often as each other one; validation is unaffected
    c.obfuscator_weights = ""
    c.obfuscator_preset = "paper112"
    c.donor_split = "validation"  # swap's donor faces: this split of the data (never the training split)
    c.donor_limit = 512  # at most this many donors (decoded once into memory)

    # ---- losses (proface_jax.losses.LossConfig)
    c.loss = ml_collections.ConfigDict()
    c.loss.use_lpips = True
    c.loss.beta = 5.0
    c.loss.margin = 1.0  # the paper's; the authors' code uses 1.2
    c.loss.lambdas_randwr = AUTHORS_LAMBDAS["randwr"]
    c.loss.lambdas_obfswr = AUTHORS_LAMBDAS["obfswr"]
    c.loss.triplet_reduction = "per_image"  # | batch_mean (authors' LPIPS triplet)
    c.loss.l1_triplet = "image_mean"  # | torch_rows (authors' TripletMarginLoss(p=1) on NCHW)
    c.loss.wrong_on_clamped = config_dict.placeholder(bool)  # None: on for randwr, off for obfswr
    c.loss.obfswr_l1_in_recovery = False  # True: authors' code (L1(ẍ, y) weighted by λ2)
    c.loss.wr_l1_margin = config_dict.placeholder(float)  # None: `margin` (RandWR L1 triplet)
    c.loss.wr_decorrelate = 0.0  # RandWR: weight of corr(ẍ, x)² in L_WR (0: the paper)
    c.loss.obfs_decorrelate = 0.0  # ObfsWR: weight of corr(ẍ − y, x − y)² in L_WR (0: the paper)
    c.loss.wr_reid_hinge = 0.0  # RandWR: weight of the in-batch re-identification hinge (0: off)
    c.loss.decorrelate_thumbs = ()  # fixed thumbnail sizes for the decorrelation terms (): 4×4-pooled
    c.loss.obfs_l1_triplet_margin = 0.0  # ObfsWR: >0 adds L1 twins of its two LPIPS triplets (0: the paper)

    # ---- a keyless attacker trained alongside the flow (proface_jax.adversary): it learns ŷ -> x
    # (`updates` Adam steps per training step, L1), and the flow pays `weight` × how much closer to x
    # it gets from ŷ than from y. weight 0: off (the paper); the attacker is never exported
    # init_from: an attacker's params (adversary.save_params, e.g. benchmarks/keyless_probe.py --save):
    # one that already reads the leak, so the flow is pushed from the first step
    c.adversary = ml_collections.ConfigDict(dict(weight=0.0, width=16, lr=1e-3, updates=1, init_from=""))

    # ---- optimiser: Adam; weight decay is PyTorch Adam's (L2 added to the gradient)
    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 1e-5
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.eps = 1e-8
    c.optim.weight_decay = 0.0
    c.optim.schedule = "constant"  # | warmup_cosine
    c.optim.warmup_steps = 0
    c.optim.final_lr_ratio = 0.0  # warmup_cosine: lr at the end / peak lr
    c.optim.grad_clip = 0.0  # global-norm clip; 0 = off
    c.num_train_steps = 135_000
    c.time_limit_s = 0.0  # >0: stop (validate, checkpoint, export) after the first step past this wall time

    # ---- loss-explosion guard: NaN/Inf, or loss > factor × running median -> restore, lr × lr_decay
    c.guard = ml_collections.ConfigDict()
    c.guard.enabled = True
    c.guard.window = 100
    c.guard.min_history = 20
    c.guard.factor = 10.0
    c.guard.lr_decay = 0.5
    c.guard.max_rollbacks = 8

    # ---- logging, evaluation, checkpoints
    c.log_every = 50
    c.eval_every = 1000
    c.sample_every = 1000
    c.eval_batch_size = 12  # fixed validation faces, each through every obfuscator (eval setting)
    c.eval_lpips = True  # LPIPS in the validation metrics (needs the weights even if loss.use_lpips is off)
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.best_metric = "val/loss"
    c.best_mode = "min"  # min | max
    c.progress_bar = True

    c.debug = ml_collections.ConfigDict()
    c.debug.inject_nan_at_step = -1  # >=0: poison that step's batch once (tests the guard)

    # ---- multi-process training on jax.distributed (training.distributed); none of it for one process
    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = ""  # HOST:PORT of process 0 ("" with auto=False: a single process)
    c.distributed.num_processes = 1
    c.distributed.process_id = 0
    c.distributed.auto = False  # True: jax.distributed.initialize() finds the cluster (SLURM, Cloud TPU, ...)
    c.distributed.timeout_s = 300  # how long processes wait for each other to join
    c.distributed.heartbeat_timeout_s = 100  # a process silent this long is declared dead; the others stop
    return c


def paper112(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The paper's setting (spec §6): N=3, 112×112, batch 12, Adam (0.9, 0.999) lr 1e-5 constant,
    margin 1.0, β=5, the authors' λ per mode, about 135k steps; obfuscators drawn per batch."""
    return c


def authors256(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The authors' public code (spec §6): 256×256 in [-1, 1], batch 6, Adam lr 1e-5 constant,
    eps 1e-6, weight decay 1e-5 (PyTorch Adam's, coupled), margin 1.2, about 300k steps,
    obfuscator strengths of the authors256 preset. The authors trained on aligned CelebA:
    --config.data=tfds:celeb_a (the default data, UTKFace at 200×200, is upscaled to 256)."""
    c.image_size = 256
    c.batch_size = 6
    c.eval_batch_size = 6
    c.loss.margin = 1.2
    c.optim.eps = 1e-6
    c.optim.weight_decay = 1e-5
    c.obfuscator_preset = "authors256"
    c.num_train_steps = 300_000
    return c


def fast(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The schedule measured on this project's 2-core CPUs (spec §6): Adam 3e-4 with a linear
    warmup and a cosine decay, global-norm clipping at 1.0; the paper's 1e-5 learns far slower
    there. Losses are the paper's (LPIPS on; `--config.loss.use_lpips=False` roughly halves a
    step's cost). A first stage at 64×64 (`small_size_steps`) makes the early steps cheaper."""
    c.optim.lr = 3e-4
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 50
    c.optim.final_lr_ratio = 0.05
    c.optim.grad_clip = 1.0
    c.num_train_steps = 3000
    c.small_size = 64
    c.small_size_steps = 1000
    c.log_every = 10
    c.eval_every = 250
    c.sample_every = 250
    c.checkpoint_every = 250
    return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Tiny and quick, for tests and plumbing checks: 32×32, one block, batch 2, 4 steps, LPIPS off."""
    c.image_size = 32
    c.batch_size = 2
    c.flow.num_blocks = 1
    c.num_train_steps = 4
    c.loss.use_lpips = False
    c.eval_lpips = False
    c.optim.lr = 1e-4
    c.optim.grad_clip = 1.0
    c.eval_batch_size = 2
    c.donor_limit = 8
    c.log_every = 1
    c.eval_every = 2
    c.sample_every = 2
    c.checkpoint_every = 2
    c.keep_checkpoints = 2
    c.guard.min_history = 2
    c.guard.window = 10
    c.num_workers = 1
    c.prefetch = 1
    c.progress_bar = False
    return c


PRESETS = {"paper112": paper112, "authors256": authors256, "fast": fast, "smoke": smoke}


def get(name: str = "paper112", mode: str | None = None) -> ml_collections.ConfigDict:
    """Preset `name` for `mode` ("randwr", the default, or "obfswr")."""
    if name not in PRESETS:
        raise ValueError(f"unknown config {name!r}; one of {sorted(PRESETS)}")
    return PRESETS[name](base_config(mode))

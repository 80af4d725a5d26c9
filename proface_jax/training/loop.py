"""Training PRO-Face S: a library of pure functions plus `main` (Flax-examples style).

    python -m experiments.train --mode=obfswr --workdir W \
        [--config experiments/configs/paper112.py] [--config.some.key=value ...]

Data: ``--config.data=folder:PATH`` (default: the shared UTKFace folder), ``tfds:celeb_a`` or
``tfds:lfw`` (see `experiments.input_pipeline`).

One step (`train_step`, jitted; `make_train_step` binds the config, the mesh and the frozen
LPIPS params): a fresh uniform ±1 key per sample and an independent wrong key per sample,
ŷ = protect(x, y; K), ŷ rounded to 8 bits with a straight-through gradient
(`quantize_protected`), x̌ = recover(ŷ; K), ẍ = recover(ŷ; K'), losses of
`proface_jax.losses`, one Adam update scaled by the state's `lr_scale`.

The pre-obfuscated batch y is made before the step, one obfuscator per batch: the JAX ones
(blur, pixelate, median) in their own small jitted function, the numpy ones (mask, swap) on
the host; so the big step compiles once whatever the obfuscator.

Determinism and exact resume: batch s is a pure function of (seed, s)
(`input_pipeline.make_iterator`), and every random draw of step s comes from
fold_in(train_root, s). A checkpoint holds the state (params, Adam state, step, lr scale)
plus JSON meta (iterator position, the guard's loss history, the best validation value), so
"n steps, stop, resume, n steps" equals 2n steps straight.

Wall-clock limit (`time_limit_s` > 0, e.g. a lent GPU for a few minutes): training stops after
the first step past the limit and treats it as the last (validation, checkpoint, model.pfj);
the lr schedule still runs to `num_train_steps`, so a resume continues it unchanged.

Data parallel: a 1-D `jax.sharding.Mesh` ("data") over the local devices (as many as divide
the batch); the batch is sharded along it, params and optimizer state replicated, and jit
inserts the gradient all-reduce. No pmap.

Loss-explosion guard (HiNet-style blow-ups, spec §6): a step whose loss is NaN/Inf or above
`guard.factor` × the running median of recent losses is dropped, the last checkpoint is
restored, the lr scale is multiplied by `guard.lr_decay`, and the event is logged.

Outputs in the workdir: checkpoints/ (orbax, last `keep_checkpoints`), best/ (orbax, best by
`best_metric`), metrics.jsonl, samples/step_XXXXXXX.png (rows: x, y, ŷ, x̌, ẍ, one per
obfuscator), config.json, best.pfj (at each new best) and model.pfj (at the end), the
single-file inference checkpoints of `proface_jax.checkpoint`.
"""
from __future__ import annotations

import collections
import functools
import json
import logging
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from experiments import input_pipeline
from proface_jax import images, keys, losses, metrics, obfuscators
from proface_jax.checkpoint import load_checkpoint, save_checkpoint
from proface_jax.flow import FlowConfig, init_params, protect, recover

logger = logging.getLogger("proface.train")

DATA_AXIS = "data"


# --------------------------------------------------------------------------- state


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    lr_scale: jax.Array  # multiplies every update; lowered by the explosion guard


# What a step reads from the config. Steps are jitted with this (frozen, hashable) part as a
# static argument, so runs in one process that differ elsewhere (paths, step counts, logging)
# share compiled steps.
STEP_KEYS = ("mode", "flow", "loss", "quantize_protected", "optim")


def step_config(config) -> ml_collections.FrozenConfigDict:
    d = {k: config[k] for k in STEP_KEYS}
    if config.optim.schedule != "constant":
        d["num_train_steps"] = config.num_train_steps
    return ml_collections.FrozenConfigDict(d)


def flow_config(config) -> FlowConfig:
    return FlowConfig.from_any(config.flow)


def loss_config(config) -> losses.LossConfig:
    return losses.LossConfig.from_train_config(config)


def learning_rate_schedule(config) -> optax.Schedule:
    o = config.optim
    if o.schedule == "constant":
        return optax.constant_schedule(o.lr)
    if o.schedule == "warmup_cosine":
        total = max(int(config.num_train_steps), int(o.warmup_steps) + 1)
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0, peak_value=o.lr, warmup_steps=int(o.warmup_steps), decay_steps=total,
            end_value=o.lr * o.final_lr_ratio)
    raise ValueError(f"unknown optim.schedule {o.schedule!r}; use 'constant' or 'warmup_cosine'")


def make_optimizer(config) -> optax.GradientTransformation:
    """[global-norm clip] -> [L2 weight decay, PyTorch Adam style] -> Adam -> -lr(step)."""
    o = config.optim
    parts = []
    if o.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip))
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay))
    parts.append(optax.scale_by_adam(b1=o.b1, b2=o.b2, eps=o.eps))
    parts.append(optax.scale_by_learning_rate(learning_rate_schedule(config)))
    return optax.chain(*parts)


def create_train_state(rng, config) -> TrainState:
    """Fresh params, or those of `config.init_from` (a .pfj of the same flow config) with a fresh optimiser."""
    params = init_params(rng, flow_config(config))
    if config.get("init_from", ""):
        ck = load_checkpoint(config.init_from)
        if ck.config != flow_config(config):
            raise ValueError(f"init_from {config.init_from}: its flow config {ck.config} differs from this run's "
                             f"{flow_config(config)}")
        params = jax.tree_util.tree_map(jnp.asarray, ck.params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=make_optimizer(config).init(params),
                      lr_scale=jnp.ones((), jnp.float32))


# --------------------------------------------------------------------------- mesh


def make_mesh(batch_size: int, devices: Iterable | None = None) -> Mesh:
    """A 1-D data mesh over as many of `devices` (default: all local) as divide the batch."""
    devices = list(jax.local_devices() if devices is None else devices)
    n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
    if n < len(devices):
        logger.warning("batch %d does not split over %d devices: using %d", batch_size, len(devices), n)
    return Mesh(np.asarray(devices[:n]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree, mesh: Mesh):
    return jax.device_put(tree, replicated(mesh))


def shard_batch(batch, mesh: Mesh):
    return jax.device_put(batch, batch_sharding(mesh))


# --------------------------------------------------------------------------- steps


def straight_through_quantize(x):
    """8-bit rounding in the forward pass; the gradient of the clamp to [-1, 1], straight through the rounding.

    Only the rounding is passed straight through. An identity gradient through the clamp too would
    tell ŷ that pushing a pixel past ±1 still changes the recovery, when the stored file cannot
    hold it: in RandWR runs that drove ŷ out of range without end (L_P 0.05 -> 1.4 in 80 steps).
    """
    clamped = jnp.clip(x, -1.0, 1.0)
    return clamped + jax.lax.stop_gradient(images.quantize(x) - clamped)


def forward(params, x, y, K, K_wrong, config, *, straight_through: bool = True):
    """ŷ, the stored ŷ (8-bit if quantize_protected), x̌ and ẍ."""
    fc = flow_config(config)
    protected, _ = protect(params, x, y, K, fc)
    stored = protected
    if config.quantize_protected:
        stored = straight_through_quantize(protected) if straight_through else images.quantize(protected)
    recovered, _ = recover(params, stored, K, fc)
    wrong, _ = recover(params, stored, K_wrong, fc)
    return {"protected": protected, "stored": stored, "recovered": recovered, "wrong": wrong}


def step_keys(rng, batch_size: int, height: int, width: int):
    """(K, K_wrong): independent fresh ±1 maps per sample."""
    k1, k2 = jax.random.split(rng)
    return keys.random_key(k1, batch_size, height, width), keys.random_key(k2, batch_size, height, width)


def loss_fn(params, batch, rng, lpips_params, config):
    x, y = batch["x"], batch["y"]
    b, h, w, _ = x.shape
    K, K_wrong = step_keys(rng, b, h, w)
    out = forward(params, x, y, K, K_wrong, config)
    total, terms = losses.total_loss(x, y, out["protected"], out["recovered"], out["wrong"], lpips_params,
                                     loss_config(config))
    return total, terms


def train_step(state: TrainState, batch, rng, lpips_params, config):
    """One update. Pure: (state, {'x', 'y'}, rng, frozen LPIPS params or None) -> (state, scalar metrics)."""
    tx = make_optimizer(config)
    grads_fn = jax.value_and_grad(loss_fn, has_aux=True)
    (_, terms), grads = grads_fn(state.params, batch, rng, lpips_params, config)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    updates = jax.tree_util.tree_map(lambda u: u * state.lr_scale, updates)
    params = optax.apply_updates(state.params, updates)
    lr = learning_rate_schedule(config)(state.step) * state.lr_scale
    m = dict(terms, grad_norm=optax.tree.norm(grads), lr=lr)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), m


def eval_step(params, batch, lpips_params, config):
    """Forward with the batch's keys and real 8-bit rounding: images and the loss terms."""
    x, y = batch["x"], batch["y"]
    out = forward(params, x, y, batch["K"], batch["K_wrong"], config, straight_through=False)
    _, terms = losses.total_loss(x, y, out["protected"], out["recovered"], out["wrong"], lpips_params,
                                 loss_config(config))
    return dict(out, **{f"loss/{k}": v for k, v in terms.items()})


@functools.lru_cache(maxsize=None)
def _jitted_steps(mesh: Mesh):
    rep, bat = replicated(mesh), batch_sharding(mesh)
    # config (the last positional argument) is static; in_shardings cover the others.
    train = jax.jit(train_step, static_argnums=(4,), in_shardings=(rep, bat, rep, rep), out_shardings=(rep, rep))
    evaluate = jax.jit(eval_step, static_argnums=(3,), in_shardings=(rep, bat, rep))
    return train, evaluate


def make_train_step(config, mesh: Mesh, lpips_params=None) -> Callable:
    """`train_step(state, batch, rng) -> (state, metrics)`, jitted on `mesh`: batch sharded along
    its first axis, state and LPIPS params replicated. `lpips_params` is needed iff loss.use_lpips."""
    jitted = _jitted_steps(mesh)[0]
    cfg = step_config(config)
    lp = None if lpips_params is None else replicate(lpips_params, mesh)
    return lambda state, batch, rng: jitted(state, batch, rng, lp, cfg)


def make_eval_step(config, mesh: Mesh, lpips_params=None) -> Callable:
    """`eval_step(params, batch with K and K_wrong) -> outputs`, jitted on `mesh`."""
    jitted = _jitted_steps(mesh)[1]
    cfg = step_config(config)
    lp = None if lpips_params is None else replicate(lpips_params, mesh)
    return lambda params, batch: jitted(params, batch, lp, cfg)


# --------------------------------------------------------------------------- pre-obfuscation


class PreObfuscators:
    """The configured obfuscators (train or eval mode), one applied per batch."""

    def __init__(self, names: list[str], preset: str, mode: str, donors=None):
        self.obfs = []
        for name in names:
            opts = {"donors": donors} if name == "swap" else {}
            self.obfs.append(obfuscators.make(name, preset=preset, mode=mode, **opts))
        if not self.obfs:
            raise ValueError("no obfuscators configured")
        self.preset, self.mode = preset, mode

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.obfs]

    def apply(self, obf, rng, x):
        if obf.jittable:
            return _jitted_obfuscator(obf.name, self.preset, self.mode)(rng, jnp.asarray(x))
        return obf(rng, np.asarray(x))

    def __call__(self, rng, x):
        """One obfuscator drawn from `rng` for the whole batch -> (y, name)."""
        obf, use = obfuscators.choose(rng, self.obfs)
        return self.apply(obf, use, x), obf.name


@functools.lru_cache(maxsize=None)
def _jitted_obfuscator(name: str, preset: str, mode: str):
    """The JAX obfuscators are pure functions of (rng, images): one jitted copy per setting."""
    return jax.jit(obfuscators.make(name, preset=preset, mode=mode).__call__)


def obfuscator_names(config) -> list[str]:
    names = [n.strip() for n in str(config.obfuscators).split(",") if n.strip()]
    unknown = sorted(set(names) - set(obfuscators.names()))
    if unknown:
        raise ValueError(f"unknown obfuscator(s) {unknown}; known: {obfuscators.names()}")
    return names


# --------------------------------------------------------------------------- explosion guard


class LossGuard:
    """Flags a loss that is not finite or exceeds factor × the running median of the last `window`."""

    def __init__(self, window: int, min_history: int, factor: float, history: Iterable[float] = ()):
        self.window, self.min_history, self.factor = int(window), int(min_history), float(factor)
        self.history: collections.deque = collections.deque(history, maxlen=self.window)

    def check(self, loss: float) -> str | None:
        if not math.isfinite(loss):
            return f"non-finite loss ({loss})"
        if len(self.history) >= self.min_history:
            med = statistics.median(self.history)
            if loss > self.factor * med:
                return f"loss {loss:.4g} > {self.factor:g} × running median {med:.4g}"
        return None

    def update(self, loss: float) -> None:
        self.history.append(float(loss))


# --------------------------------------------------------------------------- host-side helpers


def resolve_data(spec: str) -> str:
    if spec.startswith("folder:"):
        return "folder:" + str(Path(spec[len("folder:"):]).expanduser().resolve())
    return spec


def open_split(config, split: str):
    return input_pipeline.open_source(resolve_data(config.data), split, data_dir=config.tfds_data_dir or None)


def validation_faces(config, size: int):
    """(fixed eval batch, swap donors) from the validation split (test, then train, if it is missing).

    Eval faces: the first eval_batch_size faces of the split (tiled if fewer). Donors (only if
    'swap' is configured): up to donor_limit of the split's other faces, as uint8
    [N, size, size, 3]; the eval faces themselves only if nothing else is there; None (swap
    dropped, with a warning) if the donor split cannot be opened. Donors never come from the
    training split.
    """
    src = None
    for split in ("validation", "test", "train"):
        try:
            src = open_split(config, split)
            break
        except ValueError as e:
            logger.warning("eval faces: %s", e)
    if src is None:
        raise ValueError(f"no faces to evaluate on in {config.data}")
    if split != "validation":
        logger.warning("eval faces taken from the %s split", split)
    n = min(len(src), int(config.eval_batch_size))
    x = np.stack([input_pipeline.preprocess(src[i].image, size) for i in range(n)])
    x = np.concatenate([x] * -(-int(config.eval_batch_size) // n))[: config.eval_batch_size]

    donors = None
    if "swap" in obfuscator_names(config):
        try:
            dsrc = src if config.donor_split == split else open_split(config, config.donor_split)
        except ValueError as e:
            logger.warning("swap dropped: no donor faces (%s)", e)
            dsrc = None
        if dsrc is not None:
            idx = np.arange(len(dsrc))
            if dsrc is src:
                idx = idx[n:] if len(idx) > n else idx  # keep eval faces out of the pool when possible
            idx = idx[: int(config.donor_limit)]
            donors = input_pipeline.cache_in_memory(input_pipeline.Subset(dsrc, idx), size,
                                                    num_workers=config.num_workers).images
            logger.info("swap donors: %d faces of the %s split", len(donors), config.donor_split)
    return x, donors


class JsonlWriter:
    def __init__(self, path: Path, truncate_after: int | None = None):
        self.path = path
        if truncate_after is not None and path.exists():
            # Resuming: drop records of steps after the restored checkpoint (they will be redone).
            kept = [ln for ln in path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= truncate_after]
            path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, (np.ndarray, jax.Array)):
        return np.asarray(o).tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _host_scalars(tree) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(tree).items()}


def config_json(config) -> dict:
    return json.loads(config.to_json())


# --------------------------------------------------------------------------- evaluation


class Evaluator:
    """Validation on a fixed batch (each face through every obfuscator's eval setting, fixed keys)."""

    def __init__(self, config, mesh, lpips_params, eval_root, x, donors):
        self.config = config
        self.lpips_params = lpips_params if config.eval_lpips else None
        size = int(config.image_size)
        b = -(-x.shape[0] // mesh.size) * mesh.size  # the batch axis is sharded: a multiple of the mesh
        self.x = np.concatenate([x] * -(-b // x.shape[0]))[:b]
        obfs = PreObfuscators(obfuscator_names_for(config, donors), config.obfuscator_preset, "eval", donors)
        kx, kobf = jax.random.split(eval_root)
        K, K_wrong = step_keys(kx, b, size, size)
        self.batches = []
        for i, obf in enumerate(obfs.obfs):
            try:
                y = np.asarray(obfs.apply(obf, jax.random.fold_in(kobf, i), self.x), np.float32)
            except ValueError as e:  # e.g. swap with no donor other than the eval face itself
                logger.warning("validation without %s: %s", obf.name, e)
                continue
            self.batches.append((obf.name, shard_batch({"x": self.x, "y": y, "K": K, "K_wrong": K_wrong}, mesh)))
        self.step_fn = make_eval_step(config, mesh, lpips_params if config.loss.use_lpips else None)

    def __call__(self, params):
        """-> (flat metrics {'val/...'}, sample rows for the image grid)."""
        wrong_ref = "x" if self.config.mode == "randwr" else "y"
        per: dict[str, list[float]] = collections.defaultdict(list)
        out_metrics: dict[str, float] = {}
        rows = []
        for k, (name, batch) in enumerate(self.batches):
            out = jax.device_get(self.step_fn(params, batch))
            x, y = np.asarray(batch["x"]), np.asarray(batch["y"])
            ref = {"x": x, "y": y}
            pairs = {"protect": (out["protected"], y), "recover": (out["recovered"], x),
                     "wrong": (out["wrong"], ref[wrong_ref])}
            if wrong_ref == "y":  # an ObfsWR wrong recovery must not be x either (a key-independent model)
                pairs["wrongx"] = (out["wrong"], x)
            for what, (a, b_) in pairs.items():
                for m, v in metrics.score(a, b_, self.lpips_params, from_8bit=True).items():
                    v = float(np.mean(v))
                    out_metrics[f"val/{name}/{what}_{m}"] = v
                    per[f"val/{what}_{m}"].append(v)
            for key, v in out.items():
                if key.startswith("loss/"):
                    per["val/" + key[len("loss/"):]].append(float(v))
            i = k % x.shape[0]
            rows.append([x[i], y[i], out["stored"][i], out["recovered"][i], out["wrong"][i]])
        out_metrics.update({k: float(np.mean(v)) for k, v in per.items()})
        return out_metrics, rows


def obfuscator_names_for(config, donors) -> list[str]:
    names = obfuscator_names(config)
    if "swap" in names and donors is None:
        names = [n for n in names if n != "swap"]
    return names


def save_grid(path: Path, rows) -> None:
    images.save_png(path, images.grid([[images.from_unit(im) for im in row] for row in rows]))


# --------------------------------------------------------------------------- checkpoints


def _checkpoint_managers(workdir: Path, config):
    import orbax.checkpoint as ocp

    periodic = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=int(config.keep_checkpoints), create=True),
        item_names=("state", "meta"))
    sign = 1.0 if config.best_mode == "max" else -1.0
    if config.best_mode not in ("min", "max"):
        raise ValueError(f"best_mode must be 'min' or 'max', got {config.best_mode!r}")
    best = ocp.CheckpointManager(
        workdir / "best",
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True, best_fn=lambda m: sign * m["value"],
                                             best_mode="max"),
        item_names=("state", "meta"))
    return periodic, best


def save_state(manager, state, meta: dict, metrics_: dict | None = None) -> None:
    import orbax.checkpoint as ocp

    step = int(state.step)
    if step in manager.all_steps():
        return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                 metrics=metrics_)


def restore_state(manager, step: int, like: TrainState, mesh: Mesh):
    """(state, meta) of checkpoint `step`, placed replicated on `mesh`; `like` gives the tree."""
    import orbax.checkpoint as ocp

    rep = replicated(mesh)
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=rep), like)
    r = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                      meta=ocp.args.JsonRestore()))
    return r.state, dict(r.meta)


# --------------------------------------------------------------------------- the loop


def size_at(config, step: int) -> int:
    if config.small_size > 0 and step < config.small_size_steps:
        return int(config.small_size)
    return int(config.image_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike, lpips_params=None) -> dict:
    """Trains to config.num_train_steps (resuming from workdir's last checkpoint).

    `lpips_params`: the frozen LPIPS weights, loaded with `proface_jax.lpips.load_params()` when
    not given and needed (loss.use_lpips or eval_lpips). Returns a summary (final state,
    model id, last validation metrics, best value, rollbacks, lr scale).
    """
    from tqdm import tqdm

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "samples").mkdir(exist_ok=True)
    config = ml_collections.ConfigDict(config.to_dict())  # private copy (no flag/placeholder links)
    if config.mode not in losses.MODES:
        raise ValueError(f"mode must be one of {losses.MODES}, got {config.mode!r}")
    config.data = resolve_data(config.data)
    lcfg = loss_config(config)
    logger.info("mode %s, data %s, %d×%d, batch %d, %d steps; wrong-recovery terms on %s ẍ", config.mode,
                config.data, config.image_size, config.image_size, config.batch_size, config.num_train_steps,
                "clamped" if lcfg.clamp_wrong else "raw")

    mesh = make_mesh(int(config.batch_size))
    logger.info("mesh: %d device(s) %s", mesh.size, [str(d) for d in mesh.devices.ravel()])

    if not (config.loss.use_lpips or config.eval_lpips):
        lpips_params = None
    elif lpips_params is None:
        from proface_jax.lpips import load_params

        lpips_params = load_params()

    # Sources, donors, obfuscators, the fixed eval batch.
    train_src = open_split(config, "train")
    eval_x, donors = validation_faces(config, int(config.image_size))
    train_obfs = PreObfuscators(obfuscator_names_for(config, donors), config.obfuscator_preset, "train", donors)
    logger.info("train faces: %d; obfuscators: %s", len(train_src), ", ".join(train_obfs.names))

    root = jax.random.key(int(config.seed))
    init_rng, train_root, eval_root = jax.random.split(root, 3)
    evaluator = Evaluator(config, mesh, lpips_params, eval_root, eval_x, donors)

    state = replicate(create_train_state(init_rng, config), mesh)
    guard = LossGuard(config.guard.window, config.guard.min_history, config.guard.factor)
    periodic, best_mgr = _checkpoint_managers(workdir, config)
    best_value, rollbacks = None, 0

    def meta_now():
        return {"step": int(state.step), "iterator_step": int(state.step), "guard_history": list(guard.history),
                "best_value": best_value, "rollbacks": rollbacks, "lr_scale": float(state.lr_scale),
                "seed": int(config.seed), "data": config.data}

    latest = periodic.latest_step()
    if latest is not None:
        state, meta = restore_state(periodic, latest, state, mesh)
        guard = LossGuard(config.guard.window, config.guard.min_history, config.guard.factor,
                          meta.get("guard_history", []))
        best_value, rollbacks = meta.get("best_value"), int(meta.get("rollbacks", 0))
        logger.info("resumed from step %d (lr scale %g)", latest, float(state.lr_scale))
        old = workdir / "config.json"
        if old.exists():
            changed = {k for k, v in config_json(config).items() if json.loads(old.read_text()).get(k) != v}
            if changed - {"num_train_steps"}:
                logger.warning("config differs from the checkpoint's run in: %s", sorted(changed))
    else:
        save_state(periodic, state, meta_now())  # step 0: there is always a checkpoint to roll back to
    (workdir / "config.json").write_text(json.dumps(config_json(config), indent=2, sort_keys=True))
    writer = JsonlWriter(workdir / "metrics.jsonl", truncate_after=int(state.step))

    step_fn = make_train_step(config, mesh, lpips_params if config.loss.use_lpips else None)
    step = int(state.step)
    total = int(config.num_train_steps)
    it, it_size = None, None
    nan_injected = False
    window: list[dict] = []
    last_val: dict = {}
    t_log = time.perf_counter()

    def open_iterator(at: int):
        nonlocal it, it_size
        if it is not None:
            it.close()
        it_size = size_at(config, at)
        it = input_pipeline.make_iterator(train_src, int(config.batch_size), it_size, seed=int(config.seed),
                                          start_step=at, num_workers=int(config.num_workers),
                                          prefetch=int(config.prefetch))

    def export(path: Path, val: dict):
        meta = {"steps": int(state.step), "data": config.data, "config": config_json(config),
                "val": {k: v for k, v in val.items() if "/" not in k[4:]}}
        return save_checkpoint(path, jax.device_get(state.params), flow_config(config), config.mode, meta)

    pbar = tqdm(total=total, initial=step, disable=not config.progress_bar, dynamic_ncols=True,
                desc=f"train {config.mode}", smoothing=0.05)
    time_limit = float(config.get("time_limit_s", 0.0) or 0.0)
    t_start = time.perf_counter()
    out_of_time = False
    try:
        while step < total and not out_of_time:
            if it is None or it_size != size_at(config, step):
                open_iterator(step)
            batch = next(it)
            assert batch["step"] == step, (batch["step"], step)
            x = batch["image"]
            step_rng = jax.random.fold_in(train_root, step)
            obf_rng, rng = jax.random.split(step_rng)
            y, obf_name = train_obfs(obf_rng, x)
            if config.debug.inject_nan_at_step == step and not nan_injected:
                x, y = np.full_like(x, np.nan), np.full(np.shape(y), np.nan, np.float32)
                nan_injected = True
            new_state, m = step_fn(state, shard_batch({"x": x, "y": y}, mesh), rng)
            m = _host_scalars(m)
            loss = m["loss"]
            reason = guard.check(loss) if config.guard.enabled else None
            if reason is not None:
                rollbacks += 1
                if rollbacks > config.guard.max_rollbacks:
                    raise RuntimeError(f"step {step}: {reason}; giving up after {config.guard.max_rollbacks} rollbacks")
                periodic.wait_until_finished()
                back = periodic.latest_step()
                new_scale = float(state.lr_scale) * float(config.guard.lr_decay)
                state, meta = restore_state(periodic, back, state, mesh)
                state = state.replace(lr_scale=replicate(jnp.asarray(new_scale, jnp.float32), mesh))
                guard = LossGuard(config.guard.window, config.guard.min_history, config.guard.factor,
                                  meta.get("guard_history", []))
                event = {"step": step, "kind": "rollback", "reason": reason, "restored_step": back,
                         "lr_scale": new_scale, "obfuscator": obf_name, "rollbacks": rollbacks}
                logger.warning("step %d: %s -> restored step %d, lr scale %g", step, reason, back, new_scale)
                writer.write(event)
                step = back
                open_iterator(step)
                pbar.n = step
                pbar.refresh()
                window.clear()
                continue

            state = new_state
            guard.update(loss)
            step += 1
            m["obfuscator"] = obf_name
            window.append(m)
            pbar.set_postfix(loss=f"{loss:.4f}", P=f"{m['L_P']:.4f}", R=f"{m['L_R']:.4f}",
                             WR=f"{m['L_WR']:.4f}", refresh=False)
            pbar.update(1)
            out_of_time = time_limit > 0 and time.perf_counter() - t_start > time_limit
            last = step == total or out_of_time
            if out_of_time and step < total:
                logger.info("step %d: time limit %.0f s reached; stopping", step, time_limit)
                writer.write({"step": step, "kind": "time_limit", "time_limit_s": time_limit})

            if step % config.log_every == 0 or last:
                now = time.perf_counter()
                rec = {k: float(np.mean([w[k] for w in window])) for k in window[0] if k != "obfuscator"}
                rec.update(step=step, kind="train", steps_per_s=len(window) / max(now - t_log, 1e-9),
                           obfuscators=collections.Counter(w["obfuscator"] for w in window))
                writer.write(rec)
                window.clear()
                t_log = now

            do_eval = step % config.eval_every == 0 or last
            do_sample = step % config.sample_every == 0 or last
            if do_eval or do_sample:
                val, rows = evaluator(state.params)
                if do_sample:
                    save_grid(workdir / "samples" / f"step_{step:07d}.png", rows)
                if do_eval:
                    last_val = val
                    writer.write({"step": step, "kind": "eval", **val})
                    value = val.get(config.best_metric)
                    if value is None:
                        raise KeyError(f"best_metric {config.best_metric!r} not among {sorted(val)}")
                    better = best_value is None or (value < best_value if config.best_mode == "min" else value > best_value)
                    if better and math.isfinite(value):
                        best_value = value
                        save_state(best_mgr, state, meta_now(), {"value": value})
                        export(workdir / "best.pfj", val)
                        writer.write({"step": step, "kind": "best", config.best_metric: value})
                    pbar.write(f"step {step}: " + ", ".join(
                        f"{k[4:]} {v:.4g}" for k, v in sorted(val.items()) if k.count("/") == 1))

            if step % config.checkpoint_every == 0 or last:
                save_state(periodic, state, meta_now())
    finally:
        pbar.close()
        if it is not None:
            it.close()
        periodic.wait_until_finished()
        best_mgr.wait_until_finished()

    model_id = export(workdir / "model.pfj", last_val)
    summary = {"step": int(state.step), "model_id": model_id, "val": last_val, "best_value": best_value,
               "rollbacks": rollbacks, "lr_scale": float(state.lr_scale)}
    periodic.close()
    best_mgr.close()
    return {"state": state, **summary}


# --------------------------------------------------------------------------- main


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples and model.pfj.")
    flags.DEFINE_enum("mode", None, list(losses.MODES), "Wrong-recovery mode (overrides config.mode).")
    config_flags.DEFINE_config_file(
        "config", str(Path(__file__).resolve().parent / "configs" / "paper112.py"),
        "Training config file (experiments/configs/*.py), overrides as --config.key=value.",
        lock_config=True)
    flags.mark_flags_as_required(["workdir"])


def main(argv):
    from absl import flags

    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {argv[1:]}")
    FLAGS = flags.FLAGS
    config = FLAGS.config
    if FLAGS.mode:
        config.mode = FLAGS.mode
    logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO
    logger.setLevel(logging.INFO)
    logger.info("JAX %s, devices: %s", jax.__version__, jax.local_devices())
    summary = train_and_evaluate(config, FLAGS.workdir)
    summary.pop("state")
    print(json.dumps(summary, indent=2, default=_json_default))


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)

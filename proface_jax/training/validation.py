"""Validation during training: a fixed batch of faces from the validation split, each through
every obfuscator's eval setting with fixed keys, scored as a user would see it (8-bit)."""
from __future__ import annotations

import collections
import logging

import jax
import numpy as np

from proface_jax import input_pipeline, metrics
from proface_jax.input_pipeline import augment
from proface_jax.training.mesh import shard_batch
from proface_jax.training.obfuscation import PreObfuscators, obfuscator_names, obfuscator_names_for
from proface_jax.training.step import make_eval_step, step_keys

logger = logging.getLogger("proface.train")


def open_split(config, split: str):
    """The split's source; the train split carries the configured augmentation (`config.augment`),
    which the batch iterator applies per batch (`input_pipeline.augment.Augmented`)."""
    src = input_pipeline.open_source(input_pipeline.resolve_data(config.data), split,
                                     data_dir=config.tfds_data_dir or None)
    aug = augment.from_config(config, int(config.seed)) if split == "train" else None
    return augment.Augmented(src, aug) if aug is not None else src


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
            self.batches.append((obf.name, y, shard_batch({"x": self.x, "y": y, "K": K, "K_wrong": K_wrong}, mesh)))
        self.step_fn = make_eval_step(config, mesh, lpips_params if config.loss.use_lpips else None)

    def __call__(self, params):
        """-> (flat metrics {'val/...'}, sample rows for the image grid)."""
        wrong_ref = "x" if self.config.mode == "randwr" else "y"
        per: dict[str, list[float]] = collections.defaultdict(list)
        out_metrics: dict[str, float] = {}
        rows = []
        for k, (name, y, batch) in enumerate(self.batches):
            out = jax.device_get(self.step_fn(params, batch))
            x = self.x  # host copies: on several processes the device batch is not all addressable
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

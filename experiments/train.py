"""Training PRO-Face S: the command line over `proface_jax.training`.

    python -m experiments.train --mode=obfswr --workdir W \
        [--config experiments/configs/paper112.py] [--config.some.key=value ...]

Data: ``--config.data=folder:PATH`` (default: the shared UTKFace folder), ``tfds:celeb_a`` or
``tfds:lfw`` (see `proface_jax.input_pipeline`). The step is `proface_jax.training.step`, the
loop `proface_jax.training.loop.train_and_evaluate`, the configs `proface_jax.training.config`.

Several processes (one per host, or per GPU): the same command on each, plus
``--config.distributed.coordinator=HOST:PORT --config.distributed.num_processes=N
--config.distributed.process_id=I``, or ``--config.distributed.auto=True`` where
`jax.distributed.initialize()` finds the cluster itself (SLURM, Cloud TPU); see the README.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import jax

from proface_jax.checkpoint import MODES
from proface_jax.training import distributed
from proface_jax.training.logs import json_default
from proface_jax.training.loop import logger, train_and_evaluate


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, samples and model.pfj.")
    flags.DEFINE_enum("mode", None, list(MODES), "Wrong-recovery mode (overrides config.mode).")
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
    started = distributed.initialize(config.distributed)  # before anything touches the devices
    logger.setLevel(logging.INFO if distributed.is_primary() else logging.WARNING)
    logger.info("JAX %s, devices: %s", jax.__version__, jax.local_devices())
    summary = train_and_evaluate(config, FLAGS.workdir)
    summary.pop("state")
    if distributed.is_primary():
        print(json.dumps(summary, indent=2, default=json_default))
    if started:
        jax.distributed.shutdown()


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)

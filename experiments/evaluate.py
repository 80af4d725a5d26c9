"""Evaluating PRO-Face S checkpoints: the command line over `proface_jax.evaluation`.

    python -m experiments.evaluate --checkpoint PATH [--checkpoint PATH2 ...] --data SOURCE \
        --out DIR [--split test|all] [--n 1000] [--size 112] [--seed 0] [--quick] [--no-lpips]

Writes DIR/results.json, DIR/report.md and the figures; the protocol and the sections are in
`proface_jax.evaluation.run`, the flags in `proface_jax.evaluation.options` (`--help`).
"""
import sys

from proface_jax.evaluation.run import main

if __name__ == "__main__":
    sys.exit(main())

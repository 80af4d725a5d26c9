"""Ablation of flow variants: the command line over `proface_jax.ablation`.

    python -m experiments.ablate --variants paper,additive,film,keyless --steps 600 --size 64 \
        --data folder:PATH --out DIR [--batch 4] [--jobs 2]

Writes DIR/results.json, DIR/report.md and DIR/curves.png; see `proface_jax.ablation`.
"""
from __future__ import annotations

import sys

from proface_jax.ablation import main

if __name__ == "__main__":
    sys.exit(main())

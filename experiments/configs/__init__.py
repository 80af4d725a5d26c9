"""Training config files for `python -m experiments.train --config=experiments/configs/NAME.py[:MODE]`:

    paper112    the paper's setting (default)
    authors256  the authors' public code
    fast        the schedule measured on this project's CPUs
    smoke       tiny: tests and plumbing checks

Each is `get_config(mode)` over `proface_jax.training.config`, which documents every field
(`base_config`) and holds the presets themselves, so notebooks get the same configs without a
checkout (`config.get(NAME, MODE)`).
"""

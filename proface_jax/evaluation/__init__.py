"""Evaluating PRO-Face S checkpoints as a library: one module per section (see `run`'s docstring).

    from proface_jax.evaluation import run
    run.main(["--checkpoint", "randwr.pfj", "--data", "folder:FACES", "--split", "all", "--out", "eval/"])

`python -m experiments.evaluate` is the same command from a checkout.
"""

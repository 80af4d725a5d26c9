"""Protect every face image of a folder: `python -m experiments.protect_folder IN_DIR OUT_DIR [options]`.

The same as `proface protect-folder` (`proface_jax.batch_protect`); N processes split the files
with --process-id I --num-processes N and, with the same --salt-seed, write the same bytes as one.
"""
import sys

from proface_jax import cli

if __name__ == "__main__":
    sys.exit(cli.main(["protect-folder", *sys.argv[1:]]))

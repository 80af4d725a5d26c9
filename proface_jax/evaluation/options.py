"""The evaluation's options: the command line of `python -m experiments.evaluate`, also callable
from a notebook (`run.main([...])`) without a checkout."""
from __future__ import annotations

import argparse

DEFAULT_OBFUSCATORS = ("blur", "pixelate", "median", "mask", "swap")

# Quick and full defaults of the size knobs (an explicit flag wins over either).
FULL = dict(n=1000, batch=16, security_n=100, neighbours=4, attack_train=1000, attack_steps=2000,
            attack_width=32, robust_n=None, donor_limit=500, keep=4, recognizer="on", impostors=300)
QUICK = dict(n=8, batch=8, security_n=4, neighbours=2, attack_train=32, attack_steps=20,
             attack_width=8, robust_n=8, donor_limit=16, keep=3, recognizer="off", impostors=16)

# Below this many scored faces, averages and re-identification rates are too noisy to compare.
FEW_FACES = 50

SPLITS = ("test", "validation", "all")
SKIPPABLE = ("security", "keyless", "robustness")


def donor_split(split: str) -> str:
    """Where swap donors (and the recognizer's extra impostors) come from: never the scored split."""
    return "train" if split == "validation" else "validation"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.evaluate",
                                 description="Evaluating PRO-Face S checkpoints: the paper's Tables I–III, security, "
                                             "attacks, robustness.")
    ap.add_argument("--checkpoint", action="append", required=True, help="a .pfj file (repeat for side by side)")
    ap.add_argument("--label", action="append", help="a label per checkpoint (default: file name and mode)")
    ap.add_argument("--data", required=True, help="folder:PATH or tfds:NAME")
    ap.add_argument("--split", choices=SPLITS, default="test",
                    help="faces to score: the source's test split (hash of the file name for folders; the default), "
                         "its validation split (for choosing between models: never choose on test faces; swap "
                         "donors and impostors then come from the train split) or all of them (your own folder "
                         "of faces)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, help="faces to score, a fixed-seed sample of the split (default 1000; quick 8)")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny samples and few attack steps")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--preset", default="paper112")
    ap.add_argument("--obfuscators", default=",".join(DEFAULT_OBFUSCATORS))
    ap.add_argument("--template-dir", help="precomputed obfuscations (adds 'template')")
    ap.add_argument("--donor-limit", type=int, help="swap donors from the validation split (train when scoring validation)")
    ap.add_argument("--no-lpips", action="store_true", help="skip LPIPS and the deep-feature matcher")
    ap.add_argument("--security-n", type=int, help="faces in the password/spoofing analysis")
    ap.add_argument("--neighbours", type=int, help="passwords 1 bit / 1 char away (each) per face")
    ap.add_argument("--fail-psnr", type=float, default=20.0, help="RandWR: an attempt fails below this PSNR to x")
    ap.add_argument("--attack-train", type=int, help="(x, ŷ) pairs of the train split for the keyless attacker")
    ap.add_argument("--attack-steps", type=int)
    ap.add_argument("--attack-batch", type=int, default=16)
    ap.add_argument("--attack-width", type=int)
    ap.add_argument("--attack-lr", type=float, default=1e-3)
    ap.add_argument("--robust-n", type=int, help="faces per obfuscator in the robustness table (default: all)")
    ap.add_argument("--keep", type=int, help="faces shown per figure")
    ap.add_argument("--jitter", action="store_true",
                    help="re-crop every scored face once with a seeded random scale (0.8-1.25), shift (±10 %%), "
                         "rotation (±10°) and colour change (`input_pipeline.augment`): faces unlike the training crops")
    ap.add_argument("--recognizer", choices=("on", "off"),
                    help="section 4b, the dlib face recognizer (needs the [privacy] extra; default on, quick off)")
    ap.add_argument("--impostors", type=int,
                    help="donor faces (validation split; train when scoring validation) added to the originals for the "
                         "recognizer's impostor pairs (default 300)")
    ap.add_argument("--skip", action="append", default=[], choices=SKIPPABLE,
                    help="leave a section out (repeatable); its report section says so")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (each section still prints its time)")
    args = ap.parse_args(argv)
    base = QUICK if args.quick else FULL
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.label and len(args.label) != len(args.checkpoint):
        ap.error("--label must be given once per --checkpoint")
    if args.size % 4 or args.size < 16:
        ap.error("--size must be a multiple of 4 and at least 16")
    return args

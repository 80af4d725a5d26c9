"""Evaluation section 6: Fig.-5- and Fig.-9-style grids, robustness and attacker pictures."""
from __future__ import annotations

import math

import numpy as np

from proface_jax import images, obfuscators
from proface_jax.evaluation.robustness import PERTURBATIONS
from proface_jax.evaluation.scoring import u8


def _font(size: int = 11):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def labelled_grid(rows: list[list[np.ndarray]], col_labels: list[str], row_labels: list[str] | None = None,
                  min_cell: int = 96, pad: int = 3) -> np.ndarray:
    """uint8 image: cells (upscaled by an integer factor to at least min_cell px) under text headers."""
    from PIL import Image, ImageDraw

    h, w = rows[0][0].shape[:2]
    f = max(1, math.ceil(min_cell / h))
    ch, cw = h * f, w * f
    font = _font()
    lines = max(lab.count("\n") + 1 for lab in col_labels)
    head = 13 * lines + 4
    left = 0 if not row_labels else 8 + 7 * max(len(r) for r in row_labels)
    ncol = max(len(r) for r in rows)
    W = left + ncol * (cw + pad) + pad
    H = head + len(rows) * (ch + pad) + pad
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, lab in enumerate(col_labels):
        draw.multiline_text((left + pad + j * (cw + pad) + 2, 2), lab, fill=(0, 0, 0), font=font, spacing=1)
    for i, row in enumerate(rows):
        y0 = head + pad + i * (ch + pad)
        if row_labels:
            draw.text((4, y0 + ch // 2 - 6), row_labels[i], fill=(0, 0, 0), font=font)
        for j, im in enumerate(row):
            big = np.repeat(np.repeat(np.asarray(im, np.uint8), f, axis=0), f, axis=1)
            canvas.paste(Image.fromarray(big), (left + pad + j * (cw + pad), y0))
    return np.asarray(canvas)


def run_section(ctx, bar) -> None:
    """Section 6: writes the four PNG grids into ctx.out and records their names in ctx.R['figures']."""
    names = {"fig5": "fig5_samples.png", "fig9": "fig9_security.png", "robustness": "robustness.png",
             "keyless": "keyless_attacker.png"}
    needs = {"fig9": "security", "robustness": "robustness", "keyless": "keyless"}  # a skipped section: no figure
    ctx.R["figures"] = {}
    for key, draw in (("fig5", _fig5), ("fig9", _fig9), ("robustness", _robustness), ("keyless", _keyless)):
        if needs.get(key) not in ctx.args.skip:
            draw(ctx)
            ctx.R["figures"][key] = names[key]
        bar.update()


def _fig5(ctx) -> None:
    keep_n = min(ctx.args.keep, ctx.n)
    rows, rlabels = [], []
    for r_i, name in enumerate(ctx.obf_names):
        j = r_i % keep_n
        row = [ctx.x_u8[j], u8(ctx.Y[name][j])]
        for m in ctx.models:
            s = ctx.SAMPLES[m.label, name]
            row += [s["stored"][j], s["recovered"][j], s["wrong"][j]]
        rows.append(row)
        rlabels.append(obfuscators.LABELS.get(name, name).split(",")[0])
    cols = ["original\nx", "pre-obf.\ny"]
    for m in ctx.models:
        cols += [f"{m.label[:18]}\nprotected", "\nrecovered", "\nwrong key"]
    images.save_png(ctx.out / "fig5_samples.png", labelled_grid(rows, cols, rlabels))


def _fig9(ctx) -> None:
    msec = min(ctx.args.security_n, ctx.n)
    rows = []
    for j in range(min(ctx.args.keep, msec)):
        row = None
        for m in ctx.models:
            P = ctx.SEC_PICS[m.label]
            if row is None:
                row = [P["x"][j], P["y"][j]]
            row += [P["stored"][j], P["right"][j], P["one_bit"][j], P["one_char"][j], P["other_password"][j],
                    P["spoof"][j], P["byproduct"][j], P["rec_by_right"][j], P["rec_by_other_password"][j]]
        rows.append(row)
    cols = ["x", "y"]
    for m in ctx.models:
        cols += [f"{m.label[:18]}\nprotected", "\nright pwd", "\n1 bit off", "\n1 char off", "\nother pwd",
                 "\nrecover(y)", "\nbyprod x^", "\nbyprod y (ok)", "\nbyprod (wrong)"]
    images.save_png(ctx.out / "fig9_security.png", labelled_grid(rows, cols))


def _robustness(ctx) -> None:
    rows, rlabels = [], []
    for m in ctx.models:
        row = [ctx.x_u8[0]]
        for kind in PERTURBATIONS:
            row += [ctx.ROB_PICS[m.label][kind][0], ctx.ROB_PICS[m.label][kind][1]]
        rows.append(row)
        rlabels.append(m.label[:22])
    cols = ["x"]
    for kind in PERTURBATIONS:
        cols += [f"{kind}\naltered", "\nrecovered"]
    images.save_png(ctx.out / "robustness.png", labelled_grid(rows, cols, rlabels))


def _keyless(ctx) -> None:
    rows = []
    for name in ctx.obf_names:
        for j in range(min(2, ctx.args.keep, ctx.n)):
            row = [ctx.x_u8[j], u8(ctx.Y[name][j]), ctx.ATT_PICS["_baseline"][name][j]]
            for m in ctx.models:
                row += [ctx.SAMPLES[m.label, name]["stored"][j], ctx.ATT_PICS[m.label][name][j],
                        ctx.SAMPLES[m.label, name]["wrong"][j]]
            rows.append(row)
    cols = ["x", "y", "y->x net"]
    for m in ctx.models:
        cols += [f"{m.label[:18]}\nprotected", "\nattacker", "\nrandom key"]
    images.save_png(ctx.out / "keyless_attacker.png", labelled_grid(rows, cols))

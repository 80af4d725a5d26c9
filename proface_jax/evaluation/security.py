"""Evaluation section 2: passwords one bit and one character away, unrelated passwords, spoofing
with y (maps from passwords with the `paper` KDF, spec §3)."""
from __future__ import annotations

import collections

import numpy as np

from proface_jax import images, keys
from proface_jax.evaluation import attacks
from proface_jax.evaluation.faces import key_of
from proface_jax.evaluation.model import Model
from proface_jax.evaluation.scoring import Scorer, average, chunks, pad_to, u8


ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def password_neighbours(rng: np.random.Generator, password: str, k: int):
    """k passwords one bit away (a flipped bit of the UTF-8 bytes) and k one character away."""
    raw = password.encode("utf-8")
    one_bit, one_char = [], []
    for _ in range(k):
        b = bytearray(raw)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        one_bit.append(bytes(b))
        i = int(rng.integers(len(password)))
        c = password[i]
        while c == password[i]:
            c = ALPHABET[int(rng.integers(len(ALPHABET)))]
        one_char.append(password[:i] + c + password[i + 1:])
    return one_bit, one_char


def fails(mode: str, psnr_x: np.ndarray, psnr_y: np.ndarray, threshold: float) -> np.ndarray:
    """Whether a recovery attempt failed (the privacy goal): RandWR: PSNR to x below the threshold;
    ObfsWR: closer to y than to x (PSNR to y above PSNR to x)."""
    if mode == "randwr":
        return psnr_x < threshold
    return psnr_y > psnr_x


def fail_rule(mode: str, threshold: float) -> str:
    return (f"PSNR(x̌′, x) < {threshold:g} dB" if mode == "randwr"
            else "closer to y than to x: PSNR(x̌′, y) > PSNR(x̌′, x)")


def security_pass(model: Model, x, ys, obf_of, scorer: Scorer, gallery, args) -> tuple[dict, dict]:
    """Passwords near the right one, unrelated passwords, and spoofing, on the first m faces."""
    m, size, k, batch, keep = len(ys), args.size, args.neighbours, args.batch, args.keep
    rng = np.random.default_rng([args.seed, 99])
    new_password = lambda: "".join(ALPHABET[int(i)] for i in rng.integers(0, len(ALPHABET), 12))
    passwords = [new_password() for _ in range(m)]
    variants: dict[str, list[list]] = {"right": [[p] for p in passwords], "one_bit": [], "one_char": [],
                                       "other_password": []}
    for p in passwords:
        ob, oc = password_neighbours(rng, p, k)
        variants["one_bit"].append(ob)
        variants["one_char"].append(oc)
        variants["other_password"].append([new_password() for _ in range(k)])
    smap = lambda pw: keys.secret_map(pw, size, size, kdf="paper").map.astype(np.int8)
    maps = {g: np.stack([np.stack([smap(pw) for pw in per_face]) for per_face in v], axis=1)  # [attempt, m, H, W]
            for g, v in variants.items()}
    xs = x[:m]
    stored_u8, by = model.protect_all(xs, ys, maps["right"][0], batch)
    stored = images.to_unit(stored_u8)
    spoof_src = images.to_unit(u8(ys))  # a spoofer feeds the 8-bit pre-obfuscated image
    attempts = [(g, j, maps[g][j], stored) for g in maps for j in range(maps[g].shape[0])]
    attempts.append(("spoof", 0, maps["right"][0], spoof_src))
    acc = {(g, j): collections.defaultdict(list) for g, j, _, _ in attempts}
    pics = {"x": u8(xs[:keep]), "y": u8(ys[:keep]), "stored": stored_u8[:keep], "byproduct": u8(by[:keep])}
    for s, e in chunks(m, batch):
        kk = e - s
        X = scorer.prep(pad_to(xs[s:e], batch), True)
        Yp = scorer.prep(pad_to(ys[s:e], batch), True)
        for g, j, mp, src in attempts:
            rec, rby = model.recover(pad_to(src[s:e], batch), key_of(pad_to(mp[s:e], batch)))
            A = scorer.prep(rec, True)
            a = acc[g, j]
            for metric, v in scorer.compare(A, X).items():
                a[f"{metric}_x"].append(v[:kk])
            a["psnr_y"].append(scorer.compare(A, Yp)["psnr"][:kk])
            for kind, f in scorer.features(A).items():
                a[kind].append(f[:kk])
            if s == 0 and j == 0:
                pics[g] = u8(np.asarray(rec)[:keep])
                if g in ("right", "other_password"):
                    pics[f"rec_by_{g}"] = u8(np.asarray(rby)[:keep])
    out = {}
    for g in list(maps) + ["spoof"]:
        js = sorted(j for gg, j in acc if gg == g)
        stack = lambda key: np.stack([np.concatenate(acc[g, j][key]) for j in js])  # [attempt, m]
        px, py, sx = stack("psnr_x"), stack("psnr_y"), stack("ssim_x")
        failed = fails(model.mode, px, py, args.fail_psnr)
        w = np.unravel_index(np.argmax(px if model.mode == "randwr" else px - py), px.shape)
        right = maps["right"][0]
        agree = np.mean([np.mean((maps[g][j] if g != "spoof" else right) == right) for j in js])
        d = {"attempts": int(px.size), "faces": m, "per_face": len(js),
             "fail_fraction": float(failed.mean()), "fail_rule": fail_rule(model.mode, args.fail_psnr),
             "psnr_x_mean": float(px.mean()), "psnr_x_max": float(px.max()),
             "ssim_x_mean": float(sx.mean()), "ssim_x_max": float(sx.max()),
             "psnr_y_mean": float(py.mean()), "map_bits_agreeing": float(agree),
             "worst": {"face": int(w[1]), "attempt": int(w[0]), "obfuscator": obf_of[int(w[1])],
                       "psnr_x": float(px[w]), "psnr_y": float(py[w]), "ssim_x": float(sx[w]),
                       "failed": bool(failed[w])}}
        if acc[g, js[0]]["lpips_x"]:
            lx = stack("lpips_x")
            d.update(lpips_x_mean=float(lx.mean()), lpips_x_min=float(lx.min()))
            d["worst"]["lpips_x"] = float(lx[w])
        faces_idx = np.tile(np.arange(m), len(js))
        d["reid"] = {kind: attacks.match(kind, np.concatenate([np.concatenate(acc[g, j][kind]) for j in js]),
                                         gallery[kind], faces_idx) for kind in scorer.kinds}
        out[g] = d
    return out, pics


def run_section(ctx, bar) -> None:
    """Section 2 for every checkpoint: ctx.R['security'] and the Fig.-9 pictures."""
    msec = min(ctx.args.security_n, ctx.n)
    obf_of = [ctx.obf_names[i % len(ctx.obf_names)] for i in range(msec)]
    ys = np.stack([ctx.Y[obf_of[i]][i] for i in range(msec)])
    by_keys = ("byproduct_protect", "byproduct_recover", "byproduct_wrong")
    for m in ctx.models:
        sec, pics = security_pass(m, ctx.x, ys, obf_of, ctx.scorer, ctx.gallery, ctx.args)
        ctx.SEC_PICS[m.label] = pics
        t8 = ctx.R["tables"][m.label]["8bit"]
        sec["byproducts"] = {b: t8["avg"][b] for b in by_keys}
        sec["byproducts"]["pre_obfuscated"] = average(list(ctx.y_vs_x.values()))
        sec["byproducts_per_obfuscator"] = {o: {b: t8[o][b] for b in by_keys} for o in ctx.obf_names}
        ctx.R["security"][m.label] = sec
        bar.update()
        bar.write(f"[evaluate]   {m.label}: 1-bit fail {sec['one_bit']['fail_fraction']:.1%}, 1-char fail "
                  f"{sec['one_char']['fail_fraction']:.1%}, spoof fail {sec['spoof']['fail_fraction']:.1%}")

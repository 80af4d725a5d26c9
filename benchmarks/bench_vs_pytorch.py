"""proface-jax vs the authors' network in PyTorch, side by side on this CPU.

    python benchmarks/bench_vs_pytorch.py [--batch 16] [--train-batch 12] [--size 112]
                                          [--runs 5] [--threads N] [--only protect,recover,train]
                                          [--config KEY=VALUE ...]

In one process, alternating run by run (JAX, PyTorch, JAX, ...), so that both see the
same machine load, it times

* `protect` and `recover` (the public API, jitted) at --batch;
* a training step at --train-batch: protect, recover with the right and with a wrong
  key, three L1 terms (|ŷ−y|, |x̌−x|, |ẍ−y|), gradient, Adam update — in JAX through
  the public `protect` / `recover` (or `recover_keys`, one batched inverse pass for
  both keys, `--train-recover pair`) and `jax.value_and_grad`, params and optimizer
  state donated; in PyTorch with `loss.backward()` and `torch.optim.Adam`.

The PyTorch network is an independent re-implementation of the authors' SACB flow
(NCHW, OIHW, e(s) = exp(clamp·2·(sigmoid(s) − ½)), the key concatenated last, Haar
DWT by slicing), the same formulation as tests/test_convert_torch.py; it is loaded
with the same weights and its outputs are checked against ours before timing.

Prints medians, the JAX/PyTorch ratio and GFLOP/s (2 FLOP per multiply-add of the
subnets' convs; a training step counts 3 passes × 3 (forward + two backward convs)).
`--config` sets FlowConfig fields (e.g. --config reversible_backprop=true).

On a shared, oversubscribed machine PyTorch's OpenMP threads lose more to waiting than
XLA's pool, which flatters the ratio; compare on one core as well:
    taskset -c 0 python benchmarks/bench_vs_pytorch.py --threads 1
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from proface_jax import flow, keys
from proface_jax.testing import random_params

SUBNET_MACS = 9 * (16 * 32 + 48 * 32 + 80 * 32 + 112 * 32 + 144 * 12)
PAIRS = (("omega", "p"), ("phi", "f"), ("rho", "r"), ("eta", "y"))


def flops(batch: int, size: int, num_blocks: int = 3) -> float:
    return 2.0 * SUBNET_MACS * (size // 2) ** 2 * 4 * num_blocks * batch


# ---------------------------------------------------------------- PyTorch (authors' formulation)

def torch_model(params, clamp: float):
    import torch
    import torch.nn.functional as F

    class Subnet(torch.nn.Module):
        def __init__(self, p):
            super().__init__()
            self.w = torch.nn.ParameterList()
            self.b = torch.nn.ParameterList()
            for j in range(1, 6):
                k = np.asarray(p[f"conv{j}"]["kernel"]).transpose(3, 2, 0, 1)  # HWIO -> OIHW
                self.w.append(torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(k))))
                self.b.append(torch.nn.Parameter(torch.from_numpy(np.asarray(p[f"conv{j}"]["bias"]).copy())))

        def forward(self, x):
            feats = x
            for j in range(4):
                h = F.leaky_relu(F.conv2d(feats, self.w[j], self.b[j], padding=1), 0.01)
                feats = torch.cat([feats, h], 1)
            return F.conv2d(feats, self.w[4], self.b[4], padding=1)

    def e(s):
        return torch.exp(clamp * 2 * (torch.sigmoid(s) - 0.5))

    class Block(torch.nn.Module):
        def __init__(self, bp):
            super().__init__()
            self.nets = torch.nn.ModuleDict({a: Subnet(bp[j]) for j, a in PAIRS})

        def forward(self, X, Y, K):
            XK = torch.cat([X, K], 1)
            Y = Y * e(self.nets["p"](XK)) + self.nets["f"](XK)
            YK = torch.cat([Y, K], 1)
            X = X * e(self.nets["r"](YK)) + self.nets["y"](YK)
            return X, Y

        def inverse(self, X, Y, K):
            YK = torch.cat([Y, K], 1)
            X = (X - self.nets["y"](YK)) / e(self.nets["r"](YK))
            XK = torch.cat([X, K], 1)
            Y = (Y - self.nets["f"](XK)) / e(self.nets["p"](XK))
            return X, Y

    def dwt(x):  # NCHW, band-major [LL(c), HL(c), LH(c), HH(c)]
        a, b = x[:, :, 0::2, 0::2] / 2, x[:, :, 1::2, 0::2] / 2
        c, d = x[:, :, 0::2, 1::2] / 2, x[:, :, 1::2, 1::2] / 2
        return torch.cat([a + b + c + d, -a - b + c + d, -a + b - c + d, a - b - c + d], 1)

    def iwt(z):
        ll, hl, lh, hh = torch.chunk(z, 4, 1)
        n, ch, h, w = ll.shape
        out = z.new_empty(n, ch, 2 * h, 2 * w)
        out[:, :, 0::2, 0::2] = (ll - hl - lh + hh) / 2
        out[:, :, 1::2, 0::2] = (ll - hl + lh - hh) / 2
        out[:, :, 0::2, 1::2] = (ll + hl - lh - hh) / 2
        out[:, :, 1::2, 1::2] = (ll + hl + lh + hh) / 2
        return out

    class Flow(torch.nn.Module):
        def __init__(self):
            super().__init__()
            names = flow.block_names(params)
            self.blocks = torch.nn.ModuleList([Block(params[n]) for n in names])

        def protect(self, x, y, K):
            X, Y = dwt(x), dwt(y)
            for blk in self.blocks:
                X, Y = blk(X, Y, K)
            return iwt(Y), iwt(X)

        def recover(self, protected, K):
            Y = dwt(protected)
            X = torch.cat([K] * 3, 1).expand(Y.shape[0], -1, -1, -1)
            for blk in reversed(self.blocks):
                X, Y = blk.inverse(X, Y, K)
            return iwt(X), iwt(Y)

    return Flow()


def nchw(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- JAX

def l1(a, b):
    return jnp.mean(jnp.abs(a - b))


def make_jax_train_step(cfg, tx, recover_mode: str):
    def loss_fn(params, x, y, K, K_wrong):
        protected, _ = flow.protect(params, x, y, K, cfg)
        if recover_mode == "pair":
            (recovered, _), (wrong, _) = flow.recover_keys(params, protected, (K, K_wrong), cfg)
        else:
            recovered, _ = flow.recover(params, protected, K, cfg)
            wrong, _ = flow.recover(params, protected, K_wrong, cfg)
        return l1(protected, y) + l1(recovered, x) + l1(wrong, y)

    def step(params, opt_state, x, y, K, K_wrong):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, K, K_wrong)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def parse_config(items):
    out = {}
    for it in items or ():
        k, v = it.split("=", 1)
        low = v.lower()
        out[k] = True if low == "true" else False if low == "false" else (
            int(v) if v.lstrip("-").isdigit() else (float(v) if low.replace(".", "", 1).isdigit() else v))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--train-batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", default="protect,recover,train")
    ap.add_argument("--train-recover", choices=("pair", "separate"), default="separate")
    ap.add_argument("--config", nargs="*", default=[])
    args = ap.parse_args(argv)
    only = set(args.only.split(","))

    import torch

    torch.set_num_threads(args.threads)
    cfg = flow.FlowConfig(**parse_config(args.config))
    params = random_params(jax.random.key(0), cfg, 1.0, 0.2, 0.5)
    tnet = torch_model(params, cfg.clamp)

    k = jax.random.split(jax.random.key(1), 4)
    shape = (args.batch, args.size, args.size, 3)
    x = jax.random.uniform(k[0], shape, minval=-1, maxval=1)
    y = jax.random.uniform(k[1], shape, minval=-1, maxval=1)
    K = keys.random_key(k[2], args.batch, args.size, args.size)
    K_wrong = keys.random_key(k[3], args.batch, args.size, args.size)
    protect = jax.jit(flow.protect, static_argnums=4)
    recover = jax.jit(flow.recover, static_argnums=3)
    protected, _ = protect(params, x, y, K, cfg)
    tx_, ty_, tK_, tKw_ = nchw(x), nchw(y), nchw(K), nchw(K_wrong)

    # the two implementations agree (same weights, same inputs)
    with torch.no_grad():
        tp, _ = tnet.protect(tx_, ty_, tK_)
        tr, _ = tnet.recover(nchw(protected), tK_)
    rec, _ = recover(params, protected, K, cfg)
    dp = float(np.abs(nhwc(tp) - np.asarray(protected)).max())
    dr = float(np.abs(nhwc(tr) - np.asarray(rec)).max())

    gflop = flops(args.batch, args.size, cfg.num_blocks) / 1e9
    tb = args.train_batch
    train_gflop = 9 * flops(tb, args.size, cfg.num_blocks) / 1e9
    print(f"device: {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores); "
          f"jax {jax.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"FlowConfig: {cfg}")
    print(f"JAX vs PyTorch on the same weights: protect max |Δ| {dp:.2e}, recover max |Δ| {dr:.2e}")
    print(f"protect/recover: batch {args.batch} @{args.size}, {gflop:.1f} GFLOP per call; training step: batch {tb}, "
          f"{train_gflop:.0f} GFLOP (3 passes × 3), recoveries '{args.train_recover}'; median of {args.runs}, alternating")

    jobs = []
    if "protect" in only:
        def t_protect():
            with torch.no_grad():
                tnet.protect(tx_, ty_, tK_)
        jobs.append(("protect", gflop, lambda: jax.block_until_ready(protect(params, x, y, K, cfg)), t_protect))
    if "recover" in only:
        tprot = nchw(protected)

        def t_recover():
            with torch.no_grad():
                tnet.recover(tprot, tK_)
        jobs.append(("recover", gflop, lambda: jax.block_until_ready(recover(params, protected, K, cfg)), t_recover))
    if "train" in only:
        tx = optax.adam(1e-4)
        state = {"p": jax.tree_util.tree_map(jnp.array, params)}
        state["o"] = tx.init(state["p"])
        step = make_jax_train_step(cfg, tx, args.train_recover)
        bx, by, bK, bKw = x[:tb], y[:tb], K[:tb], K_wrong[:tb]

        def j_train():
            state["p"], state["o"], loss = step(state["p"], state["o"], bx, by, bK, bKw)
            jax.block_until_ready(loss)

        opt = torch.optim.Adam(tnet.parameters(), lr=1e-4)
        tbx, tby, tbK, tbKw = tx_[:tb], ty_[:tb], tK_[:tb], tKw_[:tb]

        def t_train():
            opt.zero_grad(set_to_none=True)
            p, _ = tnet.protect(tbx, tby, tbK)
            r, _ = tnet.recover(p, tbK)
            w, _ = tnet.recover(p, tbKw)
            loss = (p - tby).abs().mean() + (r - tbx).abs().mean() + (w - tby).abs().mean()
            loss.backward()
            opt.step()
        jobs.append(("train step", train_gflop, j_train, t_train))

    print(f"{'work':<11} {'JAX s':>7} {'torch s':>8} {'ratio':>6} {'JAX GFLOP/s':>12} {'torch GFLOP/s':>14}")
    for name, gf, jf, tf in jobs:
        jf(), tf()  # compile / warm up
        jt, tt = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter(); jf(); jt.append(time.perf_counter() - t0)  # noqa: E702
            t0 = time.perf_counter(); tf(); tt.append(time.perf_counter() - t0)  # noqa: E702
        mj, mt = statistics.median(jt), statistics.median(tt)
        print(f"{name:<11} {mj:7.3f} {mt:8.3f} {mj / mt:5.2f}× {gf / mj:12.0f} {gf / mt:14.0f}", flush=True)


if __name__ == "__main__":
    main()

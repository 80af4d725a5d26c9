"""One 3x3 conv layer (56x56, Cout 32): forward vs XLA input-grad and weight-grad, and the
weight gradient written as dots (9 shifted dots, im2col dot, one dot against 9 shifted g).

    python benchmarks/bench_conv_wgrad.py [batch=12] [Cin=144] [runs=5]

Measured for issue 22 (loaded 2-core CPU), Cin=144: input-grad 0.79x, weight-grad 1.64-2.11x
of the forward; dot formulations 3.0-7.8x. XLA:CPU weight-gradient convs are what make
the backward pass ~2.9x the forward instead of ~2x.
"""
import sys, time, statistics
import jax, jax.numpy as jnp
from jax import lax
HI = lax.Precision.HIGHEST; DN = ("NHWC", "HWIO", "NHWC")
B, S, Ci, Co = int(sys.argv[1]), 56, int(sys.argv[2]), 32
x = jax.random.normal(jax.random.key(0), (B, S, S, Ci)); w = jax.random.normal(jax.random.key(1), (3, 3, Ci, Co)) * 0.05
g = jax.random.normal(jax.random.key(2), (B, S, S, Co))
conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN, precision=HI)
fwd = jax.jit(conv)
xla_din = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
xla_dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
def dw9(x, w, g):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    rows = []
    for kh in range(3):
        for kw in range(3):
            xs = xp[:, kh:kh + S, kw:kw + S, :]
            rows.append(lax.dot_general(xs, g, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=HI))
    return jnp.stack(rows).reshape(3, 3, Ci, Co)
def dw9b(x, w, g):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    g2 = g.reshape(-1, Co)
    rows = [lax.dot_general(xp[:, kh:kh + S, kw:kw + S, :].reshape(-1, Ci), g2, (((0,), (0,)), ((), ())), precision=HI)
            for kh in range(3) for kw in range(3)]
    return jnp.stack(rows).reshape(3, 3, Ci, Co)
def dw9c(x, w, g):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    g2 = g.reshape(-1, Co).T
    rows = [jnp.matmul(g2, xp[:, kh:kh + S, kw:kw + S, :].reshape(-1, Ci), precision=HI)
            for kh in range(3) for kw in range(3)]
    return jnp.stack(rows).reshape(3, 3, Co, Ci).transpose(0, 1, 3, 2)
def dw_im2col(x, w, g):
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.stack([xp[:, kh:kh + S, kw:kw + S, :] for kh in range(3) for kw in range(3)], 3)  # B,S,S,9,Ci
    return lax.dot_general(cols, g, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=HI).reshape(3, 3, Ci, Co)
def dw_T(x, w, g):
    # contraction as one matmul over shifted g instead: (B,S,S,Ci)^T x (B,S,S,9Co) with g shifted
    gp = jnp.pad(g, ((0, 0), (1, 1), (1, 1), (0, 0)))
    gs = jnp.concatenate([gp[:, 2 - kh:2 - kh + S, 2 - kw:2 - kw + S, :] for kh in range(3) for kw in range(3)], -1)
    r = lax.dot_general(x, gs, (((0, 1, 2), (0, 1, 2)), ((), ())), precision=HI)  # Ci, 9Co
    return r.reshape(Ci, 3, 3, Co).transpose(1, 2, 0, 3)
fns = dict(fwd=lambda: fwd(x, w), xla_din=lambda: xla_din(x, w, g), xla_dw=lambda: xla_dw(x, w, g),
           dw9=jax.jit(dw9), dw9b=jax.jit(dw9b), dw9c=jax.jit(dw9c), im2col=jax.jit(dw_im2col), dwT=jax.jit(dw_T))
ref = xla_dw(x, w, g)
for n in ("dw9", "dw9b", "dw9c", "im2col", "dwT"):
    print(n, float(jnp.abs(fns[n](x, w, g) - ref).max() / jnp.abs(ref).max()))
    f = fns[n]; fns[n] = (lambda f: lambda: f(x, w, g))(f)
for f in fns.values(): jax.block_until_ready(f())
ts = {n: [] for n in fns}
for r in range(int(sys.argv[3])):
    for n, f in fns.items():
        t = time.perf_counter(); jax.block_until_ready(f()); ts[n].append(time.perf_counter() - t)
b = statistics.median(ts["fwd"])
print(f"B={B} Ci={Ci}", {n: f"{statistics.median(v)*1e3:.0f}ms {statistics.median(v)/b:.2f}x" for n, v in ts.items()})

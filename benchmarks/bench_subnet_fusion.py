"""Ways to run the two subnets that read one input (omega with phi), fwd and fwd+bwd, alternating.

    python benchmarks/bench_subnet_fusion.py [batch=12] [runs=5]

separate (today: lax.conv per subnet) vs vmap over stacked params and explicit
feature_group_count=2 (grouped convs), and a block-diagonal dense kernel (1.8x FLOPs).
Measured for issue 22 on the 2-core CPU (loaded): vmapped 4.25x / 18.8x, grouped 4.11x /
16.5x, blockdiag 1.32x / 1.76x of separate: none pays on XLA:CPU.
"""
import time, statistics, sys
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from proface_jax.subnet import DenseSubnet
from proface_jax.testing import random_params
from proface_jax import flow
HI = lax.Precision.HIGHEST
DN = ("NHWC","HWIO","NHWC")
cfg = flow.FlowConfig()
params = random_params(jax.random.key(0), cfg, 1.0, 0.2, 0.5)
bp = params["block_0"]
B = int(sys.argv[1]) if len(sys.argv) > 1 else 12
x = jax.random.normal(jax.random.key(1), (B, 56, 56, 16))
net = DenseSubnet(out_channels=12)
def conv(h, k, b, groups=1):
    return lax.conv_general_dilated(h, k, (1,1), ((1,1),(1,1)), dimension_numbers=DN, feature_group_count=groups, precision=HI) + b
def sub(p, x):
    f = x
    for j in range(1, 5):
        h = jax.nn.leaky_relu(conv(f, p[f"conv{j}"]["kernel"], p[f"conv{j}"]["bias"]), 0.01)
        f = jnp.concatenate([f, h], -1)
    return conv(f, p["conv5"]["kernel"], p["conv5"]["bias"])
def separate(bp, x):
    return sub(bp["omega"], x), sub(bp["phi"], x)
def vmapped(bp, x):
    st = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), bp["omega"], bp["phi"])
    o = jax.vmap(sub, in_axes=(0, None))(st, x)
    return o[0], o[1]
def grouped(bp, x):
    # conv1 joint; later convs grouped on [featsA, featsB]
    A, Bp = bp["omega"], bp["phi"]
    k1 = jnp.concatenate([A["conv1"]["kernel"], Bp["conv1"]["kernel"]], -1)
    b1 = jnp.concatenate([A["conv1"]["bias"], Bp["conv1"]["bias"]])
    h = jax.nn.leaky_relu(conv(x, k1, b1), 0.01)
    fa, fb = jnp.concatenate([x, h[..., :32]], -1), jnp.concatenate([x, h[..., 32:]], -1)
    for j in range(2, 6):
        k = jnp.concatenate([A[f"conv{j}"]["kernel"], Bp[f"conv{j}"]["kernel"]], -1)
        b = jnp.concatenate([A[f"conv{j}"]["bias"], Bp[f"conv{j}"]["bias"]])
        o = conv(jnp.concatenate([fa, fb], -1), k, b, groups=2)
        if j == 5:
            return o[..., :12], o[..., 12:]
        o = jax.nn.leaky_relu(o, 0.01)
        fa, fb = jnp.concatenate([fa, o[..., :32]], -1), jnp.concatenate([fb, o[..., 32:]], -1)
def blockdiag(bp, x):
    # shared input part joint (x), hidden parts via block-diagonal dense kernel
    A, Bp = bp["omega"], bp["phi"]
    hs = []  # joint hidden [hA_j, hB_j] 64 ch each
    for j in range(1, 6):
        ka, kb = A[f"conv{j}"]["kernel"], Bp[f"conv{j}"]["kernel"]
        co = ka.shape[-1]
        # input channels: x (16) then for each earlier layer [hA(32), hB(32)]
        parts = [jnp.concatenate([ka[:, :, :16], kb[:, :, :16]], -1)]
        for i in range(len(hs)):
            sa = ka[:, :, 16 + 32*i:16 + 32*(i+1)]; sb = kb[:, :, 16 + 32*i:16 + 32*(i+1)]
            z = jnp.zeros_like(sa)
            parts.append(jnp.concatenate([jnp.concatenate([sa, z], -1), jnp.concatenate([z, sb], -1)], 2))
        k = jnp.concatenate(parts, 2)
        b = jnp.concatenate([A[f"conv{j}"]["bias"], Bp[f"conv{j}"]["bias"]])
        f = jnp.concatenate([x] + hs, -1)
        o = conv(f, k, b)
        if j == 5:
            return o[..., :12], o[..., 12:]
        hs.append(jax.nn.leaky_relu(o, 0.01))
fns = dict(separate=separate, vmapped=vmapped, grouped=grouped, blockdiag=blockdiag)
ref = separate(bp, x)
for n, f in fns.items():
    o = jax.jit(f)(bp, x)
    print(n, max(float(jnp.abs(a-b).max()) for a,b in zip(o, ref)))
def loss(f):
    return lambda bp, x: sum(jnp.sum(jnp.sin(o)) for o in f(bp, x))
fw = {n: jax.jit(f) for n, f in fns.items()}
bw = {n: jax.jit(jax.grad(loss(f), argnums=(0, 1))) for n, f in fns.items()}
for d in (fw, bw):
    for f in d.values(): jax.block_until_ready(f(bp, x))
for label, d in (("fwd", fw), ("fwd+bwd", bw)):
    ts = {n: [] for n in d}
    for r in range(int(sys.argv[2]) if len(sys.argv) > 2 else 5):
        for n, f in d.items():
            t = time.perf_counter(); jax.block_until_ready(f(bp, x)); ts[n].append(time.perf_counter() - t)
    base = statistics.median(ts["separate"])
    print(label, {n: f"{statistics.median(v):.3f}s {statistics.median(v)/base:.2f}x" for n, v in ts.items()})

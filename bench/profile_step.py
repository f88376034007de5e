#!/usr/bin/env python
"""Where one training step's time goes: each pass of ``take_batch`` +
``Network.cost_and_grads`` + ``optim.SGD.step`` timed on its own, against the
GEMMs of the step timed alone.

Every pass calls the package's own functions (through their modules, as the
training loop does) on arrays of the real shapes, so a change in
``handbackprop/nn`` shows here. Times are medians over many repeats, in µs;
the "step" line times the whole step the way ``train()`` runs it, and the
"sum" line adds the passes (the difference is Python overhead and cache
effects between passes).

    python bench/profile_step.py                       # float32 and float64, 1 thread
    python bench/profile_step.py --dtypes float32 --models m=500 --markdown
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from handbackprop.nn import layers, optim, train  # noqa: E402
from handbackprop.nn.network import build_network  # noqa: E402

try:  # absent before the allocator change: lets this script profile older checkouts too
    from handbackprop.nn import memory as nn_memory  # noqa: E402
except ImportError:
    nn_memory = None

D, K, BATCH, LAM, ETA = 3072, 10, 100, 1e-3, 1e-3
MODELS = {"linear": [], "m=50": [50], "m=500": [500]}


def median_us(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def profile(hidden, dtype, repeats: int, n_rows: int = 10_000, seed: int = 0) -> dict[str, float]:
    """{pass name: median µs} for one step of the model `hidden` in `dtype`."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, D), dtype=np.float32).astype(dtype)
    y = rng.integers(0, K, n_rows)
    idx = rng.permutation(n_rows)[:BATCH]
    net = build_network(D, hidden, dtype=dtype, seed=seed)
    opt = optim.SGD(net.params)
    L = net.n_layers
    xb, yb = train.take_batch(X, y, idx, net.dtype)
    scores, caches = net.forward(xb)
    _, dscores, _ = layers.softmax_cross_entropy(scores, yb)
    grads = net.backward(dscores, caches, LAM)

    out: dict[str, float] = {}
    out["gather (take_batch)"] = median_us(lambda: train.take_batch(X, y, idx, net.dtype), repeats)
    # Forward, layer by layer, on the activations the real forward produced.
    for i in range(1, L + 1):
        x_in = caches[i - 1][0][0]
        W, b = net.params[f"W{i}"], net.params[f"b{i}"]
        out[f"affine_forward {i}"] = median_us(lambda: layers.affine_forward(x_in, W, b), repeats)
        if i < L:
            pre = x_in @ W + b
            out[f"relu_forward {i}"] = median_us(lambda: layers.relu_forward(pre), repeats)
    out["softmax_cross_entropy"] = median_us(lambda: layers.softmax_cross_entropy(scores, yb), repeats)
    weights = [net.params[k] for k in net.weight_names()]
    out["l2_penalty"] = median_us(lambda: layers.l2_penalty(weights, LAM), repeats)
    # Backward: the upstream gradient each layer sees, recomputed once.
    dh = dscores
    for i in range(L, 0, -1):
        affine_cache, relu_cache, _ = caches[i - 1]
        if i < L:
            d_up = dh
            out[f"relu_backward {i}"] = median_us(lambda: layers.relu_backward(d_up, relu_cache), repeats)
            dh = layers.relu_backward(dh, relu_cache)
        d_aff = dh
        out[f"affine_backward {i}"] = median_us(
            lambda: layers.affine_backward(d_aff, affine_cache, need_dx=i > 1), repeats)
        W = net.params[f"W{i}"]
        dW = grads[f"W{i}"].copy()
        out[f"dW += l2_grad {i}"] = median_us(lambda: dW.__iadd__(layers.l2_grad(W, LAM)), repeats)
        dh, _, _ = layers.affine_backward(d_aff, affine_cache, need_dx=i > 1)
    # The update on a scratch copy so repeats do not walk the weights away.
    scratch = {k: v.copy() for k, v in net.params.items()}
    out["SGD.step"] = median_us(lambda: opt.step(scratch, grads, ETA), repeats)

    def step():
        xb_, yb_ = train.take_batch(X, y, idx, net.dtype)
        _, _, g = net.cost_and_grads(xb_, yb_, LAM)
        opt.step(scratch, g, ETA)  # scratch: same work, weights the profile keeps fixed

    out["sum of passes"] = sum(out.values())
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out["step (as train() runs it)"] = median_us(step, repeats)
    # Not µs: minor page faults per step (glibc returning and re-mapping freed temporaries).
    out["minor page faults / step"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / (repeats + 1)
    out["GEMMs alone"] = gemm_us(net, xb, caches, dscores, repeats)
    return out


def gemm_us(net, xb, caches, dscores, repeats: int) -> float:
    """The step's GEMMs only (x@W per layer, dW per layer, dx for layers > 1), NumPy matmul."""
    L = net.n_layers
    acts = [caches[i][0][0] for i in range(L)]
    douts = [np.ones((BATCH, net.sizes[i + 1]), net.dtype) for i in range(L)]

    def run():
        for i in range(L):
            W = net.params[f"W{i + 1}"]
            acts[i] @ W
            acts[i].T @ douts[i]
            if i > 0:
                douts[i] @ W.T

    return median_us(run, repeats)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r} (choose from {', '.join(MODELS)})")
    dtypes = [d for d in args.dtypes.split(",") if d]
    print(f"# profile_step: {args.threads} thread(s), batch {BATCH}, median of {args.repeats}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    cols, table = [], {}
    reuse = getattr(nn_memory, "reuse_freed_memory", None) if nn_memory else None
    print(f"# allocator policy of train(): {'applied' if reuse and reuse() else 'absent (glibc default)'}")
    with threadpool_limits(limits=args.threads):
        for dt in dtypes:
            for m in models:
                col = f"{m} {dt}"
                cols.append(col)
                table[col] = profile(MODELS[m], dt, args.repeats)
    longest = max(cols, key=lambda c: len(table[c]))  # deepest model: its pass order
    names = list(dict.fromkeys([*table[longest], *(k for c in cols for k in table[c])]))
    if args.markdown:
        print("| pass (µs) | " + " | ".join(cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for n in names:
            print(f"| {n} | " + " | ".join(f"{table[c][n]:,.0f}" if n in table[c] else "" for c in cols) + " |")
    else:
        w = max(map(len, names))
        print(" " * w + "  " + "  ".join(f"{c:>15s}" for c in cols))
        for n in names:
            print(f"{n:<{w}s}  " + "  ".join(f"{table[c][n]:>15,.0f}" if n in table[c] else " " * 15
                                             for c in cols))
    print(f"# load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

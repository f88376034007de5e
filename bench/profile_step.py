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
import copy
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

from handbackprop.nn import augment, layers, optim, train  # noqa: E402

try:  # absent on checkouts before batch norm
    from handbackprop.nn import batchnorm as nn_batchnorm  # noqa: E402
except ImportError:
    nn_batchnorm = None
from handbackprop.nn.network import build_network  # noqa: E402

try:  # absent before the allocator change: lets this script profile older checkouts too
    from handbackprop.nn import memory as nn_memory  # noqa: E402
except ImportError:
    nn_memory = None

D, K, BATCH, LAM, ETA = 3072, 10, 100, 1e-3, 1e-3
MODELS = {"linear": [], "m=50": [50], "m=500": [500], "3-layer BN": [50, 50]}
BATCH_NORM = {"3-layer BN"}  # isolated passes (`profile`) cover the plain stacks only


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
        W = net.params[f"W{i}"]
        out[f"l2_grad {i}"] = median_us(lambda: layers.l2_grad(W, LAM), repeats)
        acc = layers.l2_grad(W, LAM)  # dW accumulates onto the L2 term, as Network.backward does
        out[f"affine_backward {i}"] = median_us(
            lambda: layers.affine_backward(d_aff, affine_cache, need_dx=i > 1, acc=(acc, 1.0, 1.0)),
            repeats)
        W_scratch = W.copy()  # the SGD step folded into the GEMM, as train_step runs it
        out[f"affine_backward {i}, fused SGD step"] = median_us(
            lambda: layers.affine_backward(d_aff, affine_cache, need_dx=i > 1,
                                           acc=(W_scratch, -ETA, 1.0 - 2 * LAM * ETA)), repeats)
        dh, _, _ = layers.affine_backward(d_aff, affine_cache, need_dx=i > 1)
    # The update on a scratch copy so repeats do not walk the weights away.
    scratch = {k: v.copy() for k, v in net.params.items()}
    out["SGD.step"] = median_us(lambda: opt.step(scratch, grads, ETA), repeats)

    scratch_net = copy.deepcopy(net)  # the whole step updates its weights: not the profiled ones
    scratch_opt = optim.SGD(scratch_net.params)

    def step():
        xb_, yb_ = train.take_batch(X, y, idx, net.dtype)
        train.train_step(scratch_net, scratch_opt, xb_, yb_, LAM, ETA)

    # the unfused passes (gradient, then update); the fused rows show what train_step runs instead
    out["sum of passes"] = sum(v for k, v in out.items() if "fused" not in k)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    out["step (as train() runs it)"] = median_us(step, repeats)
    # Not µs: minor page faults per step (glibc returning and re-mapping freed temporaries).
    out["minor page faults / step"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / (repeats + 1)
    # The bonus model's step: Nesterov (no fused weight step: the velocity needs the gradient)
    # and flip/shift augmentation of every batch.
    aug_rng = np.random.default_rng(seed + 1)
    out["augment_batch (flip, shift 3)"] = median_us(lambda: augment.augment_batch(aug_rng, xb, True, 3),
                                                     repeats)
    nes_net = copy.deepcopy(net)
    nes_opt = optim.make_optimizer("nesterov", nes_net.params)

    def nesterov_step(augmenting):
        xb_, yb_ = train.take_batch(X, y, idx, net.dtype)
        if augmenting:
            xb_ = augment.augment_batch(aug_rng, xb_, True, 3)
        train.train_step(nes_net, nes_opt, xb_, yb_, LAM, ETA)

    out["step, Nesterov"] = median_us(lambda: nesterov_step(False), repeats)
    out["step, Nesterov + flip/shift (the bonus step)"] = median_us(lambda: nesterov_step(True), repeats)
    out["GEMMs alone"] = gemm_us(net, xb, caches, dscores, repeats)
    return out


# Module functions the step calls (through their modules, as the house rule and the
# planted-bug catalogue require): each is wrapped to time it inside a real step.
IN_STEP_FUNCS = {
    "layers": ["affine_forward", "affine_backward", "relu_forward", "relu_backward",
               "softmax_cross_entropy", "l2_penalty", "l2_grad"],
    "batchnorm": ["linear_forward", "batchnorm_forward", "batchnorm_backward", "update_running_stats"],
    "train": ["take_batch"],
}


def profile_in_step(hidden, dtype, batch_norm: bool, X, y, steps: int) -> dict[str, float]:
    """{pass: median µs} of each pass timed *inside* real steps, in the order the step runs
    them (thread CPU time; the k-th call of a function in a step is its own pass).

    Unlike `profile`, nothing is hot from a previous repeat: a softmax or a batch-norm
    pass after a 3072-wide GEMM runs with cold caches, as in training (measured 2-5x
    its isolated time). Works on any checkout whose step calls these module functions.
    """
    modules = {"layers": layers, "batchnorm": nn_batchnorm, "train": train}
    clock = time.thread_time
    net = build_network(D, hidden, dtype=dtype, seed=0, batch_norm=batch_norm)
    opt = optim.SGD(net.params)
    times: dict[str, list[float]] = {}
    calls: dict[str, int] = {}
    originals = []

    def wrap(name, fn):
        def timed(*args, **kwargs):
            t0 = clock()
            result = fn(*args, **kwargs)
            calls[name] = calls.get(name, 0) + 1
            key = f"{name} #{calls[name]}"
            times.setdefault(key, []).append(clock() - t0)
            return result
        return timed

    for mod_name, names in IN_STEP_FUNCS.items():
        mod = modules[mod_name]
        for name in names:
            if mod is not None and hasattr(mod, name):
                originals.append((mod, name, getattr(mod, name)))
                setattr(mod, name, wrap(name, getattr(mod, name)))
    originals.append((optim.SGD, "step", optim.SGD.step))
    sgd_step = optim.SGD.step
    optim.SGD.step = lambda self, params, grads, eta: wrap("SGD.step", sgd_step)(self, params, grads, eta)
    rng = np.random.default_rng(1)
    try:
        whole = []
        for s in range(steps + 5):
            idx = rng.integers(0, len(X), BATCH)
            calls.clear()
            t0 = clock()
            xb, yb = train.take_batch(X, y, idx, net.dtype)
            train.train_step(net, opt, xb, yb, LAM, ETA)
            whole.append(clock() - t0)
            if s == 4:  # warm-up steps out
                times.clear()
                whole.clear()
    finally:
        for mod, name, fn in originals:
            setattr(mod, name, fn)
    out = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    out["(Python glue: step - passes)"] = statistics.median(whole) * 1e6 - sum(out.values())
    out["step (CPU time)"] = statistics.median(whole) * 1e6
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


def print_table(cols, table, markdown: bool) -> None:
    longest = max(cols, key=lambda c: len(table[c]))  # deepest model: its pass order
    names = list(dict.fromkeys([*table[longest], *(k for c in cols for k in table[c])]))
    if markdown:
        print("| pass (µs) | " + " | ".join(cols) + " |")
        print("|---|" + "---:|" * len(cols))
        for n in names:
            print(f"| {n} | " + " | ".join(f"{table[c][n]:,.0f}" if n in table[c] else "" for c in cols) + " |")
    else:
        w = max(map(len, names))
        print(" " * w + "  " + "  ".join(f"{c:>18s}" for c in cols))
        for n in names:
            print(f"{n:<{w}s}  " + "  ".join(f"{table[c][n]:>18,.0f}" if n in table[c] else " " * 18
                                             for c in cols))


def load_rows(data: str | None, n: int = 10_000):
    """(X float32 (n, D), y, description): the preprocessed split if present, else N(0, 1) rows."""
    if data and (Path(data) / "X_train.npy").is_file():
        X = np.array(np.load(Path(data) / "X_train.npy", mmap_mode="r")[:n], dtype=np.float32)
        y = np.array(np.load(Path(data) / "y_train.npy", mmap_mode="r")[:n], dtype=np.int64)
        return X, y, f"real images from {data} ({len(X):,} rows)"
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, D), dtype=np.float32), rng.integers(0, K, n),
            f"synthetic N(0,1) rows ({n:,})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--in-step", action="store_true",
                   help="time each pass inside real steps, in order (cold caches as in training; "
                        "covers the batch-norm net) instead of each pass on its own")
    p.add_argument("--data", default="results/data/search",
                   help="--in-step: gather from this preprocessed split (synthetic rows if absent)")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r} (choose from {', '.join(MODELS)})")
    dtypes = [d for d in args.dtypes.split(",") if d]
    mode = "in-step (thread CPU time)" if args.in_step else "each pass on its own"
    print(f"# profile_step: {mode}, {args.threads} thread(s), batch {BATCH}, median of {args.repeats}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    cols, table = [], {}
    reuse = getattr(nn_memory, "reuse_freed_memory", None) if nn_memory else None
    print(f"# allocator policy of train(): {'applied' if reuse and reuse() else 'absent (glibc default)'}")
    if args.in_step:
        X32, y, desc = load_rows(args.data)
        print(f"# data: {desc}")
    with threadpool_limits(limits=args.threads):
        for dt in dtypes:
            X = X32.astype(dt) if args.in_step else None
            for m in models:
                if not args.in_step and m in BATCH_NORM:
                    print(f"# {m}: batch-norm passes only with --in-step")
                    continue
                col = f"{m} {dt}"
                cols.append(col)
                table[col] = (profile_in_step(MODELS[m], dt, m in BATCH_NORM, X, y, args.repeats)
                              if args.in_step else profile(MODELS[m], dt, args.repeats))
    if args.in_step:  # the k-th call of a function is a different layer in each model
        for m in models:
            print_table([c for c in cols if c.startswith(m + " ")], table, args.markdown)
            print()
    else:
        print_table(cols, table, args.markdown)
    print(f"# load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

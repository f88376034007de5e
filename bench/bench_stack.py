#!/usr/bin/env python
"""k runs' training steps as one stacked step (nn/stack.py) against k single steps
(`train.train_step`), at one BLAS thread, on random data of CIFAR's shape (B=100, D=3072).

One round times `--steps` stacked steps (each serving all k runs) and the same number of steps
of each of the k single networks; rounds alternate the order (A-B-B-A) so drift on a shared
machine hits both sides alike. Process CPU time. Prints per model and dtype the median µs per
k runs' step on each side, and single/stacked (above 1: the stack is faster), with the range of
the per-round ratios.

    python bench/bench_stack.py [--k 8] [--rounds 11] [--steps 20] [--dtypes float32,float64]
                                [--models linear,m=50,m=500,"m=50 BN"]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from handbackprop.nn import memory, optim, stack, train  # noqa: E402
from handbackprop.nn.network import build_network  # noqa: E402

MODELS = {"linear": ([], False), "m=50": ([50], False), "m=500": ([500], False),
          "m=50 BN": ([50], True)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--rounds", type=int, default=11)
    p.add_argument("--steps", type=int, default=20, help="steps per side per round")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="linear,m=50")
    p.add_argument("--dtypes", default="float32,float64")
    args = p.parse_args(argv)
    memory.reuse_freed_memory()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3072))
    y = rng.integers(0, 10, 2000)
    lams = np.logspace(-5, -1, args.k)
    eta = 1e-3
    print(f"k={args.k} B={args.batch} threads={args.threads} rounds={args.rounds} "
          f"steps/round={args.steps}; µs per step of all k runs (process CPU), median")
    with threadpool_limits(args.threads):
        for dtype in args.dtypes.split(","):
            for model in args.models.split(","):
                hidden, bn = MODELS[model]
                singles = [build_network(3072, hidden, 10, 0.0, dtype, 1, batch_norm=bn)
                           for _ in range(args.k)]
                opts = [optim.SGD(n.params) for n in singles]
                snet = stack.StackedNetwork([build_network(3072, hidden, 10, 0.0, dtype, 1,
                                                           batch_norm=bn) for _ in range(args.k)])
                sopt = optim.SGD(snet.params)
                batches = [train.take_batch(X, y, rng.choice(len(y), args.batch, replace=False),
                                            np.dtype(dtype)) for _ in range(args.steps)]

                def run_single():
                    for xb, yb in batches:
                        for net, opt, lam in zip(singles, opts, lams):
                            train.train_step(net, opt, xb, yb, lam, eta)

                def run_stacked():
                    for xb, yb in batches:
                        stack.stacked_step(snet, sopt, xb, yb, lams, eta)

                run_single(), run_stacked()  # warm-up: allocations, page faults, BLAS buffers
                t_single, t_stack, ratios = [], [], []
                for r in range(args.rounds):
                    order = (run_single, run_stacked) if r % 2 == 0 else (run_stacked, run_single)
                    times = {}
                    for fn in order:
                        t0 = time.process_time()
                        fn()
                        times[fn] = (time.process_time() - t0) / args.steps * 1e6
                    t_single.append(times[run_single])
                    t_stack.append(times[run_stacked])
                    ratios.append(times[run_single] / times[run_stacked])
                print(f"{dtype:8s} {model:7s} single x{args.k} {statistics.median(t_single):9.0f} µs  "
                      f"stacked {statistics.median(t_stack):9.0f} µs  single/stacked "
                      f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()

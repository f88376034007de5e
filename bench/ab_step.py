#!/usr/bin/env python
"""Before/after of our training step: another checkout's `handbackprop` against this one,
interleaved in one process (same weights, same batches, epochs alternated A/B/B/A).

The other package must be importable under another name: copy it first, e.g.

    mkdir /tmp/old && git archive <commit> handbackprop | tar -x -C /tmp/old
    mv /tmp/old/handbackprop /tmp/old/handbackprop_base
    python bench/ab_step.py --base /tmp/old --data results/data/search

(handbackprop/nn imports only relatively, so the renamed copy is self-contained.)
Prints process-CPU µs per step and base/this ratios per round, median (min-max).
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

LAM = ETA = 1e-3
MODELS = {"linear": ([], False), "m=50": ([50], False), "m=500": ([500], False), "3-layer BN": ([50, 50], True)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="directory holding handbackprop_base/ (the other checkout)")
    p.add_argument("--data", default="results/data/search")
    p.add_argument("--n", type=int, default=5000, help="rows per epoch")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--dtypes", default="float32,float64")
    args = p.parse_args(argv)
    sys.path.insert(0, args.base)
    sides = {}
    for tag, pkg in (("base", "handbackprop_base"), ("this", "handbackprop")):
        sides[tag] = tuple(importlib.import_module(f"{pkg}.nn.{m}") for m in ("network", "optim", "train"))
    importlib.import_module("handbackprop.nn.memory").reuse_freed_memory()
    d = Path(args.data)
    if (d / "X_train.npy").is_file():
        X32 = np.array(np.load(d / "X_train.npy", mmap_mode="r")[:args.n], dtype=np.float32)
        y = np.array(np.load(d / "y_train.npy", mmap_mode="r")[:args.n], dtype=np.int64)
    else:
        rng = np.random.default_rng(0)
        X32, y = rng.standard_normal((args.n, 3072), dtype=np.float32), rng.integers(0, 10, args.n)
    perm = np.random.default_rng(0).permutation(len(X32))
    batches = [perm[s:s + 100] for s in range(0, len(X32), 100)]
    print(f"# ab_step: base {args.base}, {len(X32):,} rows, {args.rounds} rounds, {args.threads} thread(s), "
          f"load {os.getloadavg()[0]:.1f}")
    with threadpool_limits(args.threads):
        for dt in args.dtypes.split(","):
            X = X32.astype(dt)
            for m in args.models.split(","):
                hidden, bn = MODELS[m]
                runs = {}
                for tag, (net_mod, opt_mod, tr) in sides.items():
                    net = net_mod.build_network(3072, hidden, dtype=dt, seed=0, batch_norm=bn)
                    opt = opt_mod.SGD(net.params)

                    def epoch(net=net, opt=opt, tr=tr):
                        for idx in batches:
                            xb, yb = tr.take_batch(X, y, idx, net.dtype)
                            if hasattr(tr, "train_step"):  # the step as train() runs it
                                tr.train_step(net, opt, xb, yb, LAM, ETA)
                            else:  # a checkout from before train_step
                                _, _, g = net.cost_and_grads(xb, yb, LAM)
                                opt.step(net.params, g, ETA)
                    runs[tag] = epoch
                for f in runs.values():  # warm-up
                    f()
                cpu = {k: [] for k in runs}
                for r in range(args.rounds):
                    for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                        c0 = time.process_time()
                        runs[k]()
                        cpu[k].append(time.process_time() - c0)
                ratios = [b / t for b, t in zip(cpu["base"], cpu["this"])]
                us = {k: statistics.median(v) / len(batches) * 1e6 for k, v in cpu.items()}
                print(f"{m:10s} {dt}: base {us['base']:9,.0f} µs/step  this {us['this']:9,.0f}  "
                      f"base/this {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Throughput benchmark: one epoch of mini-batch SGD with the hand-written NumPy
model, against the same model and update in PyTorch CPU eager, and against a
GEMM-only roofline measured with NumPy's own matmul.

For every dtype x BLAS threads x model row it times, on synthetic data:

* ours    - the hot loop of ``handbackprop.nn.train.train``: gather a batch with
            ``take_batch`` from a row-major (N, 3072) array using a shuffled
            index, ``net.cost_and_grads``, ``optim.SGD.step``;
* torch   - the same batches in the same order, manual forward
            (x @ W + b, relu, cross_entropy mean + lam * sum W^2),
            ``loss.backward()`` and an in-place SGD update under ``no_grad``;
* roofline - only the GEMMs of one step (forward x @ W per layer, backward
            dW = x.T @ dout per layer and dx = dout @ W.T for every layer but
            the first), timed with ``np.matmul`` into preallocated outputs, so
            roofline img/s = batch / (time of those GEMMs).

It also times one complete 3-cycle m=50 ``train()`` run end to end.

Run from the repository root:

    .venv/bin/python bench/bench_epoch.py --markdown          # full run (minutes)
    .venv/bin/python bench/bench_epoch.py --quick             # smoke run (seconds)

This is a script, not a test: it asserts nothing about speed, it only reports.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

# Make the repository importable even when the package is not installed.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from handbackprop.nn import optim  # noqa: E402
from handbackprop.nn.network import build_network  # noqa: E402
from handbackprop.nn.train import TrainConfig, take_batch, train  # noqa: E402

D = 3072
K = 10
BATCH = 100
LAM = 1e-3
ETA = 1e-3  # fixed learning rate for the throughput rows (small: random data must not blow up)
MODELS = {"linear": [], "m=50": [50], "m=500": [500]}
DTYPES = ("float32", "float64")
THREADS = (1, 2)
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES")


# ----------------------------------------------------------------------------- data
def synthetic_data(n: int, dtype, seed: int):
    """Standardised-looking images (N(0, 1) per pixel, row-major) and labels 0..9."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D), dtype=np.float32)
    if np.dtype(dtype) != X.dtype:
        X = X.astype(dtype)  # cast once, as load_split does for float64
    y = rng.integers(0, K, size=n, dtype=np.int64)
    return X, y


def epoch_batches(n: int, seed: int) -> list[np.ndarray]:
    """One shuffled epoch cut into consecutive batch index arrays (as train() does)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[s:s + BATCH] for s in range(0, n, BATCH)]


def best_time(fn, repeats: int) -> float:
    """One untimed warm-up call, then the best wall time of `repeats` calls."""
    fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# ----------------------------------------------------------------------------- ours
def ours_epoch_fn(hidden, dtype, X, y, batches):
    net = build_network(D, hidden, dtype=dtype, seed=0)
    opt = optim.SGD(net.params)

    def run():
        for idx in batches:
            xb, yb = take_batch(X, y, idx, net.dtype)
            loss, reg, grads = net.cost_and_grads(xb, yb, LAM)
            opt.step(net.params, grads, ETA)

    return run, net


# ----------------------------------------------------------------------------- torch
def torch_epoch_fn(hidden, dtype, X, y, batches):
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    init = build_network(D, hidden, dtype=dtype, seed=0).params  # same initial weights as ours
    n_layers = len(hidden) + 1
    Ws = [torch.from_numpy(init[f"W{i}"].copy()).requires_grad_(True) for i in range(1, n_layers + 1)]
    bs = [torch.from_numpy(init[f"b{i}"].copy()).requires_grad_(True) for i in range(1, n_layers + 1)]
    params = [p for pair in zip(Ws, bs) for p in pair]
    Xt = torch.from_numpy(X)  # shares memory, same dtype as the row
    yt = torch.from_numpy(y)
    idx_t = [torch.from_numpy(idx) for idx in batches]
    assert Xt.dtype == tdtype

    def step(idx):
        xb = Xt.index_select(0, idx)
        yb = yt.index_select(0, idx)
        h = xb
        for i in range(n_layers):
            h = h @ Ws[i] + bs[i]
            if i < n_layers - 1:
                h = torch.relu(h)
        loss = torch.nn.functional.cross_entropy(h, yb)
        reg = LAM * sum((W * W).sum() for W in Ws)
        cost = loss + reg
        cost.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(p.grad, alpha=ETA)
                p.grad = None
        return cost

    def run():
        for idx in idx_t:
            step(idx)

    return run, step, idx_t


# ----------------------------------------------------------------------------- roofline
def roofline_fn(hidden, dtype, steps: int):
    """`steps` repetitions of exactly the GEMMs of one training step, NumPy matmul."""
    rng = np.random.default_rng(1)
    sizes = [D, *hidden, K]
    ops = []  # (a, b, out)
    for layer, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        x = rng.standard_normal((BATCH, d_in)).astype(dtype)
        W = rng.standard_normal((d_in, d_out)).astype(dtype)
        dout = rng.standard_normal((BATCH, d_out)).astype(dtype)
        ops.append((x, W, np.empty((BATCH, d_out), dtype)))           # forward  x @ W
        ops.append((x.T, dout, np.empty((d_in, d_out), dtype)))       # backward dW = x.T @ dout
        if layer > 1:
            ops.append((dout, W.T, np.empty((BATCH, d_in), dtype)))   # backward dx = dout @ W.T
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in ops)

    def run():
        for _ in range(steps):
            for a, b, out in ops:
                np.matmul(a, b, out=out)

    return run, flops


# ----------------------------------------------------------------------------- rows
def bench_row(model, dtype, threads, X, y, batches, repeats):
    hidden = MODELS[model]
    steps = len(batches)
    n = sum(len(b) for b in batches)
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        ours_run, ours_net = ours_epoch_fn(hidden, dtype, X, y, batches)
        torch_run, torch_step, idx_t = torch_epoch_fn(hidden, dtype, X, y, batches)

        # Sanity: the two implementations compute the same first-step cost.
        xb, yb = take_batch(X, y, batches[0], ours_net.dtype)
        loss, reg, _ = ours_net.cost_and_grads(xb, yb, LAM)
        c_ours = loss + reg
        c_torch = float(torch_step(idx_t[0]).detach())  # also the first update of the torch copy
        rtol = 1e-4 if dtype == "float32" else 1e-10
        if not math.isclose(c_ours, c_torch, rel_tol=rtol):
            raise RuntimeError(f"{model} {dtype}: first-step cost differs: ours {c_ours!r} torch {c_torch!r}")

        t_ours = best_time(ours_run, repeats)
        t_torch = best_time(torch_run, repeats)
        roof_run, flops = roofline_fn(hidden, dtype, steps)
        t_roof = best_time(roof_run, repeats)
    # Roofline images/s: batch / (GEMM time of one step). With a short last batch the
    # epoch has `steps` full-size GEMM sets, so scale to n images to stay comparable.
    ours_ips = n / t_ours
    torch_ips = n / t_torch
    roof_ips = BATCH * steps / t_roof
    return {
        "model": model, "dtype": dtype, "threads": threads,
        "ours": ours_ips, "torch": torch_ips, "ratio": ours_ips / torch_ips,
        "roof": roof_ips, "frac": ours_ips / roof_ips,
        "gflops_roof": flops * steps / t_roof / 1e9,
    }


# ----------------------------------------------------------------------------- output
COLUMNS = [("model", "model", "{}"), ("dtype", "dtype", "{}"), ("threads", "threads", "{}"),
           ("ours", "ours img/s", "{:,.0f}"), ("torch", "torch img/s", "{:,.0f}"),
           ("ratio", "ours/torch", "{:.2f}"), ("roof", "roofline img/s", "{:,.0f}"),
           ("frac", "of roofline", "{:.0%}")]


def format_table(rows, markdown: bool) -> str:
    header = [title for _, title, _ in COLUMNS]
    body = [[fmt.format(r[key]) for key, _, fmt in COLUMNS] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(header)]
    fmt_line = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt_line(header), fmt_line(["-" * w for w in widths])] + [fmt_line(c) for c in body])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(args) -> str:
    lines = [f"# bench_epoch  python {platform.python_version()}  numpy {np.__version__}  "
             f"torch {torch.__version__}",
             f"# cpu: {cpu_model()}  ({os.cpu_count()} logical cpus)"]
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            lines.append(f"# numpy BLAS: internal_api={lib.get('internal_api')} "
                         f"architecture={lib.get('architecture')} version={lib.get('version')} "
                         f"threading={lib.get('threading_layer')} ({Path(lib['filepath']).name})")
    cfg = torch.__config__.show().replace(",", " ").split()
    torch_blas = [tok for tok in cfg if tok.startswith(("BLAS_INFO=", "USE_MKLDNN="))]
    lines.append(f"# torch: {' '.join(torch_blas) or 'BLAS n/a'} threads={torch.get_num_threads()}; "
                 f"parallel backend {torch.__config__.parallel_info().splitlines()[-1].split(':')[-1].strip()}")
    env = [f"{k}={os.environ[k]}" for k in ENV_VARS if k in os.environ]
    lines.append(f"# env: {' '.join(env) if env else '(none of ' + ', '.join(ENV_VARS[:2]) + ', ... set)'}")
    load = os.getloadavg()
    lines.append(f"# load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                 f"(anything well above 0 on this {os.cpu_count()}-cpu box means other jobs "
                 f"compete and the 2-thread rows in particular are unreliable)")
    lines.append(f"# n={args.n} D={D} batch={BATCH} lam={LAM} eta={ETA} repeats={args.repeats} "
                 f"(best of, after 1 untimed warm-up epoch); data stored in the row's dtype")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- e2e
def end_to_end(n: int, seed: int):
    """One complete 3-cycle m=50 train() run, float32, 1 thread, default n_s."""
    X, y = synthetic_data(n, "float32", seed)
    Xv, yv = synthetic_data(1000, "float32", seed + 1)
    net = build_network(D, [50], dtype="float32", seed=0)
    cfg = TrainConfig(lam=LAM, cycles=3)
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        res = train(net, X, y, Xv, yv, cfg, log=lambda *_: None)
        wall = time.perf_counter() - t0
    return wall, res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="synthetic training rows per epoch (default 10000)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per measurement, best reported")
    p.add_argument("--quick", action="store_true", help="smoke run: n=1000, 1 repeat, e2e-n=2000")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--e2e-n", type=int, default=49_000, help="rows for the end-to-end train() run")
    p.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end train() run")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of " + ",".join(MODELS))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--threads", default=",".join(map(str, THREADS)))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.e2e_n = 1000, 1, min(args.e2e_n, 2000)
    models = [m for m in args.models.split(",") if m]
    dtypes = [d for d in args.dtypes.split(",") if d]
    threads = [int(t) for t in args.threads.split(",") if t]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}")

    print(header(args), flush=True)
    data = {dt: synthetic_data(args.n, dt, args.seed) for dt in dtypes}  # same values in both dtypes
    batches = epoch_batches(args.n, args.seed)

    rows = []
    t_start = time.perf_counter()
    for dt in dtypes:
        X, y = data[dt]
        for th in threads:
            for m in models:
                r = bench_row(m, dt, th, X, y, batches, args.repeats)
                rows.append(r)
                print(f"# done {m:6s} {dt} threads={th}: ours {r['ours']:,.0f} torch {r['torch']:,.0f} "
                      f"roofline {r['roof']:,.0f} img/s (roofline GEMMs at {r['gflops_roof']:.1f} GFLOP/s) "
                      f"load1 {os.getloadavg()[0]:.2f}",
                      file=sys.stderr, flush=True)
    print()
    print(format_table(rows, args.markdown))
    print(f"\n# table took {time.perf_counter() - t_start:.0f} s; "
          f"load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    if not args.skip_e2e:
        wall, res = end_to_end(args.e2e_n, args.seed)
        per_step = wall / res.steps
        print(f"\nend-to-end: train() m=50 float32 1 thread, 3 cycles, n={args.e2e_n} (+1000 val), "
              f"n_s={res.n_s}, {res.steps} steps, {len(res.history)} record points: "
              f"{wall:.1f} s wall ({per_step * 1e3:.2f} ms/step incl. evaluation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

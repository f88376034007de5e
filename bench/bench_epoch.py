#!/usr/bin/env python
"""Throughput benchmark: full epochs of mini-batch SGD with the hand-written
NumPy model against the strongest PyTorch CPU eager loops for the same model,
objective, weights and batches, and against a GEMM-only roofline.

For every dtype x BLAS threads x model row:

* ours     - the hot loop of ``handbackprop.nn.train.train``: ``take_batch``
             (gather with a shuffled index), ``train_step`` (forward, backward,
             and SGD with each weight's update folded into its gradient GEMM);
* torch    - the variants in ``torch_baselines.py`` (nn.Linear layout with
             fused addmm, L2 as weight_decay on the weights only, fused SGD,
             torch.compile, and the old (in, out) loop), each first checked to
             compute the same cost and the same first update as ours;
* roofline - only the GEMMs one step needs (forward x W per layer, dW per
             layer, dx for every layer but the first: the study's flop model,
             handbackprop/study/roofline.py), each in the fastest layout NumPy
             offers on this machine (picked by a short calibration), into
             preallocated outputs.

Samples are whole epochs. Within a row the implementations run interleaved,
ours / torch variants / roofline, then the next round in reverse order, for
`--repeats` rounds after one untimed warm-up epoch each; a row reports the
median img/s of each and the median (min-max) over rounds of the per-round
ratio ours / best torch variant, so load that drifts during a row hits both
sides. The 1-minute load average is printed per row.

Run from the repository root:

    .venv/bin/python bench/bench_epoch.py --markdown --data results/data/search   # full run
    .venv/bin/python bench/bench_epoch.py --quick                                 # ~1 minute smoke run

This is a script, not a test: it asserts that every variant computes what ours
computes, and nothing about speed.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

REPO = Path(__file__).resolve().parents[1]
for path in (REPO, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch_baselines  # noqa: E402
from handbackprop.nn import memory, optim  # noqa: E402
from handbackprop.nn.network import build_network  # noqa: E402
from handbackprop.nn.train import TrainConfig, take_batch, train, train_step  # noqa: E402
from handbackprop.study import roofline  # noqa: E402

D = 3072
K = 10
BATCH = 100
LAM = 1e-3
ETA = 1e-3  # fixed and small: the rows time steps, they need not learn
MODELS = {"linear": [], "m=50": [50], "m=500": [500], "3-layer BN": [50, 50]}
BATCH_NORM = {"3-layer BN"}  # batch norm after each hidden affine layer (torch: nn.BatchNorm1d)
DTYPES = ("float32", "float64")
THREADS = (1, 2)
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "NPY_DISABLE_CPU_FEATURES")
# Agreement required before a variant is timed: first-step cost (relative) and the
# first update (max abs difference relative to the largest update entry).
COST_RTOL = {"float32": 1e-5, "float64": 1e-10}
UPDATE_RTOL = {"float32": 1e-3, "float64": 1e-8}
UPDATE_ULPS = 4


# ----------------------------------------------------------------------------- data
def synthetic_data(n: int, seed: int):
    """Standardised-looking float32 images (N(0, 1) per pixel, row-major) and labels 0..9."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, D), dtype=np.float32), rng.integers(0, K, size=n, dtype=np.int64)


def load_images(data_dir: str | None, n: int | None, seed: int):
    """(X float32 (N, D) in RAM, y (N,), description): the preprocessed training split
    in `data_dir` when it holds X_train.npy and y_train.npy, else synthetic rows."""
    if data_dir:
        d = Path(data_dir)
        xs, ys = d / "X_train.npy", d / "y_train.npy"
        if xs.is_file() and ys.is_file():
            X = np.load(xs, mmap_mode="r")
            y = np.load(ys, mmap_mode="r")
            if X.ndim != 2 or X.shape[1] != D or len(y) != len(X):
                raise ValueError(f"{xs}: expected ({D}-column X, matching y), got X {X.shape}, y {y.shape}")
            rows = slice(0, n if n else len(X))
            X = np.array(X[rows], dtype=np.float32)  # in RAM: both sides gather from memory
            y = np.array(y[rows], dtype=np.int64)
            return X, y, f"real preprocessed images from {d} ({len(X):,} rows)"
        print(f"# {d}: no X_train.npy/y_train.npy, falling back to synthetic data", file=sys.stderr)
    n = n or 45_000
    X, y = synthetic_data(n, seed)
    return X, y, f"synthetic N(0,1) images ({n:,} rows)"


def epoch_batches(n: int, seed: int) -> list[np.ndarray]:
    """One shuffled epoch cut into consecutive batch index arrays (as train() does)."""
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[s:s + BATCH] for s in range(0, n, BATCH)]


# ----------------------------------------------------------------------------- ours
class Ours:
    name = "ours"

    def __init__(self, hidden, dtype, X, y, batch_norm=False):
        memory.reuse_freed_memory()  # as train() does (it applies to the torch variants too)
        self.net = build_network(D, hidden, dtype=dtype, seed=0, batch_norm=batch_norm)
        self.opt = optim.SGD(self.net.params)
        self.X, self.y = X, y

    def run_epoch(self, batches):
        net, opt, X, y = self.net, self.opt, self.X, self.y
        for idx in batches:
            xb, yb = take_batch(X, y, idx, net.dtype)
            train_step(net, opt, xb, yb, LAM, ETA)  # the step exactly as train() runs it

    def first_step(self, idx):
        """Cost before the update and the parameters after it, on a copy of the network."""
        xb, yb = take_batch(self.X, self.y, idx, self.net.dtype)
        net = copy.deepcopy(self.net)
        loss, reg = train_step(net, optim.SGD(net.params), xb, yb, LAM, ETA)
        return loss + reg, net.params


def check_agreement(model, dtype, variant_name, init, ours, theirs):
    """Raise if a variant's first-step cost or first update differs from ours beyond dtype rounding."""
    c_ours, p_ours = ours
    c_theirs, p_theirs = theirs
    if not math.isclose(c_ours, c_theirs, rel_tol=COST_RTOL[dtype]):
        raise RuntimeError(f"{model} {dtype} {variant_name}: first-step cost {c_theirs!r} != ours {c_ours!r}")
    for k in p_ours:
        d_ours = p_ours[k].astype(np.float64) - init[k]
        d_theirs = p_theirs[k].astype(np.float64) - init[k]
        scale = np.abs(d_ours).max()
        err = np.abs(d_ours - d_theirs).max()
        # Each side rounds the new weights to the dtype (ours' fused step twice: βW, then the
        # product added), so an update is only resolved to a few ulps of the weights themselves.
        ulps = UPDATE_ULPS * np.spacing(np.abs(init[k]).max().astype(dtype))
        if not err <= max(UPDATE_RTOL[dtype] * scale, ulps):
            raise RuntimeError(f"{model} {dtype} {variant_name}: first update of {k} differs from ours by "
                               f"{err:.3g} (largest update entry {scale:.3g})")


# ----------------------------------------------------------------------------- roofline
def step_gemms(hidden) -> list[dict]:
    """The GEMMs of one batch-size step of this model: the study's flop model
    (handbackprop.study.roofline.step_gemms), so the bench and the report's roofline count the
    same work. Batch norm adds no GEMM."""
    return roofline.step_gemms(roofline.layer_shapes(hidden, D, K), BATCH)


def roofline_gemms(hidden, dtype, seed: int = 1):
    """The GEMMs of one step (step_gemms), each as the fastest of NumPy's layouts
    (roofline.gemm_candidates), the GEMMs of a layer sharing their operands: a list of thunks."""
    rng = np.random.default_rng(seed)
    chosen, operands = [], {}
    for g in step_gemms(hidden):
        if g["layer"] not in operands:
            operands[g["layer"]] = roofline.gemm_operands(g["rows"], g["in"], g["out"], dtype, rng)
        cands = roofline.gemm_candidates(g["op"], g["rows"], g["in"], g["out"], dtype, rng,
                                         operands=operands[g["layer"]])
        chosen.append(min((f for _, f, _ in cands), key=lambda f: _median_time(f, 15)))
    return chosen


def _median_time(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


class Roofline:
    name = "roofline"

    def __init__(self, hidden, dtype):
        self.gemms = roofline_gemms(hidden, dtype)

    def run_epoch(self, batches):
        gemms = self.gemms
        for _ in batches:
            for g in gemms:
                g()


# ----------------------------------------------------------------------------- rows
def bench_row(model, dtype, threads, X, y, batches, repeats, variants):
    """Interleaved epochs of ours, every available torch variant and the roofline."""
    hidden = MODELS[model]
    n = sum(len(b) for b in batches)
    load_start = os.getloadavg()[0]
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads):
        ours = Ours(hidden, dtype, X, y, batch_norm=model in BATCH_NORM)
        init = {k: v.astype(np.float64) for k, v in ours.net.params.items()}
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        idx_t = [torch.from_numpy(idx) for idx in batches]
        ours_first = ours.first_step(batches[0])
        runners, skipped = [ours], {}
        for name in variants:
            try:
                v = torch_baselines.make_variant(name, ours.net.params, len(hidden) + 1, dtype, Xt, yt, LAM, ETA)
                theirs = v.first_step(idx_t[0])
            except torch_baselines.VariantUnavailable as exc:
                skipped[name] = str(exc)
                print(f"# skip {exc}", file=sys.stderr, flush=True)
                continue
            check_agreement(model, dtype, name, init, ours_first, theirs)
            runners.append(v)
        runners.append(Roofline(hidden, dtype))
        arg = {r.name: (idx_t if r.name not in ("ours", "roofline") else batches) for r in runners}

        for r in runners:  # warm-up epoch each: caches, allocator, lazy initialisation
            r.run_epoch(arg[r.name])
        times = {r.name: [] for r in runners}
        cpu = {r.name: [] for r in runners}  # process CPU time: less sensitive to other jobs
        for rnd in range(repeats):
            order = runners if rnd % 2 == 0 else runners[::-1]
            for r in order:
                c0, t0 = time.process_time(), time.perf_counter()
                r.run_epoch(arg[r.name])
                times[r.name].append(time.perf_counter() - t0)
                cpu[r.name].append(time.process_time() - c0)
    torch_names = [r.name for r in runners if r.name not in ("ours", "roofline")]
    ips = {name: n / statistics.median(ts) for name, ts in times.items()}
    best = max(torch_names, key=lambda k: ips[k])
    ratios = [tb / to for tb, to in zip(times[best], times["ours"])]
    roof_fracs = [tr / to for tr, to in zip(times["roofline"], times["ours"])]
    best_cpu = min(torch_names, key=lambda k: statistics.median(cpu[k]))
    cpu_ratios = [tb / to for tb, to in zip(cpu[best_cpu], cpu["ours"])]
    return {
        "model": model, "dtype": dtype, "threads": threads, "n": n, "repeats": repeats,
        "ips": ips, "best": best, "skipped": skipped,
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cpu_ratio": statistics.median(cpu_ratios), "cpu_ratio_min": min(cpu_ratios),
        "cpu_ratio_max": max(cpu_ratios),
        "roof_frac": statistics.median(roof_fracs), "roof_frac_min": min(roof_fracs),
        "roof_frac_max": max(roof_fracs),
        "load": (load_start, os.getloadavg()[0]),
    }


# ----------------------------------------------------------------------------- output
SHORT = {"inout-manual": "torch (in,out) manual", "l2-in-graph": "torch L2 in graph",
         "weight-decay": "torch weight_decay", "weight-decay-fused": "torch wd fused",
         "compiled": "torch compiled"}


def format_table(rows, variants, markdown: bool) -> str:
    header = (["model", "dtype", "thr", "ours img/s"] + [SHORT[v] for v in variants]
              + ["ours / best torch (min–max)", "same, CPU time", "roofline img/s", "ours / roofline (min–max)", "load1"])
    body = []
    for r in rows:
        cells = [r["model"], r["dtype"], str(r["threads"]), f"{r['ips']['ours']:,.0f}"]
        for v in variants:
            if v in r["ips"]:
                s = f"{r['ips'][v]:,.0f}"
                cells.append(f"**{s}**" if (v == r["best"] and markdown) else s + ("*" if v == r["best"] else ""))
            else:
                cells.append("n/a")
        cells.append(f"{r['ratio']:.2f} ({r['ratio_min']:.2f}–{r['ratio_max']:.2f})")
        cells.append(f"{r['cpu_ratio']:.2f} ({r['cpu_ratio_min']:.2f}–{r['cpu_ratio_max']:.2f})")
        cells.append(f"{r['ips']['roofline']:,.0f}")
        cells.append(f"{r['roof_frac']:.0%} ({r['roof_frac_min']:.0%}–{r['roof_frac_max']:.0%})")
        cells.append(f"{r['load'][0]:.1f}–{r['load'][1]:.1f}")
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 3)) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(header)]

    def fmt_line(cells):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt_line(header), fmt_line(["-" * w for w in widths])] + [fmt_line(c) for c in body])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header(args, data_desc) -> str:
    lines = [f"# bench_epoch  python {platform.python_version()}  numpy {np.__version__}  "
             f"torch {torch.__version__}",
             f"# cpu: {cpu_model()}  ({os.cpu_count()} logical cpus)"]
    for lib in threadpool_info():
        if lib.get("user_api") == "blas":
            lines.append(f"# numpy BLAS: internal_api={lib.get('internal_api')} "
                         f"architecture={lib.get('architecture')} version={lib.get('version')} "
                         f"({Path(lib['filepath']).name})")
    cfg = torch.__config__.show().replace(",", " ").split()
    torch_blas = [tok for tok in cfg if tok.startswith(("BLAS_INFO=", "USE_MKLDNN="))]
    lines.append(f"# torch: {' '.join(torch_blas) or 'BLAS n/a'}")
    env = [f"{k}={os.environ[k]}" for k in ENV_VARS if k in os.environ]
    lines.append(f"# env: {' '.join(env) if env else '(none of ' + ', '.join(ENV_VARS[:2]) + ', ... set)'}")
    load = os.getloadavg()
    lines.append(f"# load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cpus "
                 f"(well above 0 means other jobs compete; the ratios are interleaved, the img/s are not robust)")
    lines.append(f"# data: {data_desc}; batch {BATCH}, lam {LAM}, eta {ETA}; each sample one full epoch; "
                 f"{args.repeats} interleaved rounds after 1 warm-up epoch each")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- e2e
def end_to_end(X, y, n: int):
    """One complete 3-cycle m=50 train() run, float32, 1 thread, default n_s."""
    Xtr, ytr = X[:n], y[:n]
    Xv, yv = X[n:n + 1000], y[n:n + 1000]
    net = build_network(D, [50], dtype="float32", seed=0)
    cfg = TrainConfig(lam=LAM, cycles=3)
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        t0 = time.perf_counter()
        res = train(net, Xtr, ytr, Xv, yv, cfg, log=lambda *_: None)
        wall = time.perf_counter() - t0
    return wall, res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="results/data/search",
                   help="preprocessed split folder with X_train.npy, y_train.npy (synthetic if absent)")
    p.add_argument("--n", type=int, default=None,
                   help="training rows per epoch (default: the whole split, or 45000 synthetic)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds per row (default 5)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run (~1 min): synthetic 2000 rows, 3 rounds, 1 thread, no compile, no e2e")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--e2e-n", type=int, default=44_000, help="training rows for the end-to-end train() run")
    p.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end train() run")
    p.add_argument("--models", default=",".join(MODELS), help="comma list of " + ",".join(MODELS))
    p.add_argument("--dtypes", default=",".join(DTYPES))
    p.add_argument("--threads", default=",".join(map(str, THREADS)))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.n, args.repeats, args.skip_e2e, args.no_compile = None, 2000, 3, True, True
        args.threads = "1"
    models = [m for m in args.models.split(",") if m]
    dtypes = [d for d in args.dtypes.split(",") if d]
    threads = [int(t) for t in args.threads.split(",") if t]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r} (choose from {', '.join(MODELS)})")
    for d in dtypes:
        if d not in DTYPES:
            p.error(f"unknown dtype {d!r} (choose from {', '.join(DTYPES)})")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    variants = [v for v in torch_baselines.VARIANTS if not (args.no_compile and v == "compiled")]

    X32, y, data_desc = load_images(args.data, args.n, args.seed)
    print(header(args, data_desc), flush=True)
    batches = epoch_batches(len(X32), args.seed)

    rows = []
    t_start = time.perf_counter()
    for dt in dtypes:
        X = X32 if dt == "float32" else X32.astype(dt)  # cast once, as load_split does
        for th in threads:
            for m in models:
                r = bench_row(m, dt, th, X, y, batches, args.repeats, variants)
                rows.append(r)
                print(f"# done {m:6s} {dt} threads={th}: ours {r['ips']['ours']:,.0f} img/s, best torch "
                      f"{r['best']} {r['ips'][r['best']]:,.0f}, ratio {r['ratio']:.2f} "
                      f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}), load1 {os.getloadavg()[0]:.2f}",
                      file=sys.stderr, flush=True)
        del X
    print()
    print(format_table(rows, variants, args.markdown))
    skipped = {f"{name}: {why}" for r in rows for name, why in r["skipped"].items()}
    for s in sorted(skipped):
        print(f"\n# skipped {s}")
    print("\n# ratios: per interleaved round, best torch variant's epoch time / ours, median (min-max); "
          "'CPU time' uses process CPU seconds instead of wall (robust to other jobs only at 1 thread)")
    print(f"# best torch variant in bold (markdown) or starred; every timed variant matched ours' "
          f"first-step cost (rtol {COST_RTOL}) and first update (rtol {UPDATE_RTOL} of its largest entry, or {UPDATE_ULPS} ulps of the largest weight)")
    print(f"# table took {time.perf_counter() - t_start:.0f} s; "
          f"load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    if not args.skip_e2e:
        n = min(args.e2e_n, len(X32) - 1000)
        wall, res = end_to_end(X32, y, n)
        print(f"\nend-to-end: train() m=50 float32 1 thread, 3 cycles, n={n} (+1000 val), "
              f"n_s={res.n_s}, {res.steps} steps, {len(res.history)} record points: "
              f"{wall:.1f} s wall ({wall / res.steps * 1e3:.2f} ms/step incl. evaluation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

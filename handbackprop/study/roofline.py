"""The GEMM roofline of a training run: its flop model and this machine's GEMM rates.

The study's cost table (``report/costs.py``), the ``machine_gemm`` rule and ``bench/``'s
epoch benchmark all take a step's GEMMs from here, so they count the same work:

- **flops** of one training run from its ``metrics.json`` (``run_gemms``): the GEMMs its steps
  need (``step_gemms``: per layer the forward ``x·W``, ``dW`` and, for every layer but the
  first, ``dx``; each 2·rows·in·out flops) over the exact rows its mini-batches hold, plus the
  forward GEMMs of its evaluations: at record points (``min(n_train, train_eval_size) + n_val``
  rows each) and at the end (all training rows, and the test rows when it scored them);
- the **machine's GEMM rate** at the shapes the study uses (``measure_machine_gemm``, the
  ``machine_gemm`` rule): each GEMM timed in every layout NumPy offers (``gemm_candidates``),
  the fastest kept, at 1 thread and at the training jobs' thread counts;
- the **roofline seconds** of a run (``roofline_seconds``): the time its GEMMs alone would take
  at the machine's best measured rate for each shape, a lower bound for any implementation
  using this BLAS. Everything else a job does (gathering batches, elementwise passes, the
  update, starting Python, reading the data, writing files) is the gap between its wall time
  and that bound.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from ..nn.train import record_steps

INPUT_DIM = 3072  # CIFAR-10 images, flattened
N_CLASSES = 10
EVAL_ROWS = 500  # rows of the evaluation GEMMs machine_gemm times (evaluate() runs 5000-row chunks: 10x the time)
OPS = ("forward", "dW", "dx", "eval")
DTYPES = ("float32", "float64")


# ----------------------------------------------------------------------------- flops
def layer_shapes(hidden, input_dim: int = INPUT_DIM, n_classes: int = N_CLASSES) -> list[tuple[int, int]]:
    """(in, out) of every affine layer of a network with these hidden widths."""
    sizes = [int(input_dim), *map(int, hidden or []), int(n_classes)]
    return list(zip(sizes[:-1], sizes[1:]))


def step_gemms(shapes, rows: int) -> list[dict]:
    """The GEMMs of one training step over `rows` images, layer by layer (from 1): forward and dW
    per layer, and dx for every layer but the first (nothing needs the gradient of the images).
    bench/bench_epoch.py's roofline times exactly these."""
    out = []
    for layer, (d_in, d_out) in enumerate(shapes, start=1):
        ops = ("forward", "dW", "dx") if layer > 1 else ("forward", "dW")
        out += [{"layer": layer, "op": op, "in": d_in, "out": d_out, "rows": rows, "flops": 2 * rows * d_in * d_out}
                for op in ops]
    return out


def eval_gemms(shapes, rows: int) -> list[dict]:
    """The forward GEMMs of scoring `rows` images (no backward)."""
    return [{"layer": layer, "op": "eval", "in": i, "out": o, "rows": rows, "flops": 2 * rows * i * o}
            for layer, (i, o) in enumerate(shapes, start=1)]


def training_rows(n_train: int, batch_size: int, steps: int) -> int:
    """Images seen by `steps` mini-batch steps (train.shuffle_stream: an epoch is consecutive
    slices of a permutation, the last slice short)."""
    per_epoch = math.ceil(n_train / batch_size)
    epochs, rest = divmod(int(steps), per_epoch)
    return epochs * n_train + rest * batch_size  # a partial epoch's batches are all full


def _spec(metrics: dict) -> dict:
    return {**(metrics.get("spec") or {}), **(metrics.get("train_config") or {})}


def run_gemms(metrics: dict, input_dim: int = INPUT_DIM, n_classes: int = N_CLASSES) -> dict:
    """The GEMM work of one training run, from its metrics.json.

    Returns {"train": [gemm], "record_eval": [gemm], "end_eval": [gemm], "steps", "records",
    "record_rows", "flops": {part: flops, "total": ...}}, each gemm {op, in, out, rows, flops}
    with `rows` summed over the run (flops are linear in rows). A diverged run counts the steps
    up to the one that diverged and has no end evaluation.
    """
    spec = _spec(metrics)
    shapes = layer_shapes(spec.get("hidden") or [], input_dim, n_classes)
    n_train, n_val = int(metrics["n_train"]), int(metrics.get("n_val") or 0)
    batch = int(spec.get("batch_size", 100))
    if metrics.get("diverged"):
        steps = int((metrics.get("divergence") or {}).get("step", 0)) + 1  # its cost and gradient were computed
        n_s = int(metrics.get("n_s") or spec.get("n_s") or 2 * (n_train // batch))
        total = int(spec.get("max_steps") or 2 * n_s * int(metrics.get("cycles") or spec.get("cycles") or 1))
        records = sum(1 for s in record_steps(total, n_s, int(spec.get("points_per_cycle", 10))) if s < steps)
        end_rows = 0
    else:
        steps, n_s = int(metrics["steps"]), int(metrics["n_s"])
        records = len(record_steps(steps, n_s, int(spec.get("points_per_cycle", 10))))
        end_rows = n_train + _test_rows(metrics)
    record_rows = min(n_train, int(spec.get("train_eval_size", 10000))) + n_val
    parts = {"train": step_gemms(shapes, training_rows(n_train, batch, steps)),
             "record_eval": eval_gemms(shapes, records * record_rows),
             "end_eval": eval_gemms(shapes, end_rows) if end_rows else []}
    flops = {k: sum(g["flops"] for g in v) for k, v in parts.items()}
    flops["total"] = sum(flops.values())
    return {**parts, "steps": steps, "records": records, "record_rows": record_rows, "flops": flops}


def _test_rows(metrics: dict) -> int:
    """Test rows a run scored (final runs): the sum of its test confusion matrix; 0 without one."""
    return int(sum(map(sum, metrics["confusion"]))) if "test_accuracy" in metrics and metrics.get("confusion") else 0


def eval_flop_share(metrics: dict) -> float:
    """Record-point evaluation's share of the GEMM flops of a run's loop (steps + records): what
    the loop's eval_fraction would be if every flop cost the same. Known for runs recorded before
    eval_seconds existed."""
    g = run_gemms(metrics)["flops"]
    loop = g["train"] + g["record_eval"]
    return g["record_eval"] / loop if loop else math.nan


def config_eval_shares(config: dict) -> list[dict]:
    """Each kind of training run of a config with the GEMM-flop share its record-point
    evaluation would take, for one cycle (the worst case: the record at step 0 weighs most when
    there are fewest cycles). [{"where", "split", "share"}], in plan.training_uses order."""
    from . import plan

    out = []
    for use in plan.training_uses(config):
        where, split, spec = use.where, use.split, use.spec
        n_train = plan.train_rows(config, split)
        n_s = plan.step_size(spec, n_train)
        m = {"diverged": False, "n_train": n_train, "n_val": config["data"]["splits"][split]["n_val"],
             "steps": 2 * n_s, "n_s": n_s, "cycles": 1, "spec": spec}
        out.append({"where": where, "split": split, "share": eval_flop_share(m)})
    return out


# --------------------------------------------------------------------------- machine
def study_shapes(config: dict) -> dict:
    """The GEMM shapes every training run of this config uses: {"layers": [[in, out], ...],
    "batch_rows": [...], "dtype": ...} (sorted, so the measurement is the same for the same config)."""
    from . import plan

    layers, batches = set(), set()
    for use in plan.training_uses(config):
        layers.update(layer_shapes(use.spec.get("hidden") or []))
        batches.add(int(use.spec.get("batch_size", 100)))
    return {"layers": [list(s) for s in sorted(layers)], "batch_rows": sorted(batches),
            "dtype": config.get("dtype", "float32")}


def gemm_operands(m: int, d_in: int, d_out: int, dtype, rng) -> tuple:
    """Random operands of one layer's GEMMs over `m` rows: (x, dout, W, W stored transposed)."""
    x = rng.standard_normal((m, d_in)).astype(dtype)            # (M, D_in)
    dout = rng.standard_normal((m, d_out)).astype(dtype)        # (M, D_out)
    W = rng.standard_normal((d_in, d_out)).astype(dtype)        # (D_in, D_out) C order
    WF = np.asfortranarray(W)                                   # the same, stored (D_out, D_in)
    return x, dout, W, WF


def gemm_candidates(op: str, m: int, d_in: int, d_out: int, dtype, rng,
                    operands=None) -> list[tuple[str, object, int]]:
    """(layout, thunk, flops) for each way NumPy can compute one GEMM of a layer: W stored
    (in, out) or transposed; dW as (in, out) or (out, in). `operands` (gemm_operands) lets the
    GEMMs of one layer share their inputs, as a training step's do; else they are drawn here."""
    x, dout, W, WF = operands if operands is not None else gemm_operands(m, d_in, d_out, dtype, rng)
    flops = 2 * m * d_in * d_out
    if op in ("forward", "eval"):
        y = np.empty((m, d_out), dtype)
        return [("x·W, W (in,out)", _mm(x, W, y), flops), ("x·W, W (out,in)", _mm(x, WF, y), flops)]
    if op == "dW":
        return [("xᵀ·dout → (in,out)", _mm(x.T, dout, np.empty((d_in, d_out), dtype)), flops),
                ("doutᵀ·x → (out,in)", _mm(dout.T, x, np.empty((d_out, d_in), dtype)), flops)]
    if op == "dx":
        dx = np.empty((m, d_in), dtype)
        return [("dout·Wᵀ, W (in,out)", _mm(dout, W.T, dx), flops), ("dout·Wᵀ, W (out,in)", _mm(dout, WF.T, dx), flops)]
    raise ValueError(f"unknown GEMM op {op!r}; one of {OPS}")


def _mm(a, b, out):
    return lambda: np.matmul(a, b, out=out)


def best_seconds(fn, min_time: float = 0.004, max_reps: int = 10) -> float:
    """The fastest of several timed calls (after one untimed), enough to fill ~min_time."""
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    reps = max(2, min(max_reps, math.ceil(min_time / once)))
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def measure_machine_gemm(shapes: dict, threads=(1,), dtypes=DTYPES, eval_rows: int = EVAL_ROWS,
                         seed: int = 0, log=print) -> dict:
    """The best-layout GFLOP/s of every GEMM the study's training and evaluation use, per thread
    count and dtype: the machine_gemm.json content (see tests/report/test_costs.py for its shape)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    started = time.perf_counter()
    rows = []
    for n_threads in sorted({int(t) for t in threads}):
        with threadpool_limits(limits=n_threads):
            for dtype in dtypes:
                rng = np.random.default_rng(seed)
                for d_in, d_out in shapes["layers"]:
                    jobs = [(op, m) for m in shapes["batch_rows"] for op in ("forward", "dW", "dx")
                            if op != "dx" or d_in != INPUT_DIM] + [("eval", eval_rows)]
                    for op, m in jobs:
                        timed = [(best_seconds(f), layout, fl)
                                 for layout, f, fl in gemm_candidates(op, m, d_in, d_out, dtype, rng)]
                        sec, layout, fl = min(timed)
                        rows.append({"threads": n_threads, "dtype": dtype, "op": op, "rows": m, "in": d_in,
                                     "out": d_out, "layout": layout, "seconds": sec, "gflops": fl / sec / 1e9})
                best = max(r["gflops"] for r in rows if r["threads"] == n_threads and r["dtype"] == dtype)
                log(f"machine_gemm: {dtype} at {n_threads} thread(s): best {best:.1f} GFLOP/s")
    peak = {str(t): {d: max(r["gflops"] for r in rows if r["threads"] == t and r["dtype"] == d) for d in dtypes}
            for t in sorted({r["threads"] for r in rows})}
    blas = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]
    return {"threads": sorted({int(t) for t in threads}), "dtypes": list(dtypes), "shapes": shapes,
            "eval_rows": eval_rows, "gemms": rows, "peak_gflops": peak, "blas": blas,
            "cpu_count": os.cpu_count(), "seconds": time.perf_counter() - started}


def gemm_rate(machine: dict, op: str, d_in: int, d_out: int, dtype: str, threads: int) -> tuple[float, bool]:
    """(GFLOP/s, measured) for one GEMM of a job run with `threads` BLAS threads: the best rate
    measured at any thread count up to it (a job may run a small GEMM faster on fewer threads,
    so that is still within its reach). A shape the measurement did not time (another config's)
    takes the machine's peak rate at those thread counts and dtype: still a lower bound on time."""
    usable = [t for t in machine["threads"] if int(t) <= int(threads or 1)] or [min(machine["threads"])]
    rates = [r["gflops"] for r in machine["gemms"] if r["threads"] in usable and r["dtype"] == dtype
             and r["op"] == op and r["in"] == d_in and r["out"] == d_out]
    if rates:
        return max(rates), True
    return max(machine["peak_gflops"][str(t)][dtype] for t in usable), False


def roofline_seconds(metrics: dict, machine: dict) -> dict:
    """A run's GEMM-roofline seconds: {"train", "record_eval", "end_eval", "total", "unmeasured"
    (GEMMs timed at the peak rate because their shape was not measured)}."""
    g = run_gemms(metrics)
    dtype, threads = metrics.get("dtype", "float32"), int(metrics.get("threads") or 1)
    out, unmeasured = {}, 0
    for part in ("train", "record_eval", "end_eval"):
        sec = 0.0
        for gemm in g[part]:
            rate, ok = gemm_rate(machine, gemm["op"], gemm["in"], gemm["out"], dtype, threads)
            sec += gemm["flops"] / (rate * 1e9)
            unmeasured += not ok
        out[part] = sec
    out["total"] = sum(out.values())
    out["unmeasured"] = unmeasured
    return out

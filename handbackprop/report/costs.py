"""The study's cost where it is spent: time per stage against the GEMM roofline of its jobs.

Three parts, each usable alone:

- **flops** of one training run from its ``metrics.json`` (``run_gemms``): the GEMMs its steps
  need (per layer the forward ``x·W``, ``dW`` and, for every layer but the first, ``dx``; each
  2·rows·in·out flops) over the exact rows its mini-batches hold, plus the forward GEMMs of its
  evaluations: at record points (``min(n_train, train_eval_size) + n_val`` rows each) and at the
  end (all training rows, and the test rows when it scored them);
- the **machine's GEMM rate** at the shapes the study uses (``measure_machine_gemm``, the
  ``machine_gemm`` rule): each GEMM timed in every layout NumPy offers, the fastest kept, at 1
  thread and at the training jobs' thread counts;
- the **stage table** (``cost_table``): per stage the jobs, the benchmark files' wall seconds
  and ``cpu_time``, the roofline seconds of its training jobs, their ratio, and the share of each
  run's loop spent evaluating at record points (``eval_fraction``, bounded by EVAL_BOUND).

The roofline of a run is the time its GEMMs alone would take at the machine's best measured
rate for each shape: a lower bound for any implementation using this BLAS. Everything else a job
does (gathering batches, elementwise passes, the update, starting Python, reading the data,
writing files) is the gap between its wall time and that bound.
"""
from __future__ import annotations

import csv
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

from ..nn.train import record_steps
from ..study import kinds
from .benchmarks import _num

INPUT_DIM = 3072  # CIFAR-10 images, flattened
N_CLASSES = 10
EVAL_BOUND = 0.10  # record-point evaluation may cost at most this share of a run's loop (issue 15)
EVAL_ROWS = 500  # rows of the evaluation GEMMs machine_gemm times (evaluate() runs 5000-row chunks: 10x the time)
OPS = ("forward", "dW", "dx", "eval")
DTYPES = ("float32", "float64")


# ----------------------------------------------------------------------------- flops
def layer_shapes(hidden, input_dim: int = INPUT_DIM, n_classes: int = N_CLASSES) -> list[tuple[int, int]]:
    """(in, out) of every affine layer of a network with these hidden widths."""
    sizes = [int(input_dim), *map(int, hidden or []), int(n_classes)]
    return list(zip(sizes[:-1], sizes[1:]))


def step_gemms(shapes, rows: int) -> list[dict]:
    """The GEMMs of one training step over `rows` images: forward and dW per layer, and dx for
    every layer but the first (nothing needs the gradient of the images)."""
    out = []
    for layer, (d_in, d_out) in enumerate(shapes, start=1):
        ops = ("forward", "dW", "dx") if layer > 1 else ("forward", "dW")
        out += [{"op": op, "in": d_in, "out": d_out, "rows": rows, "flops": 2 * rows * d_in * d_out} for op in ops]
    return out


def eval_gemms(shapes, rows: int) -> list[dict]:
    """The forward GEMMs of scoring `rows` images (no backward)."""
    return [{"op": "eval", "in": i, "out": o, "rows": rows, "flops": 2 * rows * i * o} for i, o in shapes]


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
    from ..study import plan

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
    from ..study import plan

    layers, batches = set(), set()
    for use in plan.training_uses(config):
        layers.update(layer_shapes(use.spec.get("hidden") or []))
        batches.add(int(use.spec.get("batch_size", 100)))
    return {"layers": [list(s) for s in sorted(layers)], "batch_rows": sorted(batches),
            "dtype": config.get("dtype", "float32")}


def gemm_candidates(op: str, m: int, d_in: int, d_out: int, dtype, rng) -> list[tuple[str, object, int]]:
    """(layout, thunk, flops) for each way NumPy can compute one GEMM of a layer (the layouts of
    bench/bench_epoch.py's roofline): W stored (in, out) or transposed; dW as (in, out) or (out, in)."""
    x = rng.standard_normal((m, d_in)).astype(dtype)            # (M, D_in)
    dout = rng.standard_normal((m, d_out)).astype(dtype)        # (M, D_out)
    W = rng.standard_normal((d_in, d_out)).astype(dtype)        # (D_in, D_out) C order
    WF = np.asfortranarray(W)                                   # the same, stored (D_out, D_in)
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


# ----------------------------------------------------------------------------- stages
# Display order; a stage not listed comes after these, by name.
STAGE_ORDER = ("data", "gates", "lr range", "search", "bonus: recipe search", "finals", "bonus: ablation", "bonus: aug vs λ",
               "bonus: init sensitivity", "report")
# A bonus run folder's stage, for benchmark files (which carry no metrics): from the kinds table.
BONUS_NAMES = {k.folder.split("/")[1]: k.stage for k in kinds.RUN_KINDS.values() if k.folder.startswith("bonus/")}
REPORT_JOBS = ("audit", "machine_gemm", "report")


def stage_key(rel) -> str:
    """The stage of a benchmark file (relative to benchmarks/) or of a run file (relative to the
    results folder): both layouts start with the same folders. Searches are per model."""
    parts = Path(rel).with_suffix("").parts
    head = parts[0]
    if head == "search" and len(parts) > 1:
        return f"search {parts[1]}"
    if head == "final":
        return "finals"
    if head == "bonus" and len(parts) > 1:
        return BONUS_NAMES.get(parts[1], f"bonus: {parts[1]}")
    if head == "lr_range":
        return "lr range"
    if len(parts) == 1:
        if head.startswith("gate_"):
            return "gates"
        if head == "download" or head.startswith("preprocess"):
            return "data"
        if head in REPORT_JOBS:
            return "report"
    return "/".join(parts[:-1]) or head


def stage_rank(stage: str, search_models=()) -> tuple:
    if stage.startswith("search "):
        model = stage[len("search "):]
        i = list(search_models).index(model) if model in search_models else len(search_models)
        return (STAGE_ORDER.index("search"), i, model)
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), 0, stage)


def read_benchmark(path, base) -> dict:
    """One benchmark file as {stage, file, s, cpu_time, max_rss, end}; `end` is the file's mtime
    (Snakemake writes it when the job ends), so end − s is when the job started."""
    p = Path(path)
    with open(p, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ValueError(f"{p}: benchmark file without a row")
    row = rows[-1]  # one row per repeat; the workflow runs each job once
    rel = p.resolve().relative_to(Path(base).resolve())
    return {"stage": stage_key(rel), "file": str(rel), "s": _num(row.get("s")),
            "cpu_time": _num(row.get("cpu_time")), "max_rss": _num(row.get("max_rss")),
            "end": p.stat().st_mtime}


def run_costs(metrics: dict, rel, machine: dict | None) -> dict:
    """One training run's row: stage, loop seconds, eval fraction, flops, roofline seconds."""
    g = run_gemms(metrics)
    roof = roofline_seconds(metrics, machine) if machine else None
    stage = kinds.stage_of(metrics) if "kind" in metrics else stage_key(rel)  # what the run recorded
    return {"stage": stage, "run": str(Path(rel).parent), "diverged": bool(metrics.get("diverged")),
            "threads": int(metrics.get("threads") or 1), "seconds": metrics.get("seconds"),
            "eval_seconds": metrics.get("eval_seconds"), "eval_fraction": metrics.get("eval_fraction"),
            "eval_flop_share": (g["flops"]["record_eval"] / (g["flops"]["train"] + g["flops"]["record_eval"])
                                if g["flops"]["train"] + g["flops"]["record_eval"] else math.nan),
            "flops": g["flops"]["total"], "roofline_seconds": roof["total"] if roof else None,
            "unmeasured_gemms": roof["unmeasured"] if roof else 0}


def _stats(values):
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return (statistics.fmean(vals), max(vals), len(vals)) if vals else (None, None, 0)


def cost_table(benchmarks: list[dict], runs: list[dict], search_models=(), bound: float = EVAL_BOUND,
               cores: int | None = None) -> dict:
    """The stage table from read_benchmark rows and run_costs rows.

    Per stage: jobs (benchmark files), wall seconds (sum of `s`), CPU seconds (sum of the
    benchmark's cpu_time column), the training runs and their roofline seconds, ratio =
    roofline / wall of the stage's jobs (the share of the GEMM limit the stage reached; a stage
    without training runs has none), the share of that wall time spent outside the runs' training
    loops (starting Python, loading the data, writing the run's files: wall − the loop seconds each
    run records), and the eval fraction (mean, max over runs that recorded it; over_bound when
    max > bound) beside the eval share of GEMM flops (every run).

    cores: the cores the study ran on (Snakemake's --cores); with them the total holds the
    elapsed floor, the roofline seconds spread over the cores, and its share of the elapsed time
    from the first job's start to the last job's end.
    """
    stages = {}
    for b in benchmarks:
        st = stages.setdefault(b["stage"], {"stage": b["stage"], "jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "runs": []})
        st["jobs"] += 1
        st["wall_s"] += 0.0 if math.isnan(b["s"]) else b["s"]
        st["cpu_s"] += 0.0 if math.isnan(b["cpu_time"]) else b["cpu_time"]
    for r in runs:
        st = stages.setdefault(r["stage"], {"stage": r["stage"], "jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "runs": []})
        st["runs"].append(r)
    rows = []
    for st in sorted(stages.values(), key=lambda s: stage_rank(s["stage"], search_models)):
        rs = st.pop("runs")
        roof = [r["roofline_seconds"] for r in rs if r["roofline_seconds"] is not None]
        mean_f, max_f, n_f = _stats(r["eval_fraction"] for r in rs)
        mean_sh, max_sh, _ = _stats(r["eval_flop_share"] for r in rs)
        roof_s = sum(roof) if roof else None
        # a run without loop seconds (diverged) leaves the stage's share unknown, not smaller
        loop_s = (sum(float(r["seconds"]) for r in rs)
                  if rs and all(r.get("seconds") is not None for r in rs) else None)
        outside = (st["wall_s"] - loop_s) / st["wall_s"] if loop_s is not None and st["wall_s"] > 0 else None
        rows.append({**st, "runs": len(rs), "roofline_s": roof_s, "loop_s": loop_s, "outside_share": outside,
                     "ratio": roof_s / st["wall_s"] if roof_s is not None and st["wall_s"] > 0 else None,
                     "eval_fraction_mean": mean_f, "eval_fraction_max": max_f, "eval_fraction_n": n_f,
                     "eval_share_mean": mean_sh, "eval_share_max": max_sh,
                     "over_bound": max_f is not None and max_f > bound})
    training = [r for r in rows if r["roofline_s"] is not None]
    total = {"jobs": sum(r["jobs"] for r in rows), "wall_s": sum(r["wall_s"] for r in rows),
             "cpu_s": sum(r["cpu_s"] for r in rows), "runs": sum(r["runs"] for r in rows),
             "roofline_s": sum(r["roofline_s"] for r in training) if training else None,
             "training_wall_s": sum(r["wall_s"] for r in training)}
    timed = [r for r in training if r["loop_s"] is not None]
    timed_wall = sum(r["wall_s"] for r in timed)
    total["outside_share"] = 1.0 - sum(r["loop_s"] for r in timed) / timed_wall if timed_wall > 0 else None
    total["ratio"] = (total["roofline_s"] / total["training_wall_s"]
                      if total["roofline_s"] is not None and total["training_wall_s"] > 0 else None)
    mean_f, max_f, n_f = _stats(r["eval_fraction"] for r in runs)
    total.update(eval_fraction_mean=mean_f, eval_fraction_max=max_f, eval_fraction_n=n_f,
                 over_bound=max_f is not None and max_f > bound)
    # The study's span: the report stage's jobs are left out, because machine_gemm measures the
    # machine whenever its code changes and the audit reruns with the report, so either may run
    # long after the study and stretch a span that should be the study's.
    ends = [(b["end"] - (0.0 if math.isnan(b["s"]) else b["s"]), b["end"]) for b in benchmarks
            if b.get("end") and b["stage"] != "report"]
    span = (max(e for _, e in ends) - min(s for s, _ in ends)) if ends else None
    total["cores"] = cores
    total["elapsed_floor_s"] = total["roofline_s"] / cores if cores and total["roofline_s"] is not None else None
    total["elapsed_ratio"] = (total["elapsed_floor_s"] / span
                              if total["elapsed_floor_s"] is not None and span else None)
    return {"rows": rows, "total": total, "span_s": span, "bound": bound,
            "unmeasured_gemms": sum(r["unmeasured_gemms"] for r in runs), "n_runs": len(runs)}


def collect_costs(benchmark_paths, benchmark_base, run_paths, results_dir, machine_path=None,
                  search_models=(), cores: int | None = None) -> dict | None:
    """The report's cost context: the stage table, and the machine's GEMM figures it used."""
    import json

    if not benchmark_paths:
        return None
    machine = json.loads(Path(machine_path).read_text()) if machine_path and Path(machine_path).exists() else None
    benches = [read_benchmark(p, benchmark_base) for p in sorted(map(str, benchmark_paths))]
    runs = []
    for p in sorted(map(str, run_paths or [])):
        rel = Path(p).resolve().relative_to(Path(results_dir).resolve())
        runs.append(run_costs(json.loads(Path(p).read_text()), rel, machine))
    table = cost_table(benches, runs, search_models, cores=cores)
    if machine:
        table["machine"] = {"peak_gflops": machine["peak_gflops"], "threads": machine["threads"],
                            "eval_rows": machine.get("eval_rows"), "blas": machine.get("blas", []),
                            "n_gemms": len(machine["gemms"]), "seconds": machine.get("seconds")}
    return table

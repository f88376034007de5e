"""The study's cost where it is spent: time per stage against the GEMM roofline of its jobs.

The flop model of a run and the machine's GEMM rates live in ``study/roofline.py`` (shared
with the ``machine_gemm`` rule and ``bench/``); this module is the report's **stage table**
(``cost_table``): per stage the jobs, the benchmark files' wall seconds and ``cpu_time``, the
roofline seconds of its training jobs, their ratio, and the share of each run's loop spent
evaluating at record points (``eval_fraction``, bounded by EVAL_BOUND).
"""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from ..study import kinds
from ..study.roofline import roofline_seconds, run_gemms
from .benchmarks import _num

EVAL_BOUND = 0.10  # record-point evaluation may cost at most this share of a run's loop (issue 15)


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

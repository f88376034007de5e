"""Wall time and peak memory per stage, from the Snakemake benchmark files of this config's jobs.

The report rule passes the benchmark file of every job the config asks for (each derived from
its rule's own ``benchmark:`` path), so leftovers of another config under the same results
folder are never counted. A file's stage is its folder below ``benchmarks/`` (``search/mlp50/
coarse``, ``final/bonus``, ``bonus/ablation``), or its name for a one-job rule (``gate_overfit``).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def stage_of(path, base) -> str:
    rel = Path(path).resolve().relative_to(Path(base).resolve()).with_suffix("")
    return "/".join(rel.parent.parts) if rel.parent.parts else rel.name


def collect_benchmarks(paths, base) -> dict:
    """Per-stage totals over the given TSVs (``base``: the benchmarks folder). Missing files raise."""
    groups: dict[str, dict] = {}
    paths = sorted(map(Path, paths or []))
    for p in paths:
        stage = stage_of(p, base)
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for row in rows:
            g = groups.setdefault(stage, {"stage": stage, "jobs": 0, "seconds": 0.0, "max_seconds": 0.0,
                                          "max_rss_mb": math.nan, "cpu_time": 0.0})
            s, rss, cpu = _num(row.get("s")), _num(row.get("max_rss")), _num(row.get("cpu_time"))
            g["jobs"] += 1
            g["seconds"] += 0.0 if math.isnan(s) else s
            g["max_seconds"] = max(g["max_seconds"], 0.0 if math.isnan(s) else s)
            g["cpu_time"] += 0.0 if math.isnan(cpu) else cpu
            if not math.isnan(rss):
                g["max_rss_mb"] = rss if math.isnan(g["max_rss_mb"]) else max(g["max_rss_mb"], rss)
    rows = list(groups.values())
    rss = [g["max_rss_mb"] for g in rows if not math.isnan(g["max_rss_mb"])]
    return {"rows": rows, "files": len(paths), "total_seconds": sum(g["seconds"] for g in rows),
            "total_jobs": sum(g["jobs"] for g in rows), "peak_rss_mb": max(rss) if rss else None}

"""Build the report: read the outputs and the audit, draw the figures, render both files."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..atomic import write_text
from . import figures as figs
from .collect import collect
from .render import lam, pct, pm, render, sci  # noqa: F401  (the formats, for callers and tests)


def build_report(results_dir, config: dict, html_path, md_path, repo_dir=None, log=print,
                 audit_path=None, benchmark_paths=None, run_paths=None, machine_gemm_path=None,
                 cores=None) -> dict:
    """report.html and report.md from the outputs below results_dir; returns the context.

    audit_path: the audit rule's audit.json (default {results}/report/audit.json); run_paths and
    machine_gemm_path: the cost table's training runs and machine GEMM rates (costs.py); cores:
    the cores the study ran on (its elapsed floor).
    """
    t0 = time.perf_counter()
    audit_path = Path(audit_path) if audit_path else Path(results_dir) / "report" / "audit.json"
    audit = json.loads(audit_path.read_text())
    ctx = collect(results_dir, config, audit, benchmark_paths, repo_dir, run_paths, machine_gemm_path, cores)
    t1 = time.perf_counter()
    figures = figs.make_figures(ctx)
    t2 = time.perf_counter()
    html, md = render(ctx, figures)
    write_text(html_path, html)
    write_text(md_path, md)
    log(f"report: collect {t1 - t0:.2f} s, figures {t2 - t1:.2f} s, render {time.perf_counter() - t2:.2f} s; "
        f"{len(html) / 1e6:.2f} MB html, {len(md) / 1e3:.1f} kB md")
    return ctx

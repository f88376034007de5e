"""Build the report: read the outputs and the audit, draw the figures, render both files."""
from __future__ import annotations

import time

from ..atomic import write_text
from . import figures as figs
from .collect import collect
from .render import lam, pct, pm, render, sci  # noqa: F401  (the formats, for callers and tests)


def build_report(inputs, config: dict, html_path, md_path, results_dir, repo_dir=None, log=print,
                 cores=None) -> dict:
    """report.html and report.md from the report rule's named inputs (name -> path or paths;
    inputs.py); returns the context. results_dir: the results folder (the base of the cost
    table's paths); cores: the cores the study ran on (its elapsed floor).
    """
    t0 = time.perf_counter()
    ctx = collect(inputs, config, results_dir, repo_dir, cores)
    t1 = time.perf_counter()
    figures = figs.make_figures(ctx)
    t2 = time.perf_counter()
    html, md = render(ctx, figures)
    write_text(html_path, html)
    write_text(md_path, md)
    log(f"report: collect {t1 - t0:.2f} s, figures {t2 - t1:.2f} s, render {time.perf_counter() - t2:.2f} s; "
        f"{len(html) / 1e6:.2f} MB html, {len(md) / 1e3:.1f} kB md")
    return ctx

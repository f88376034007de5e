"""The study's final report: every number read from the workflow's outputs, rendered to one
self-contained HTML file (figures as data URIs) and a text-only Markdown twin.

    collect.collect(results_dir, config)  -> context dict (plain data, no figures)
    figures.make_figures(context)         -> {name: data URI}
    build.build_report(results_dir, config, html_path, md_path)

No Snakemake dependency: workflow/scripts/report.py is a thin wrapper around build_report.
"""
from .build import build_report, render  # noqa: F401
from .collect import PUBLISHED  # noqa: F401  (the module `collect` stays importable by name)

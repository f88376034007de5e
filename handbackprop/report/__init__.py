"""The study's final report, divided by what each part does:

    audit.audit(...), audit.check(...)   the checks (code hashes, schedule, metrics provenance via
                                         rescore.py) -> audit.json, run by the `audit` rule
    collect.collect(...)                 read every output (and audit.json) into a context dict
    provenance, benchmarks               git, machine, versions, config; wall time and memory
    figures.make_figures(context)        {name: PNG data URI}
    render.render(context, figures)      (html, markdown) from one partial per section
    build.build_report(...)              all of the above, written to report.html / report.md

No Snakemake dependency: workflow/scripts/report.py and audit.py are thin wrappers.
"""
from .build import build_report  # noqa: F401
from .collect import PUBLISHED  # noqa: F401
from .render import render  # noqa: F401

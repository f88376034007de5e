"""Snakemake script: the final report (self-contained HTML and text-only Markdown) from every output."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.report.build import build_report

    sm = snakemake  # noqa: F821
    results = Path(sm.output.html).parents[1]  # {results}/report/report.html
    # The rule's named inputs are every file the report reads.
    build_report(sm.input, sm.params.config, sm.output.html, sm.output.md, results,
                 repo_dir=Path(sm.scriptdir).resolve().parents[1], log=print, cores=sm.params.cores)

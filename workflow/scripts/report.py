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
    build_report(results, sm.params.config, sm.output.html, sm.output.md,
                 repo_dir=Path(sm.scriptdir).resolve().parents[1], log=print, audit_path=sm.input.audit,
                 benchmark_paths=sm.input.benchmarks, run_paths=sm.input.get("runs"),
                 machine_gemm_path=sm.input.get("machine_gemm"), cores=sm.params.cores)

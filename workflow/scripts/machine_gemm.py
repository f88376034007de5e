"""Snakemake script: this machine's best-layout GEMM rates at the shapes the study uses."""
import sys
from pathlib import Path

# Import this checkout's package, never another install.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.atomic import write_json
    from handbackprop.study import roofline

    sm = snakemake  # noqa: F821
    result = roofline.measure_machine_gemm(sm.params.shapes, threads=sm.params.threads, log=print)
    write_json(sm.output.json, result)

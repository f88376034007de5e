"""Snakemake script: one model's learning-rate range test (curve JSON + CSV)."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.atomic import write_json, write_text
    from handbackprop.study import lr_range

    sm = snakemake  # noqa: F821
    verified_hash = stage.require_verified(sm.input.gates)
    result = lr_range.run(Path(sm.input.stats).parent, sm.params.spec, sm.params.settings,
                          sm.params.dtype, sm.wildcards.model, log=print)
    result.update(**stage.still_verified(verified_hash), threads=sm.threads, rule=sm.rule)
    write_text(sm.output.csv, lr_range.curve_csv(result))
    write_json(sm.output.json, result)

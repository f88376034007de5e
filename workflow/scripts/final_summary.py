"""Snakemake script: test accuracy over seeds (mean, std), the ensemble of those seeds and each
seed's snapshot ensemble."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.atomic import write_json
    from handbackprop.study import tables

    import json

    sm = snakemake  # noqa: F821
    # The fine search table the λ came from (the model's own or its lam_from's): the headline
    # interval adds the λ choice's uncertainty from it. Absent from an older rule: seeds only.
    fine_path = getattr(sm.input, "fine_table", None)
    fine_table = json.loads(Path(str(fine_path)).read_text()) if fine_path else None
    summary = tables.final_summary(
        sm.input.runs, sm.input.weights, Path(sm.input.stats).parent, sm.wildcards.model,
        ensemble=sm.params.ensemble, dtype=sm.params.dtype, snapshot_paths=sm.input.snapshots,
        fine_table=fine_table)
    write_json(sm.output.json, summary)
    print(summary["text"])

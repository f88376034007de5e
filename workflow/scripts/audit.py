"""Snakemake script: the audit (code hashes, schedules, metrics rescored from the weights, every
choice recomputed from its runs) -> audit.json.

Fails the job, naming each run and field, when a run's saved weights do not rescore to the
figures in its metrics.json, or naming the file and both values when a recorded choice differs
from the one its runs imply."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.atomic import write_json
    from handbackprop.audit import runs as audit
    from handbackprop.audit import selections

    sm = snakemake  # noqa: F821
    results = Path(sm.output.json).parents[1]  # {results}/report/audit.json
    result = audit.audit(results, sm.input.runs, sm.input.gates, sm.input.summaries,
                         cap=sm.params.sample, log=print)
    result["selections"] = selections.audit_selections(results, sm.params.selections)
    audit.check(result)  # raises AuditFailed naming every run and field that differs
    if not result["selections"]["passed"]:
        raise audit.AuditFailed(selections.failure_message(result["selections"]))
    write_json(sm.output.json, result)

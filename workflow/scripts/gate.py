"""Snakemake script: run one gate (named by params.gate); fail the job, and so the DAG, if it fails."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.atomic import write_json, write_text  # noqa: E402
    from handbackprop.data.splits import load_split  # noqa: E402
    from handbackprop.gates.gradcheck import markdown_table  # noqa: E402
    from handbackprop.gates.runner import run_gate  # noqa: E402
    from handbackprop import code_hash  # noqa: E402

    sm = snakemake  # noqa: F821
    data = load_split(Path(sm.input.stats).parent)
    evidence = run_gate(sm.params.gate, data["X_train"], data["y_train"], sm.params.settings)
    evidence["code_hash"] = code_hash("nn")
    evidence["settings"] = sm.params.settings
    if sm.params.gate == "gradcheck" and evidence["variants"]:
        print(markdown_table(evidence))
    for failure in evidence["failures"]:
        print("FAILED:", failure)
    if not evidence["passed"]:
        raise SystemExit(f"{sm.params.gate} gate failed: " + "; ".join(evidence["failures"]))
    if "table" in sm.output.keys():
        write_text(sm.output.table, markdown_table(evidence))
    write_json(sm.output.json, evidence)
    print(f"{sm.params.gate} gate passed; code hash {evidence['code_hash'][:12]}")

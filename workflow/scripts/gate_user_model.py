"""Snakemake script: the network gates (handbackprop.check.network) on a user's model, on the
search split's own images; fail the job, and so the user model's searches and finals, if one
check fails."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop import code_hash  # noqa: E402
    from handbackprop.atomic import write_json  # noqa: E402
    from handbackprop.check.gate import dumps  # noqa: E402
    from handbackprop.data.splits import load_split  # noqa: E402
    from handbackprop.study import user_gate  # noqa: E402

    sm = snakemake  # noqa: F821
    # the training jobs' require_verified reads every gate file's code hash: the study's loop
    # and metrics (nn/) train this model too, verified by the study's gates (an input)
    stage.require_verified(sm.input.gates)
    data = load_split(Path(sm.input.stats).parent)
    n = sm.params.n_images
    evidence = user_gate.gate(sm.params.target, data["X_train"][:n], data["y_train"][:n],
                               seed=sm.params.seed)
    evidence.update(model=sm.wildcards.model, code_hash=code_hash("nn"))
    print(dumps(evidence))
    for name, check in evidence.get("evidence", {}).get("checks", {}).items():
        print(f"{'ok  ' if check['passed'] else 'FAIL'} {name}: {check['summary']}")
    if not evidence["passed"]:
        raise SystemExit(f"{sm.params.target} failed its gate, so none of its runs train: "
                         + "; ".join(evidence["failures"]))
    write_json(sm.output.json, evidence)
    print(f"{sm.params.target} passed its gate")

"""Snakemake script: one training run (search point, final run or bonus experiment)."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.runfiles import write_run
    from handbackprop.study import kinds, resolve, runs

    sm = snakemake  # noqa: F821
    verified_hash = stage.require_verified(sm.input.gates)
    # config spec → chosen recipe → ablation switches → η (the range test's, or fixed in
    # config.yaml: then there is no eta input)
    spec, eta = resolve.resolve(sm.params.spec, sm.params.eta_source, recipe=sm.input.get("recipe"),
                                switches=sm.params.switches, range_result=sm.input.get("eta") or None)
    net, result, metrics = runs.run(
        Path(sm.input.stats).parent, spec, float(sm.params.lam), sm.params.cycles,
        sm.params.seed, sm.params.dtype, sm.params.evaluate_test,
        record_divergence=sm.params.record_divergence, snapshots=sm.params.snapshots, log=print)
    model = sm.wildcards.get("model") or sm.params.model  # bonus rules name their model
    metrics.update(runs.job_record(kinds.kind_of_rule(sm.rule), Path(sm.input.stats).parent, model, eta,
                                   stage.still_verified(verified_hash), sm.threads, sm.rule,
                                   dict(sm.wildcards.items())))
    write_run(dict(sm.output.items()), net, result, metrics)

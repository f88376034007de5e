"""Snakemake script: every λ of one search stage of one model at one seed, in one job.

The runs train as one stack (nn/stack.py) where the spec allows, else one after the other; each
is written into its own run folder below the job's output directory, with the files and
metrics.json a single-run job writes. The per-λ rules (coarse_run, fine_run, aug_lambda_run)
copy them into the study's run folders, so every reader sees one folder per (λ, seed).
"""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.runfiles import write_run
    from handbackprop.study import kinds, resolve, runs, stack_runs

    sm = snakemake  # noqa: F821
    verified_hash = stage.require_verified(sm.input.gates)
    spec, eta = resolve.resolve(sm.params.spec, sm.params.eta_source, switches=sm.params.switches,
                                range_result=sm.input.get("eta") or None)
    labels = list(sm.params.lams)  # folder label -> λ
    split_dir = Path(sm.input.stats).parent
    results = stack_runs.run_grid(split_dir, spec, [float(sm.params.lams[la]) for la in labels],
                                  sm.params.seed, sm.params.cycles, sm.params.dtype, log=print)
    out = Path(sm.output.runs)
    verified, stacked = stage.still_verified(verified_hash), stack_runs.stackable(spec)
    for label, (net, result, metrics) in zip(labels, results):
        # what the per-λ job that copies this run records as its own: its rule and wildcards
        wildcards = {**sm.params.run_wildcards, "lam": label, "seed": str(sm.params.seed)}
        metrics.update(runs.job_record(sm.params.kind, split_dir, sm.params.model, eta, verified, sm.threads,
                                       kinds.RUN_KINDS[sm.params.kind].rule, wildcards), stacked=stacked)
        folder = out / label
        folder.mkdir(parents=True, exist_ok=True)
        write_run({"metrics": folder / "metrics.json", "history": folder / "history.csv",
                   "weights": folder / "weights.npz"}, net, result, metrics)

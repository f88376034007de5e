"""Snakemake script: one training run (search point, final run or bonus experiment)."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    import json  # noqa: E402

    from handbackprop import experiment, search  # noqa: E402
    from handbackprop.nn import code_hash  # noqa: E402

    sm = snakemake  # noqa: F821
    verified_hash = stage.require_verified(sm.input.gates)

    def resolve_lambda(how: dict) -> float:
        """A fixed exponent, a point of the fine grid derived from the coarse table, or the best."""
        if "log10" in how:
            return 10.0 ** how["log10"]
        table = json.loads(Path(sm.input.lam_source).read_text())
        if "fine_index" in how:
            exps = search.fine_exponents(table["rows"], how["n"], how["half_width"],
                                         how["l_min"], how["l_max"])
            return 10.0 ** exps[how["fine_index"]]
        return table["best"]["lambda"]

    lam = resolve_lambda(sm.params.lam)
    net, result, metrics = experiment.run(
        Path(sm.input.stats).parent, sm.params.spec, lam, sm.params.cycles, sm.params.seed,
        sm.params.dtype, sm.params.evaluate_test, log=print)
    if code_hash() != verified_hash:
        raise stage.UnverifiedCode("the model code changed while this job ran")
    metrics.update(code_hash=verified_hash, threads=sm.threads, rule=sm.rule,
                   wildcards=dict(sm.wildcards.items()))
    experiment.write_run(dict(sm.output.items()), net, result, metrics)

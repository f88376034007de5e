# Input functions of the report rules (workflow/rules/report.smk): the files of every training
# run and the benchmark file of every job this config asks for.


TRAINING_RULES = [
    "coarse_run",
    "fine_run",
    "final_run",
    "ablation_run",
    "aug_lambda_run",
]
SINGLE_JOB_RULES = [
    "download",
    "gate_gradcheck",
    "gate_overfit",
    "gate_trajectory",
    "gate_bug_table",
]


def training_files(name):
    """One file of every training run this config asks for (beside its metrics.json)."""
    return lambda wildcards: [
        str(Path(r).with_name(name)) for r in training_runs(wildcards)
    ]


def benchmark_files(wildcards):
    """The benchmark file of every job this config asks for, each from its own rule's
    `benchmark:` path (so leftovers of other configs are never read)."""
    out = [str(getattr(rules, r).benchmark) for r in SINGLE_JOB_RULES]
    out += expand(str(rules.preprocess.benchmark), split=["search", "final"])
    for run in training_runs(wildcards):
        for name in TRAINING_RULES:
            made_by = getattr(rules, name)
            match = made_by.output.metrics.match(run)
            if match:
                out.append(made_by.benchmark.apply_wildcards(match.groupdict()))
                break
        else:
            raise ValueError(f"{run}: made by none of {TRAINING_RULES}")
    return out

# The gates: each reads real preprocessed training images and the model code, and fails the
# DAG when a figure is over its threshold. Training rules take their evidence as input.


rule gate_gradcheck:
    input:
        split_files("search"),
        code=code_of("gate"),
        stats=split_stats("search"),
    output:
        json=f"{R}/gates/gradcheck.json",
        table=report(
            f"{R}/gates/gradcheck.md",
            caption="../report/gradcheck.rst",
            category="Gates",
        ),
    log:
        f"{R}/logs/gate_gradcheck.log",
    benchmark:
        f"{R}/benchmarks/gate_gradcheck.tsv"
    conda:
        "../../envs/model.yaml"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=5,
    params:
        gate="gradcheck",
        settings=config["gates"]["gradcheck"],
    script:
        "../scripts/gate.py"


# The overfit and trajectory gates run once the gradients are proven.
use rule gate_gradcheck as gate_overfit with:
    input:
        split_files("search"),
        code=code_of("gate"),
        stats=split_stats("search"),
        gradcheck=rules.gate_gradcheck.output.json,
    output:
        json=f"{R}/gates/overfit.json",
    log:
        f"{R}/logs/gate_overfit.log",
    benchmark:
        f"{R}/benchmarks/gate_overfit.tsv"
    params:
        gate="overfit",
        settings=config["gates"]["overfit"],


use rule gate_overfit as gate_trajectory with:
    output:
        json=f"{R}/gates/trajectory.json",
    log:
        f"{R}/logs/gate_trajectory.log",
    benchmark:
        f"{R}/benchmarks/gate_trajectory.tsv"
    params:
        gate="trajectory",
        settings=config["gates"]["trajectory"],


# The searches train their λ as one stack: this gate proves the stack equals the runs one by one.
use rule gate_overfit as gate_stacked with:
    output:
        json=STACKED_GATE,
    log:
        f"{R}/logs/gate_stacked.log",
    benchmark:
        f"{R}/benchmarks/gate_stacked.tsv"
    params:
        gate="stacked",
        settings=config["gates"]["stacked"],


rule gate_bug_table:
    input:
        split_files("search"),
        code=code_of("bug_table"),
        stats=split_stats("search"),
    output:
        json=f"{R}/gates/bug_table.json",
        csv=report(
            f"{R}/gates/bug_table.csv",
            caption="../report/bug_table.rst",
            category="Gates",
        ),
    log:
        f"{R}/logs/gate_bug_table.log",
    benchmark:
        f"{R}/benchmarks/gate_bug_table.tsv"
    conda:
        "../../envs/model.yaml"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=10,
    params:
        settings=plan.bug_table_settings(config),
    script:
        "../scripts/bug_table.py"

# The gates: each reads real preprocessed training images and the model code, and fails the
# DAG when a figure is over its threshold. Training rules take their evidence as input.


rule gate_gradcheck:
    input:
        split_files("search"),
        code=MODEL_CODE,
        stats=split_stats("search"),
    output:
        json=f"{R}/gates/gradcheck.json",
        table=report(f"{R}/gates/gradcheck.md", caption="../report/gradcheck.rst", category="Gates"),
    params:
        gate="gradcheck",
        settings=gate_settings("gradcheck"),
    log:
        f"{R}/logs/gate_gradcheck.log",
    benchmark:
        f"{R}/benchmarks/gate_gradcheck.tsv"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/gate.py"


rule gate_overfit:
    input:
        split_files("search"),
        code=MODEL_CODE,
        stats=split_stats("search"),
        gradcheck=rules.gate_gradcheck.output.json,
    output:
        json=f"{R}/gates/overfit.json",
    params:
        gate="overfit",
        settings=gate_settings("overfit"),
    log:
        f"{R}/logs/gate_overfit.log",
    benchmark:
        f"{R}/benchmarks/gate_overfit.tsv"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/gate.py"


rule gate_trajectory:
    input:
        split_files("search"),
        code=MODEL_CODE,
        stats=split_stats("search"),
        gradcheck=rules.gate_gradcheck.output.json,
    output:
        json=f"{R}/gates/trajectory.json",
    params:
        gate="trajectory",
        settings=gate_settings("trajectory"),
    log:
        f"{R}/logs/gate_trajectory.log",
    benchmark:
        f"{R}/benchmarks/gate_trajectory.tsv"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/gate.py"


rule gate_bug_table:
    input:
        split_files("search"),
        code=MODEL_CODE,
        stats=split_stats("search"),
    output:
        json=f"{R}/gates/bug_table.json",
        csv=report(f"{R}/gates/bug_table.csv", caption="../report/bug_table.rst", category="Gates"),
    params:
        settings=bug_table_settings(),
    log:
        f"{R}/logs/gate_bug_table.log",
    benchmark:
        f"{R}/benchmarks/gate_bug_table.tsv"
    threads: THREADS["gates"]
    resources:
        mem_mb=800,
        runtime=10,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/bug_table.py"

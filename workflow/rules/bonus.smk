# Bonus experiments: the ablation of each improvement, and augmentation against lambda.


rule ablation_run:
    input:
        split_files("final"),
        stats=split_stats("final"),
        gates=GATE_EVIDENCE,
        lam_source=lambda w: f"{R}/search/{ABL['model']}/fine.json",
    output:
        metrics=f"{R}/bonus/ablation/{{variant}}/seed{{seed}}/metrics.json",
        history=f"{R}/bonus/ablation/{{variant}}/seed{{seed}}/history.csv",
        weights=f"{R}/bonus/ablation/{{variant}}/seed{{seed}}/weights.npz",
    params:
        spec=lambda w: model_spec(ABL["model"], **ablation_variants()[w.variant]),
        lam={"best": True},
        cycles=ABL["cycles"] if ABL else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=True,
    log:
        f"{R}/logs/bonus/ablation/{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/bonus/ablation/{{variant}}_seed{{seed}}.tsv"
    threads: THREADS["final"]
    resources:
        mem_mb=train_mem_mb(ABL["model"]) if ABL else 1000,
        runtime=train_runtime(ABL["model"], ABL["cycles"]) if ABL else 5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/train_run.py"


rule ablation_table:
    input:
        split_files("final"),
        stats=split_stats("final"),
        runs=ablation_runs,
    output:
        json=f"{R}/bonus/ablation.json",
        csv=report(f"{R}/bonus/ablation.csv", caption="../report/ablation.rst", category="Bonus"),
    params:
        dtype=config["dtype"],
    log:
        f"{R}/logs/bonus/ablation_table.log",
    threads: THREADS["final"]
    resources:
        mem_mb=1500,
        runtime=5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/ablation_table.py"


rule aug_lambda_run:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=GATE_EVIDENCE,
    output:
        metrics=f"{R}/bonus/aug_vs_lambda/{{aug}}/l{{i}}_seed{{seed}}/metrics.json",
        history=f"{R}/bonus/aug_vs_lambda/{{aug}}/l{{i}}_seed{{seed}}/history.csv",
    wildcard_constraints:
        aug="aug|noaug",
    params:
        spec=lambda w: model_spec(
            AVL["model"],
            flip=AVL["flip"] if w.aug == "aug" else False,
            max_shift=AVL["max_shift"] if w.aug == "aug" else 0),
        lam=lambda w: {"log10": AVL["exponents"][int(w.i)]},
        cycles=AVL["cycles"] if AVL else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=False,
    log:
        f"{R}/logs/bonus/aug_vs_lambda/{{aug}}_l{{i}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/bonus/aug_vs_lambda/{{aug}}_l{{i}}_seed{{seed}}.tsv"
    threads: THREADS["search"]
    resources:
        mem_mb=train_mem_mb(AVL["model"]) if AVL else 1000,
        runtime=train_runtime(AVL["model"], AVL["cycles"]) if AVL else 5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/train_run.py"


rule aug_vs_lambda:
    input:
        runs=aug_lambda_runs(),
    output:
        json=f"{R}/bonus/aug_vs_lambda.json",
        csv=report(f"{R}/bonus/aug_vs_lambda.csv", caption="../report/aug_vs_lambda.rst", category="Bonus"),
    log:
        f"{R}/logs/bonus/aug_vs_lambda.log",
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/aug_vs_lambda.py"

# Final runs: the fine search's best lambda, all but n_val training images, test set scored.


rule final_run:
    priority: 10
    input:
        split_files("final"),
        stats=split_stats("final"),
        gates=GATE_EVIDENCE,
        lam_source=f"{R}/search/{{model}}/fine.json",
    output:
        metrics=f"{R}/final/{{model}}/seed{{seed}}/metrics.json",
        history=f"{R}/final/{{model}}/seed{{seed}}/history.csv",
        weights=f"{R}/final/{{model}}/seed{{seed}}/weights.npz",
    params:
        spec=lambda w: model_spec(w.model),
        lam={"best": True},
        cycles=FINAL["cycles"],
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=True,
    log:
        f"{R}/logs/final/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/final/{{model}}/seed{{seed}}.tsv"
    threads: THREADS["final"]
    resources:
        mem_mb=lambda w: train_mem_mb(w.model),
        runtime=lambda w: train_runtime(w.model, FINAL["cycles"]),
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/train_run.py"


rule final_summary:
    priority: 10
    input:
        split_files("final"),
        stats=split_stats("final"),
        runs=lambda w: final_runs(w.model),
        weights=lambda w: final_runs(w.model, "weights.npz"),
    output:
        json=report(f"{R}/final/{{model}}/summary.json", caption="../report/final_summary.rst",
                    category="Final runs", labels={"model": "{model}"}),
    params:
        ensemble=lambda w: w.model in FINAL["ensemble"],
        dtype=config["dtype"],
    log:
        f"{R}/logs/final/{{model}}/summary.log",
    threads: THREADS["final"]
    resources:
        mem_mb=1500,
        runtime=5,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/final_summary.py"

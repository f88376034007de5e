# The report: an audit of every training run (code hashes, schedule, metrics rescored from the
# saved weights), then one self-contained HTML file and a text-only Markdown twin.


rule audit:
    input:
        gates=GATE_EVIDENCE,
        runs=training_runs,
        weights=training_files("weights.npz"),
        histories=training_files("history.csv"),
        summaries=[f"{R}/final/{m}/summary.json" for m in FINAL["models"]],
        splits=[*split_files("search"), *split_files("final")],
        stats=[split_stats("search"), split_stats("final")],
        tables=selection_files(),
        code=code_of("audit"),
    output:
        json=f"{R}/report/audit.json",
    log:
        f"{R}/logs/audit.log",
    benchmark:
        f"{R}/benchmarks/audit.tsv"
    conda:
        "../../envs/report.yaml"
    # Each run is rescored with its own recorded thread count (bit-identical BLAS results).
    threads: max(THREADS["search"], THREADS["final"])
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        sample=config.get("report", {}).get("audit_sample"),
        selections=plan.selection_plan(config),
    script:
        "../scripts/audit.py"


# The machine's GEMM rate at the shapes the study uses (best layout, 1 thread and the training
# jobs' thread counts): the roofline the report's cost table holds every training job against.
rule machine_gemm:
    input:
        code=code_of("machine_gemm"),
    output:
        json=MACHINE_GEMM,
    log:
        f"{R}/logs/machine_gemm.log",
    benchmark:
        f"{R}/benchmarks/machine_gemm.tsv"
    conda:
        "../../envs/report.yaml"
    threads: max(THREADS["search"], THREADS["final"])
    resources:
        mem_mb=500,
        runtime=5,
    params:
        shapes=plan_shapes(),
        threads=gemm_thread_counts(),
    script:
        "../scripts/machine_gemm.py"


rule report:
    # Every file the report reads, by name (handbackprop/report/inputs.py): the report never
    # rebuilds a path. A list's files each say which model, stage or seed they hold.
    input:
        audit=rules.audit.output.json,
        gradcheck=rules.gate_gradcheck.output.json,
        overfit=rules.gate_overfit.output.json,
        trajectory=rules.gate_trajectory.output.json,
        stacked=rules.gate_stacked.output.json,
        bug_table=rules.gate_bug_table.output.json,
        user_gates=user_gate_targets(),
        searches=expand(
            f"{R}/search/{{model}}/{{stage}}.json",
            model=config["search"]["models"],
            stage=["coarse", "fine"],
        ),
        finals=[f"{R}/final/{m}/summary.json" for m in FINAL["models"]],
        lr_range=range_targets(),
        # one final run per position in all three lists
        final_runs=final_files("metrics.json"),
        histories=final_files("history.csv"),
        weights=final_files("weights.npz"),
        # a bonus experiment the config leaves out is an empty input
        recipe=RECIPE_JSON if RECIPE else [],
        ablation=f"{R}/bonus/ablation.json" if ABL else [],
        aug_vs_lambda=f"{R}/bonus/aug_vs_lambda.json" if AVL else [],
        init_sensitivity=f"{R}/bonus/init_sensitivity.json" if INIT else [],
        # The init-sensitivity curves are drawn from each run's history.
        init_histories=lambda wildcards: [
            str(Path(r).with_name("history.csv")) for r in init_runs(wildcards)
        ],
        benchmarks=benchmark_files,
        # every training run's metrics.json: its GEMM flops and its evaluation time
        runs=training_runs,
        machine_gemm=MACHINE_GEMM,
        code=code_of("report"),
        download=f"{R}/data/download.json",
        search_stats=split_stats("search"),
        final_stats=split_stats("final"),
        norm=f"{R}/data/final/norm.npz",
        X_train=f"{R}/data/final/X_train.npy",
        y_train=f"{R}/data/final/y_train.npy",
    output:
        html=report(
            f"{R}/report/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
        md=f"{R}/report/report.md",
    log:
        f"{R}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    threads: THREADS["report"]
    resources:
        mem_mb=1500,
        runtime=10,
    params:
        config=config,  # the whole config: any change to it reruns the report
        cores=run_cores(),
    script:
        "../scripts/report.py"

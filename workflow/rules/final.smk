# Final runs: the fine search's best lam, all but n_val training images, test set scored; the
# summary adds the seed ensemble and each run's snapshot ensemble (its cycle-end weights).


# Every single-run training job of the study (final, recipe, ablation, init) has this rule's
# shape: the others derive from it with `use rule`.
rule final_run:
    input:
        split_files("final"),
        stats=split_stats("final"),
        gates=lambda w: gate_evidence(w.model),
        module=lambda w: user_module(w.model),
        code=code_of("train_run"),
        lam_source=lambda w: table_path(plan.lam_model(config, w.model), "fine"),
        recipe=lambda w: recipe_input(w.model),
        eta=lambda w: eta_input(w.model),
    output:
        metrics=f"{R}/final/{{model}}/seed{{seed}}/metrics.json",
        history=f"{R}/final/{{model}}/seed{{seed}}/history.csv",
        weights=f"{R}/final/{{model}}/seed{{seed}}/weights.npz",
        snapshots=f"{R}/final/{{model}}/seed{{seed}}/snapshots.npz",
    log:
        f"{R}/logs/final/{{model}}/seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/final/{{model}}/seed{{seed}}.tsv"
    priority: 10
    conda:
        "../../envs/model.yaml"
    threads: THREADS["final"]
    resources:
        mem_mb=lambda w: plan.train_mem_mb(config, w.model),
        runtime=lambda w: plan.train_runtime(config, w.model, FINAL["cycles"]),
    params:
        spec=lambda w: plan.model_spec(config, w.model),
        lam=lambda w: final_lam(w.model),
        cycles=FINAL["cycles"],
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=True,
        record_divergence=False,  # a final run that diverges fails loudly
        snapshots=True,  # the weights at each cycle end: the run's snapshot ensemble
        switches={},  # ablation switches, applied after a chosen recipe (bonus.smk)
        eta_source=lambda w: plan.eta_source(config, w.model),
    script:
        "../scripts/train_run.py"


rule final_summary:
    input:
        split_files("final"),
        stats=split_stats("final"),
        runs=lambda w: final_runs(w.model),
        weights=lambda w: final_runs(w.model, "weights.npz"),
        snapshots=lambda w: final_runs(w.model, "snapshots.npz"),
        # the surface the λ was chosen on: its selection cost enters the headline interval
        # (through the checkpoint: a plain path to a checkpoint's output that reruns in the same
        # invocation left this job's run inputs unresolved)
        fine_table=lambda w: checkpoints.search_table.get(
            model=plan.lam_model(config, w.model), stage="fine"
        ).output.json,
        code=code_of("final_summary"),
    output:
        json=report(
            f"{R}/final/{{model}}/summary.json",
            caption="../report/final_summary.rst",
            category="Final runs",
            labels={"model": "{model}"},
        ),
    log:
        f"{R}/logs/final/{{model}}/summary.log",
    priority: 10
    conda:
        "../../envs/model.yaml"
    threads: THREADS["final"]
    resources:
        mem_mb=1500,
        runtime=5,
    params:
        ensemble=lambda w: w.model in FINAL["ensemble"],
        dtype=config["dtype"],
    script:
        "../scripts/final_summary.py"

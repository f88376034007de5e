# Coarse then fine lam search, one job per (lam, seed); the table of a search has one row per
# lam (mean, std, standard error over its seeds) and chooses the best mean. Every training job of the study
# (search, final, bonus) has this rule's shape: the others derive from it with `use rule`.


rule coarse_run:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: gate_evidence(w.model),
        module=lambda w: user_module(w.model),
        code=code_of("train_run"),
        eta=lambda w: eta_input(w.model),
    output:
        metrics=f"{R}/search/{{model}}/coarse/{{lam}}/seed{{seed}}/metrics.json",
        history=f"{R}/search/{{model}}/coarse/{{lam}}/seed{{seed}}/history.csv",
        weights=f"{R}/search/{{model}}/coarse/{{lam}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/search/{{model}}/coarse/{{lam}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/search/{{model}}/coarse/{{lam}}_seed{{seed}}.tsv"
    priority: 10
    conda:
        "../../envs/model.yaml"
    threads: THREADS["search"]
    resources:
        mem_mb=lambda w: plan.train_mem_mb(config, w.model),
        runtime=lambda w: plan.train_runtime(
            config, w.model, search_cycles("coarse")(w)
        ),
    params:
        spec=lambda w: plan.model_spec(config, w.model),
        lam=search_lam("coarse"),
        cycles=search_cycles("coarse"),
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=False,
        record_divergence=True,  # a diverged λ is a search result, not a failure
        snapshots=False,  # cycle-end weights are kept by final runs only
        switches={},  # ablation switches, applied after a chosen recipe (bonus.smk)
        eta_source=lambda w: plan.eta_source(config, w.model),
    script:
        "../scripts/train_run.py"


use rule coarse_run as fine_run with:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: gate_evidence(w.model),
        module=lambda w: user_module(w.model),
        code=code_of("train_run"),
        grid=lambda w: table_path(w.model, "coarse"),
        eta=lambda w: eta_input(w.model),
    output:
        metrics=f"{R}/search/{{model}}/fine/{{lam}}/seed{{seed}}/metrics.json",
        history=f"{R}/search/{{model}}/fine/{{lam}}/seed{{seed}}/history.csv",
        weights=f"{R}/search/{{model}}/fine/{{lam}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/search/{{model}}/fine/{{lam}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/search/{{model}}/fine/{{lam}}_seed{{seed}}.tsv"
    resources:
        mem_mb=lambda w: plan.train_mem_mb(config, w.model),
        runtime=lambda w: plan.train_runtime(config, w.model, search_cycles("fine")(w)),
    params:
        spec=lambda w: plan.model_spec(config, w.model),
        lam=search_lam("fine"),
        cycles=search_cycles("fine"),
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=False,
        record_divergence=True,  # a diverged λ is a search result, not a failure


# The table of one search; a checkpoint, because the next stage's lam values come from it.
checkpoint search_table:
    input:
        runs=lambda w: search_runs(w.model, w.stage),
        code=code_of("search_table"),
    output:
        json=f"{R}/search/{{model}}/{{stage}}.json",
        csv=report(
            f"{R}/search/{{model}}/{{stage}}.csv",
            caption="../report/search.rst",
            category="Lambda search",
            subcategory="{model}",
            labels={"model": "{model}", "stage": "{stage}"},
        ),
    log:
        f"{R}/logs/search/{{model}}/{{stage}}_table.log",
    priority: 10
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    params:
        fine=lambda w: (
            plan.fine_grid_settings(config, w.model) if w.stage == "coarse" else None
        ),
    script:
        "../scripts/search_table.py"

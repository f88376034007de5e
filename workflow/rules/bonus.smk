# Bonus experiments: the recipe search that chooses the bonus model's recipe, the ablation of
# each improvement of that recipe, augmentation against lam, and initialisation sensitivity.


# One candidate recipe of the ablated model at that model's searched lam, on the search split
# (its 5,000 validation rows choose; the test set is never looked at).
use rule final_run as recipe_run with:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=GATE_EVIDENCE,
        code=code_of("train_run"),
        lam_source=lambda w: table_path(plan.lam_model(config, ABL["model"]), "fine"),
        eta=lambda w: eta_input("ablation"),
    output:
        metrics=f"{R}/bonus/recipe/{{candidate}}/seed{{seed}}/metrics.json",
        history=f"{R}/bonus/recipe/{{candidate}}/seed{{seed}}/history.csv",
        weights=f"{R}/bonus/recipe/{{candidate}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/bonus/recipe/{{candidate}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/bonus/recipe/{{candidate}}_seed{{seed}}.tsv"
    priority: 10  # on the path to the bonus model's final runs
    threads: THREADS["search"]
    resources:
        mem_mb=plan.train_mem_mb(config, ABL["model"]) if ABL else 1000,
        runtime=(
            plan.train_runtime(config, ABL["model"], RECIPE["cycles"]) if RECIPE else 5
        ),
    params:
        model=ABL["model"] if ABL else "",
        spec=lambda w: plan.model_spec(
            config, ABL["model"], **plan.recipe_candidates(config)[w.candidate]
        ),
        lam=lambda w: final_lam(ABL["model"]),
        cycles=RECIPE["cycles"] if RECIPE else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=False,
        record_divergence=True,  # a candidate that diverges loses; the search goes on
        snapshots=False,
        eta_source=lambda w: plan.eta_source(config, ABL["model"]),


# The recipe table; a checkpoint, because the ablation's variants depend on the chosen recipe.
checkpoint recipe_table:
    input:
        runs=recipe_runs,
        code=code_of("recipe_table"),
    output:
        json=RECIPE_JSON,
        csv=report(
            f"{R}/bonus/recipe.csv",
            caption="../report/recipe.rst",
            category="Bonus",
        ),
    log:
        f"{R}/logs/bonus/recipe_table.log",
    priority: 10
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    params:
        candidates=plan.recipe_candidates(config),
    script:
        "../scripts/recipe_table.py"


use rule final_run as ablation_run with:
    input:
        split_files("final"),
        stats=split_stats("final"),
        gates=GATE_EVIDENCE,
        code=code_of("train_run"),
        lam_source=lambda w: table_path(ABL["model"], "fine"),
        recipe=recipe_input(ABL["model"]) if ABL else [],
        eta=lambda w: eta_input("ablation"),
    output:
        metrics=f"{R}/bonus/ablation/{{variant}}/seed{{seed}}/metrics.json",
        history=f"{R}/bonus/ablation/{{variant}}/seed{{seed}}/history.csv",
        weights=f"{R}/bonus/ablation/{{variant}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/bonus/ablation/{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/bonus/ablation/{{variant}}_seed{{seed}}.tsv"
    priority: 0  # after the headline chain (priority 10) whenever both are ready
    resources:
        mem_mb=plan.train_mem_mb(config, ABL["model"]) if ABL else 1000,
        runtime=plan.train_runtime(config, ABL["model"], ABL["cycles"]) if ABL else 5,
    params:
        model=ABL["model"] if ABL else "",
        spec=lambda w: plan.model_spec(config, ABL["model"]),
        # switched off after the chosen recipe is applied (train_run.py)
        switches=lambda w: ablation_variants()[w.variant],
        lam=lambda w: final_lam(ABL["model"]),
        cycles=ABL["cycles"] if ABL else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=True,
        record_divergence=False,
        snapshots=False,
        eta_source=lambda w: plan.eta_source(config, ABL["model"]),


rule ablation_table:
    input:
        split_files("final"),
        stats=split_stats("final"),
        runs=ablation_runs,
        code=code_of("ablation_table"),
    output:
        json=f"{R}/bonus/ablation.json",
        csv=report(
            f"{R}/bonus/ablation.csv",
            caption="../report/ablation.rst",
            category="Bonus",
        ),
    log:
        f"{R}/logs/bonus/ablation_table.log",
    conda:
        "../../envs/model.yaml"
    threads: THREADS["final"]
    resources:
        mem_mb=1500,
        runtime=5,
    params:
        dtype=config["dtype"],
    script:
        "../scripts/ablation_table.py"


# One job per (augmentation, seed) trains that seed's whole λ grid, as a search stage does.
use rule search_stack as aug_lambda_stack with:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: stack_gate_evidence(AVL["model"]),
        code=code_of("train_stack"),
        eta=lambda w: eta_input("aug_vs_lambda"),
        lam_source=lambda w: table_path(plan.lam_model(config, AVL["model"]), "fine"),
    output:
        runs=temp(directory(f"{R}/bonus/aug_vs_lambda/{{aug}}_seed{{seed}}.stack")),
    log:
        f"{R}/logs/bonus/aug_vs_lambda/{{aug}}_seed{{seed}}_stack.log",
    benchmark:
        f"{R}/benchmarks/bonus/aug_vs_lambda/{{aug}}_seed{{seed}}_stack.tsv"
    wildcard_constraints:
        aug="aug|noaug",
    priority: 0  # after the headline chain (priority 10) whenever both are ready
    resources:
        mem_mb=(
            plan.stack_mem_mb(config, AVL["model"], len(AVL["offsets"]))
            if AVL
            else 1000
        ),
        runtime=(
            len(AVL["offsets"])
            * plan.train_runtime(config, AVL["model"], AVL["cycles"])
            if AVL
            else 5
        ),
    params:
        kind="aug_vs_lambda",
        model=AVL["model"] if AVL else "",
        run_wildcards=lambda w: {"aug": w.aug},
        spec=lambda w: plan.aug_spec(config, w.aug),
        lams=lambda w: plan.aug_grid(config, final_lam(AVL["model"])),
        cycles=AVL["cycles"] if AVL else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        switches={},
        eta_source=lambda w: plan.eta_source(config, AVL["model"]),


use rule coarse_run as aug_lambda_run with:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: stack_gate_evidence(AVL["model"]),
        code=code_of("train_stack"),
        eta=lambda w: eta_input("aug_vs_lambda"),
        lam_source=lambda w: table_path(plan.lam_model(config, AVL["model"]), "fine"),
        stack=f"{R}/bonus/aug_vs_lambda/{{aug}}_seed{{seed}}.stack",
    output:
        metrics=f"{R}/bonus/aug_vs_lambda/{{aug}}/{{lam}}/seed{{seed}}/metrics.json",
        history=f"{R}/bonus/aug_vs_lambda/{{aug}}/{{lam}}/seed{{seed}}/history.csv",
        weights=f"{R}/bonus/aug_vs_lambda/{{aug}}/{{lam}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/bonus/aug_vs_lambda/{{aug}}_{{lam}}_seed{{seed}}.log",
    wildcard_constraints:
        aug="aug|noaug",
    priority: 0
    params:
        spec=lambda w: plan.aug_spec(config, w.aug),
        lam=lambda w: plan.aug_grid(config, final_lam(AVL["model"]))[w.lam],
        cycles=AVL["cycles"] if AVL else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        eta_source=lambda w: plan.eta_source(config, AVL["model"]),


localrules:
    aug_lambda_run,


rule aug_vs_lambda:
    input:
        runs=aug_lambda_runs,
        code=code_of("aug_vs_lambda"),
    output:
        json=f"{R}/bonus/aug_vs_lambda.json",
        csv=report(
            f"{R}/bonus/aug_vs_lambda.csv",
            caption="../report/aug_vs_lambda.rst",
            category="Bonus",
        ),
    log:
        f"{R}/logs/bonus/aug_vs_lambda.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    params:
        fit_points=AVL["fit_points"] if AVL else 5,
        level=AVL["confidence"] if AVL else 0.95,
    script:
        "../scripts/aug_vs_lambda.py"


use rule ablation_run as init_run with:
    input:
        split_files("final"),
        stats=split_stats("final"),
        gates=GATE_EVIDENCE,
        code=code_of("train_run"),
        lam_source=lambda w: table_path(plan.lam_model(config, INIT["model"]), "fine"),
        eta=lambda w: eta_input("init_sensitivity"),
    output:
        metrics=f"{R}/bonus/init_sensitivity/{{variant}}/seed{{seed}}/metrics.json",
        history=f"{R}/bonus/init_sensitivity/{{variant}}/seed{{seed}}/history.csv",
        weights=f"{R}/bonus/init_sensitivity/{{variant}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/bonus/init_sensitivity/{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{R}/benchmarks/bonus/init_sensitivity/{{variant}}_seed{{seed}}.tsv"
    resources:
        mem_mb=plan.train_mem_mb(config, INIT["model"]) if INIT else 1000,
        runtime=plan.train_runtime(config, INIT["model"], INIT["cycles"]) if INIT else 5,
    params:
        model=INIT["model"] if INIT else "",
        spec=lambda w: plan.model_spec(
            config, INIT["model"], **plan.init_variants(config)[w.variant]
        ),
        lam=lambda w: final_lam(INIT["model"]),
        cycles=INIT["cycles"] if INIT else 0,
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        evaluate_test=True,
        record_divergence=True,  # a σ that does not train is this experiment's result
        switches={},
        eta_source=lambda w: plan.eta_source(config, INIT["model"]),


rule init_table:
    input:
        runs=init_runs,
        code=code_of("init_table"),
    output:
        json=f"{R}/bonus/init_sensitivity.json",
        csv=report(
            f"{R}/bonus/init_sensitivity.csv",
            caption="../report/init_sensitivity.rst",
            category="Bonus",
        ),
    log:
        f"{R}/logs/bonus/init_sensitivity.log",
    conda:
        "../../envs/model.yaml"
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    script:
        "../scripts/init_table.py"

# Coarse then fine lambda search, one job per lambda and model. The fine grid is computed from
# the coarse table at run time (a data-dependent input), so the DAG depends on the coarse result.


rule coarse_run:
    priority: 10
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=GATE_EVIDENCE,
    output:
        metrics=f"{R}/search/{{model}}/coarse/{{i}}/metrics.json",
        history=f"{R}/search/{{model}}/coarse/{{i}}/history.csv",
    params:
        spec=lambda w: model_spec(w.model),
        lam=lambda w: {"log10": coarse_exponents(w.model)[int(w.i)]},
        cycles=lambda w: search_settings(w.model)["coarse_cycles"],
        seed=COARSE["seed"],
        dtype=config["dtype"],
        evaluate_test=False,
    log:
        f"{R}/logs/search/{{model}}/coarse_{{i}}.log",
    benchmark:
        f"{R}/benchmarks/search/{{model}}/coarse_{{i}}.tsv"
    threads: THREADS["search"]
    resources:
        mem_mb=lambda w: train_mem_mb(w.model),
        runtime=lambda w: train_runtime(w.model, search_settings(w.model)["coarse_cycles"]),
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/train_run.py"


rule coarse_table:
    priority: 10
    input:
        runs=lambda w: search_runs("coarse", w.model),
    output:
        json=f"{R}/search/{{model}}/coarse.json",
        csv=report(f"{R}/search/{{model}}/coarse.csv", caption="../report/search.rst",
                   category="Lambda search", subcategory="{model}", labels={"model": "{model}", "stage": "coarse"}),
    params:
        stage="coarse",
    log:
        f"{R}/logs/search/{{model}}/coarse_table.log",
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/search_aggregate.py"


rule fine_run:
    priority: 10
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=GATE_EVIDENCE,
        lam_source=rules.coarse_table.output.json,
    output:
        metrics=f"{R}/search/{{model}}/fine/{{i}}/metrics.json",
        history=f"{R}/search/{{model}}/fine/{{i}}/history.csv",
    params:
        spec=lambda w: model_spec(w.model),
        lam=lambda w: {"fine_index": int(w.i), "n": search_settings(w.model)["n_fine"],
                       "half_width": FINE["half_width"], "l_min": COARSE["l_min"],
                       "l_max": COARSE["l_max"]},
        cycles=lambda w: search_settings(w.model)["fine_cycles"],
        seed=FINE["seed"],
        dtype=config["dtype"],
        evaluate_test=False,
    log:
        f"{R}/logs/search/{{model}}/fine_{{i}}.log",
    benchmark:
        f"{R}/benchmarks/search/{{model}}/fine_{{i}}.tsv"
    threads: THREADS["search"]
    resources:
        mem_mb=lambda w: train_mem_mb(w.model),
        runtime=lambda w: train_runtime(w.model, search_settings(w.model)["fine_cycles"]),
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/train_run.py"


rule fine_table:
    priority: 10
    input:
        runs=lambda w: search_runs("fine", w.model),
    output:
        json=f"{R}/search/{{model}}/fine.json",
        csv=report(f"{R}/search/{{model}}/fine.csv", caption="../report/search.rst",
                   category="Lambda search", subcategory="{model}", labels={"model": "{model}", "stage": "fine"}),
    params:
        stage="fine",
    log:
        f"{R}/logs/search/{{model}}/fine_table.log",
    threads: 1
    resources:
        mem_mb=300,
        runtime=2,
    conda:
        "../../envs/model.yaml"
    script:
        "../scripts/search_aggregate.py"

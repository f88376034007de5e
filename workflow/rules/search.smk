# Coarse then fine lam search; the table of a search has one row per lam (mean, std, standard
# error over its seeds) and chooses the best mean.


# Every λ of one search stage of one model at one seed is one job: the runs share their
# batches, so they train as one stack (nn/stack.py: the first layers side by side, one GEMM) or,
# for a spec the stack does not take (momentum), one after the other in one process. The job's
# folder is temporary: the per-λ rules below copy each run into its own folder.
rule search_stack:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: stack_gate_evidence(w.model),
        module=lambda w: user_module(w.model),
        code=code_of("train_stack"),
        grid=lambda w: table_path(w.model, "coarse") if w.stage == "fine" else [],
        eta=lambda w: eta_input(w.model),
    output:
        runs=temp(directory(f"{R}/search/{{model}}/{{stage}}_seed{{seed}}.stack")),
    log:
        f"{R}/logs/search/{{model}}/{{stage}}_seed{{seed}}_stack.log",
    benchmark:
        f"{R}/benchmarks/search/{{model}}/{{stage}}_seed{{seed}}_stack.tsv"
    priority: 10
    conda:
        "../../envs/model.yaml"
    threads: THREADS["search"]
    resources:
        mem_mb=lambda w: plan.stack_mem_mb(
            config, w.model, len(search_grid(w.model, w.stage))
        ),
        runtime=lambda w: len(search_grid(w.model, w.stage))
        * plan.train_runtime(config, w.model, search_cycles(w.stage)(w)),
    params:
        kind=lambda w: w.stage,
        model=lambda w: w.model,
        run_wildcards=lambda w: {"model": w.model},
        spec=lambda w: plan.model_spec(config, w.model),
        lams=lambda w: search_grid(w.model, w.stage),
        cycles=lambda w: search_cycles(w.stage)(w),
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        switches={},  # ablation switches, applied after a chosen recipe (bonus.smk)
        eta_source=lambda w: plan.eta_source(config, w.model),
    script:
        "../scripts/train_stack.py"


# One (λ, seed) of a search, copied out of its stage's job. Its inputs and params are those of
# the run it holds, so a change to any of them reruns it, and it asks for the stage's job again.
rule coarse_run:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: stack_gate_evidence(w.model),
        module=lambda w: user_module(w.model),
        code=code_of("train_stack"),
        eta=lambda w: eta_input(w.model),
        stack=f"{R}/search/{{model}}/coarse_seed{{seed}}.stack",
    output:
        metrics=f"{R}/search/{{model}}/coarse/{{lam}}/seed{{seed}}/metrics.json",
        history=f"{R}/search/{{model}}/coarse/{{lam}}/seed{{seed}}/history.csv",
        weights=f"{R}/search/{{model}}/coarse/{{lam}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/search/{{model}}/coarse/{{lam}}_seed{{seed}}.log",
    priority: 10
    conda:
        "../../envs/data.yaml"  # cp only; any environment of the workflow has it
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    params:
        spec=lambda w: plan.model_spec(config, w.model),
        lam=search_lam("coarse"),
        cycles=search_cycles("coarse"),
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        eta_source=lambda w: plan.eta_source(config, w.model),
    shell:
        # metrics.json last: its presence means the run is complete (runfiles.write_run)
        "(cp {input.stack}/{wildcards.lam}/history.csv {output.history}"
        " && cp {input.stack}/{wildcards.lam}/weights.npz {output.weights}"
        " && cp {input.stack}/{wildcards.lam}/metrics.json {output.metrics}) > {log} 2>&1"


use rule coarse_run as fine_run with:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=lambda w: stack_gate_evidence(w.model),
        module=lambda w: user_module(w.model),
        code=code_of("train_stack"),
        eta=lambda w: eta_input(w.model),
        grid=lambda w: table_path(w.model, "coarse"),
        stack=f"{R}/search/{{model}}/fine_seed{{seed}}.stack",
    output:
        metrics=f"{R}/search/{{model}}/fine/{{lam}}/seed{{seed}}/metrics.json",
        history=f"{R}/search/{{model}}/fine/{{lam}}/seed{{seed}}/history.csv",
        weights=f"{R}/search/{{model}}/fine/{{lam}}/seed{{seed}}/weights.npz",
    log:
        f"{R}/logs/search/{{model}}/fine/{{lam}}_seed{{seed}}.log",
    params:
        spec=lambda w: plan.model_spec(config, w.model),
        lam=search_lam("fine"),
        cycles=search_cycles("fine"),
        seed=lambda w: int(w.seed),
        dtype=config["dtype"],
        eta_source=lambda w: plan.eta_source(config, w.model),


# A copy is a few file operations: on a cluster it runs beside Snakemake, not as a job.
localrules:
    coarse_run,
    fine_run,


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

# The learning-rate range test of each model, before its searches: η rising log-linearly over a
# few epochs of the search split; the JSON's bounds set the model's η_min/η_max for every
# training job that uses them (unless the model fixes eta_max in config.yaml).


rule lr_range:
    input:
        split_files("search"),
        stats=split_stats("search"),
        gates=GATE_EVIDENCE,
        code=code_of("lr_range"),
    output:
        json=f"{R}/lr_range/{{model}}.json",
        csv=report(
            f"{R}/lr_range/{{model}}.csv",
            caption="../report/lr_range.rst",
            category="Learning-rate range tests",
            labels={"model": "{model}"},
        ),
    log:
        f"{R}/logs/lr_range/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/lr_range/{{model}}.tsv"
    priority: 20
    conda:
        "../../envs/model.yaml"
    threads: THREADS["search"]
    resources:
        mem_mb=lambda w: plan.train_mem_mb(config, w.model),
        runtime=lambda w: plan.train_runtime(config, w.model, 1),
    params:
        spec=lambda w: plan.range_spec(config, w.model),
        settings=lambda w: plan.range_settings(config, w.model),
        dtype=config["dtype"],
    script:
        "../scripts/lr_range.py"

# The final report: reads every result (declared below, so any change reruns it), renders one
# self-contained HTML file and a text-only Markdown twin. Benchmarks are globbed at run time.


rule report:
    input:
        gates=GATE_EVIDENCE,
        bug_table=f"{R}/gates/bug_table.json",
        searches=expand(f"{R}/search/{{model}}/{{stage}}.json", model=config["search"]["models"],
                        stage=["coarse", "fine"]),
        finals=final_targets(),
        histories=[r for m in FINAL["models"] for r in final_runs(m, "history.csv")],
        weights=[r for m in FINAL["models"] for r in final_runs(m, "weights.npz")],
        bonus=bonus_targets(),
        trained=training_runs(),
        download=f"{R}/data/download.json",
        stats=[split_stats("search"), split_stats("final")],
        norm=f"{R}/data/final/norm.npz",
        samples=[f"{R}/data/final/X_train.npy", f"{R}/data/final/y_train.npy"],
    output:
        html=report(f"{R}/report/report.html", caption="../report/report.rst", category="Report"),
        md=f"{R}/report/report.md",
    params:
        config=config,  # the whole config: any change to it reruns the report
    log:
        f"{R}/logs/report.log",
    threads: THREADS["report"]
    resources:
        mem_mb=1500,
        runtime=10,
    conda:
        "../../envs/report.yaml"
    script:
        "../scripts/report.py"

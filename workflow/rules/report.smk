# The final report: reads every result (declared below, so any change reruns it), renders one
# self-contained HTML file and a text-only Markdown twin.


rule report:
    input:
        gates=GATE_EVIDENCE,
        bug_table=f"{R}/gates/bug_table.json",
        searches=expand(
            f"{R}/search/{{model}}/{{stage}}.json",
            model=config["search"]["models"],
            stage=["coarse", "fine"],
        ),
        finals=[f"{R}/final/{m}/summary.json" for m in FINAL["models"]],
        histories=final_files("history.csv"),
        weights=final_files("weights.npz"),
        bonus=bonus_targets(),
        trained=training_runs,
        code=code("report"),
        download=f"{R}/data/download.json",
        stats=[split_stats("search"), split_stats("final")],
        norm=f"{R}/data/final/norm.npz",
        samples=[f"{R}/data/final/X_train.npy", f"{R}/data/final/y_train.npy"],
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
    script:
        "../scripts/report.py"

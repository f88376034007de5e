# Placeholder until the report rule lands: collects every result the report will show.


rule report:
    input:
        gates=GATE_EVIDENCE,
        bug_table=f"{R}/gates/bug_table.json",
        finals=final_targets(),
        bonus=bonus_targets(),
    output:
        html=f"{R}/report/report.html",
        md=f"{R}/report/report.md",
    log:
        f"{R}/logs/report.log",
    threads: THREADS["report"]
    resources:
        mem_mb=1000,
        runtime=5,
    shell:
        "(echo '<html><body>placeholder</body></html>' > {output.html} && echo placeholder > {output.md}) 2> {log}"

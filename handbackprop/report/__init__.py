"""The study's final report, divided by what each part does:

    collect.collect(...)                 read every output (and the audit's audit.json, written by
                                         handbackprop/audit) into a context dict
    provenance, benchmarks               git, machine, versions, config; wall time and memory
    figures.make_figures(context)        {name: PNG data URI}
    render.render(context, figures)      (html, markdown) from one partial per section
    build.build_report(...)              all of the above, written to report.html / report.md

No Snakemake dependency: workflow/scripts/report.py is a thin wrapper. Nothing is imported
here, so importing one module does not load (nor make a rule depend on) the rest.
"""

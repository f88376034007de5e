"""The audit: every derived figure checked against what it derives from, run by the workflow's
`audit` rule into ``{results}/report/audit.json`` before the report renders.

    runs.audit(...), runs.check(...)   code hashes, schedules, and each run's figures rescored
                                       from its saved weights (rescore.py)
    selections.audit_selections(...)   every choice (fine grid, final λ, recipe, folder labels,
                                       ablation variants) recomputed from the rows it was made on

No Snakemake dependency: workflow/scripts/audit.py is a thin wrapper. The report only reads
audit.json.
"""

"""Snakemake script: the table of every λ of one search, its best, and what the next stage trains at."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.runfiles import write_table
    from handbackprop.study import tables

    sm = snakemake  # noqa: F821
    table = tables.search_table(sm.input.runs, stage=sm.wildcards.stage, model=sm.wildcards.model,
                                fine=sm.params.fine)
    write_table(table, sm.output.json, sm.output.csv)
    b = table["best"]
    print(f"best mean λ {b['lam']:.4g} (mean val acc {b['val_accuracy']:.4f} over {b['n']} seed(s)); "
          f"indistinguishable: {', '.join(f'{v:.3g}' for v in table['indistinguishable'])}")
    print(table["surface"]["sentence"])

"""Snakemake script: the recipe search's table and the chosen recipe."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.runfiles import write_table
    from handbackprop.study import tables

    sm = snakemake  # noqa: F821
    table = tables.recipe_table(sm.input.runs, dict(sm.params.candidates))
    write_table(table, sm.output.json, sm.output.csv)
    print(table["text"])

"""Snakemake script: split and normalise the tarball into a folder of .npy files."""
import json
import sys
from pathlib import Path

# The rule's log gets everything, including tracebacks.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.data.preprocess import preprocess

    provenance = json.loads(Path(snakemake.input.provenance).read_text())  # noqa: F821
    preprocess(
        snakemake.input.tarball,  # noqa: F821
        Path(snakemake.output.stats).parent,  # noqa: F821  (all outputs share stats.json's folder)
        n_val=int(snakemake.params.n_val),  # noqa: F821
        seed=int(snakemake.params.seed),  # noqa: F821
        source=provenance.get("url", provenance.get("source")),
        md5=provenance["md5"],
        with_test=bool(snakemake.params.with_test),  # noqa: F821
    )

"""Snakemake script: fetch the CIFAR-10 tarball, verify it, and record provenance."""
import sys
from pathlib import Path

# The rule's log gets everything, including tracebacks.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    from handbackprop.atomic import write_json
    from handbackprop.data.download import fetch, read_md5_file

    params = snakemake.params  # noqa: F821
    expected = (params.get("md5") or "").strip() or None
    md5_file = snakemake.input.get("md5_file")  # noqa: F821
    if md5_file:
        from_file = read_md5_file(md5_file)
        if expected and expected.lower() != from_file:
            raise SystemExit(f"md5 in config ({expected}) disagrees with {md5_file} ({from_file})")
        expected = from_file

    provenance = fetch(
        params.url,
        snakemake.output.tarball,  # noqa: F821
        expected,
        retries=int(params.get("retries", 4)),
        timeout_s=float(params.get("timeout_s", 60)),
    )
    write_json(snakemake.output.provenance, provenance)  # noqa: F821

"""Snakemake script: plant each catalogued bug and record which gates catch it."""
import sys
from pathlib import Path

# Import this checkout's package, never another install: it is the code the gate rules watch.
sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821
from handbackprop import stage  # noqa: E402

stage.log_to(snakemake.log[0])  # noqa: F821
stage.limit_threads(snakemake.threads)  # noqa: F821

with stage.console_errors(snakemake.rule, snakemake.log[0]):  # noqa: F821
    import pandas as pd  # noqa: E402

    from handbackprop.atomic import atomic_path, write_json  # noqa: E402
    from handbackprop.data.splits import load_split  # noqa: E402
    from handbackprop.gates.planted_bugs import TABLE_BUGS, run_catalogue  # noqa: E402

    sm = snakemake  # noqa: F821
    data = load_split(Path(sm.input.stats).parent)
    rows = run_catalogue(data["X_train"], data["y_train"], sm.params.settings, bugs=TABLE_BUGS)
    if rows[0]["caught_by"]:
        raise SystemExit(f"the correct code fails {rows[0]['caught_by']}: the gates are miscalibrated")
    not_planted = [r["bug"] for r in rows[1:] if not r["planted"]]
    if not_planted:
        raise SystemExit(f"planted bug(s) {', '.join(not_planted)} never ran (not planted): the "
                         f"gates' catch of them would prove nothing; reach the patched function "
                         f"through its module")
    uncaught = [r["bug"] for r in rows[1:] if not r["caught_by"]]
    if uncaught:
        raise SystemExit(f"planted bug(s) {', '.join(uncaught)} pass every gate")
    with atomic_path(sm.output.csv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json(sm.output.json, {"rows": rows, "settings": sm.params.settings,
                                "uncaught": [r["bug"] for r in rows[1:] if not r["caught_by"]]})

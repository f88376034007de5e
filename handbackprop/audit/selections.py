"""Every choice the study made, recomputed from the rows it was made on.

A table's choice is only as good as the file that carries it: a hand-edited `fine_grid`, a
`final_lam` typed over, a `recipe.json` that names another candidate, a run whose folder says one
λ and whose weights were trained at another. Each check below recomputes the choice with the same
function the workflow used (study/tables.py) from the runs it was made from, and compares it with
the file that later jobs read. A mismatch names the file and both values.

`plan` is plain data the workflow builds from the config (workflow/rules/common.smk,
`selection_plan()`): per searched model its coarse grid ({label: λ}), fine-grid settings and
seeds; the final models with the model their λ comes from; the recipe candidates and seeds; the
ablation's model and variants.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..runfiles import read_json
from ..study import plan as study_plan
from ..study import tables
from ..study.grids import lam_label


def _read(path: Path) -> dict:
    return read_json(path)


def _same(a, b) -> bool:
    """Equal as the JSON files hold them (floats exactly: both sides come from one function)."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _finding(file, what: str, recorded, recomputed) -> dict:
    return {"file": str(file), "what": what, "recorded": recorded, "recomputed": recomputed}


def _folder_labels(R: Path, where: str, grid: dict[str, float], seeds, findings: list) -> list[Path]:
    """The run paths of one grid; each run's recorded λ must be its folder's λ."""
    paths = []
    for label, lam in grid.items():
        for seed in seeds:
            p = R / where / label / f"seed{seed}" / "metrics.json"
            recorded = _read(p)["lam"]
            if lam_label(recorded) != label or not math.isclose(recorded, lam, rel_tol=1e-12):
                findings.append(_finding(p, f"λ of the run in folder {label}", recorded, lam))
            paths.append(p)
    return paths


def audit_selections(results_dir, plan: dict) -> dict:
    """{passed, checked: [what was recomputed], findings: [mismatches]} (plain data)."""
    R = Path(results_dir)
    findings: list[dict] = []
    checked: list[str] = []
    final_lams = {}
    for model, s in plan["searches"].items():
        coarse_path, fine_path = R / "search" / model / "coarse.json", R / "search" / model / "fine.json"
        coarse_runs = _folder_labels(R, f"search/{model}/coarse", s["coarse_grid"], s["seeds"], findings)
        coarse = tables.search_table([str(p) for p in coarse_runs], "coarse", model, fine=s["fine"])
        stored = _read(coarse_path)
        if not _same(stored.get("fine_grid"), coarse["fine_grid"]):
            findings.append(_finding(coarse_path, "fine_grid", stored.get("fine_grid"), coarse["fine_grid"]))
        fine_runs = _folder_labels(R, f"search/{model}/fine", coarse["fine_grid"], s["seeds"], findings)
        fine = tables.search_table([str(p) for p in fine_runs], "fine", model)
        stored = _read(fine_path)
        if not _same(stored.get("final_lam"), fine["final_lam"]):
            findings.append(_finding(fine_path, "final_lam", stored.get("final_lam"), fine["final_lam"]))
        final_lams[model] = fine["final_lam"]
        checked.append(f"{model}: fine grid from {len(coarse_runs)} coarse runs, final λ from "
                       f"{len(fine_runs)} fine runs, every folder's λ")

    for model, f in plan["finals"].items():
        lam = final_lams.get(f["lam_model"])
        summary_path = R / "final" / model / "summary.json"
        summary = _read(summary_path)
        accs = []
        for seed in f["seeds"]:
            p = R / "final" / model / f"seed{seed}" / "metrics.json"
            m = _read(p)
            if lam is not None and not math.isclose(m["lam"], lam, rel_tol=1e-12):
                findings.append(_finding(p, f"λ (the fine table of {f['lam_model']} chose it)", m["lam"], lam))
            accs.append(m["test_accuracy"])
        if not _same(summary.get("test_accuracy"), accs):
            findings.append(_finding(summary_path, "test_accuracy per seed", summary.get("test_accuracy"), accs))
        mean = tables.mean_std(accs)[0]
        if not math.isclose(summary.get("test_accuracy_mean", math.nan), mean, rel_tol=1e-12, abs_tol=1e-15):
            findings.append(_finding(summary_path, "test_accuracy_mean", summary.get("test_accuracy_mean"), mean))
        checked.append(f"{model}: final λ and the summary's per-seed test accuracy from {len(accs)} runs")

    recipe = plan.get("recipe")
    chosen = None
    if recipe:
        recipe_path = R / "bonus" / "recipe.json"
        paths = [str(R / "bonus" / "recipe" / c / f"seed{s}" / "metrics.json")
                 for c in recipe["candidates"] for s in recipe["seeds"]]
        table = tables.recipe_table(paths, recipe["candidates"])
        stored = _read(recipe_path)
        for key in ("chosen", "recipe"):
            if not _same(stored.get(key), table[key]):
                findings.append(_finding(recipe_path, key, stored.get(key), table[key]))
        chosen = table["recipe"]
        checked.append(f"recipe: the chosen candidate from {len(paths)} recipe runs")

    abl = plan.get("ablation")
    if abl:
        expected = study_plan.ablation_variants(plan["config"], chosen)
        for variant, switches in expected.items():
            for seed in abl["seeds"]:
                p = R / "bonus" / "ablation" / variant / f"seed{seed}" / "metrics.json"
                spec = _read(p)["spec"]
                want = {**(chosen or {}), **switches}
                wrong = {k: (spec.get(k), v) for k, v in want.items() if spec.get(k) != v}
                if wrong:
                    findings.append(_finding(p, f"spec of ablation variant {variant}",
                                             {k: w[0] for k, w in wrong.items()},
                                             {k: w[1] for k, w in wrong.items()}))
        checked.append(f"ablation: {len(expected)} variants' specs from the chosen recipe")
    return {"passed": not findings, "checked": checked, "findings": findings}


def failure_message(result: dict) -> str:
    return (f"{len(result['findings'])} recorded choice(s) differ from the choice recomputed from "
            "their runs:\n  " + "\n  ".join(
                f"{f['file']}: {f['what']} is {f['recorded']!r}, recomputed {f['recomputed']!r}"
                for f in result["findings"]))

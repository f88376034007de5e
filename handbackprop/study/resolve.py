"""One training run's settings, resolved in one place: the config's spec, then the recipe the
recipe search chose, then the ablation's switches, then η.

Every training job calls `resolve` (workflow/scripts/train_run.py, train_stack.py). η's source is a value decided
once, by the config (plan.eta_source): "range_test" (the model's range test gives η_min/η_max)
or "config" (the spec's own numbers). What a run resolved it records in metrics.json
(`eta`, `eta_source`), and the report reads that record.
"""
from __future__ import annotations

from ..runfiles import read_json
from .plan import ETA_SOURCES as SOURCES


def layered(spec: dict, recipe_path=None, switches: dict | None = None) -> dict:
    """The configured spec, then the chosen recipe (bonus/recipe.json, for a final or ablation
    run of the recipe model), then the ablation's switches that turn an improvement off."""
    if isinstance(recipe_path, (list, tuple)):  # Snakemake gives an absent input as []
        recipe_path = recipe_path[0] if recipe_path else None
    recipe = read_json(recipe_path, "recipe") if recipe_path else {}
    return {**spec, **recipe, **(switches or {})}


def with_eta(spec: dict, source: str, range_result=None) -> tuple[dict, dict]:
    """The spec with its η, and what to record about it.

    "range_test": η_min/η_max from the range test's bounds (`range_result`: its dict or the path
    of its JSON); "config": the spec's own. A fixed-η job does not read the range test, so
    rerunning the test does not rerun it."""
    if source not in SOURCES:
        raise ValueError(f"eta source must be one of {SOURCES}, got {source!r}")
    if source == "config":
        return spec, {"eta_source": source, "eta_min": float(spec["eta_min"]),
                      "eta_max": float(spec["eta_max"])}
    if range_result is None:
        raise ValueError("eta source 'range_test' needs the model's range-test result")
    if not isinstance(range_result, dict):
        range_result = read_json(range_result)
    b = range_result["bounds"]
    spec = {**spec, "eta_min": float(b["eta_min"]), "eta_max": float(b["eta_max"])}
    info = {"eta_source": source, "eta_min": float(spec["eta_min"]), "eta_max": float(spec["eta_max"]),
            "range_model": range_result.get("model"), "peak_at_edge": bool(b["peak_at_edge"])}
    return spec, info


def resolve(spec: dict, eta_source: str, recipe=None, switches: dict | None = None,
            range_result=None) -> tuple[dict, dict]:
    """(the spec a run trains with, its η record): config spec → recipe → switches → η."""
    return with_eta(layered(spec, recipe, switches), eta_source, range_result)

"""The kinds of training run the study makes, declared once.

Every training job records its kind, split and model in its metrics.json (train_run.py), so the
audit, the cost table and the report read them instead of parsing folders or display strings;
the workflow takes its training rules and their run folders from this table too.
"""
from __future__ import annotations

from typing import NamedTuple


class RunKind(NamedTuple):
    rule: str      # the Snakemake rule that trains it
    split: str     # the split it trains on: "search" (no test rows) or "final"
    folder: str    # its run folder below the results folder
    group: str     # the audit's group (coarse and fine runs are one: the searches)
    stage: str     # its stage in the cost table ("{model}": the run's model)
    label: str     # how the report names it


RUN_KINDS: dict[str, RunKind] = {
    "coarse": RunKind("coarse_run", "search", "search/{model}/coarse/{lam}/seed{seed}", "search",
                      "search {model}", "coarse λ search"),
    "fine": RunKind("fine_run", "search", "search/{model}/fine/{lam}/seed{seed}", "search",
                    "search {model}", "fine λ search"),
    "final": RunKind("final_run", "final", "final/{model}/seed{seed}", "final", "finals", "final run"),
    "recipe": RunKind("recipe_run", "search", "bonus/recipe/{candidate}/seed{seed}", "recipe",
                      "bonus: recipe search", "recipe search"),
    "ablation": RunKind("ablation_run", "final", "bonus/ablation/{variant}/seed{seed}", "ablation",
                        "bonus: ablation", "ablation"),
    "aug_vs_lambda": RunKind("aug_lambda_run", "search", "bonus/aug_vs_lambda/{aug}/{lam}/seed{seed}",
                             "aug", "bonus: aug vs λ", "augmentation vs λ"),
    "init": RunKind("init_run", "final", "bonus/init_sensitivity/{variant}/seed{seed}", "init",
                    "bonus: init sensitivity", "initialisation sensitivity"),
}

# The audit's groups in report order, each with the split its runs train on.
AUDIT_GROUPS = {k.group: k.split for k in RUN_KINDS.values()}
TRAINING_RULES = [k.rule for k in RUN_KINDS.values()]


def kind_of_rule(rule: str) -> str:
    """The kind a training rule makes."""
    for name, k in RUN_KINDS.items():
        if k.rule == rule:
            return name
    raise KeyError(f"{rule!r} is not a training rule; training rules: {TRAINING_RULES}")


def stage_of(metrics: dict) -> str:
    """A run's stage in the cost table, from what it recorded."""
    kind = RUN_KINDS[metrics["kind"]]
    return kind.stage.format(model=metrics.get("model", "?"))


def recorded(kind: str, split_dir, model: str) -> dict:
    """What a training job writes about itself into metrics.json (train_run.py)."""
    from pathlib import Path

    k = RUN_KINDS[kind]
    split = Path(split_dir).name
    if split != k.split:
        raise ValueError(f"a {kind} run trains on the {k.split} split, but was given {split_dir}")
    return {"kind": kind, "split": split, "model": model}

"""Seed replicates of a λ search: one row per λ from its runs at every seed, the best λ by the
mean, and which λ the seed noise cannot tell apart from it.

Standard error used throughout: of one λ's mean, SE = std / sqrt(n) with std over its n trained
seeds (ddof=1). A λ is *indistinguishable* from the best when the best's mean exceeds its mean by
at most the standard error of that difference, sqrt(SE_best² + SE_λ²) (the two means come from
independent runs). With fewer than two trained seeds a λ has no standard error; it is then
indistinguishable only when its mean equals the best's.
"""
from __future__ import annotations

import math

import numpy as np

# Summarised with mean, std, standard error and the per-seed values; the choice uses these.
SUMMARISED = ("val_accuracy", "val_cost")
# Averaged over the trained seeds only (shown in the tables, never used to choose).
AVERAGED = ("val_loss", "train_accuracy", "train_cost", "train_loss", "seconds")

SE_RULE = ("indistinguishable: best mean − mean ≤ sqrt(SE_best² + SE_λ²), "
           "SE = std(ddof=1)/sqrt(n) over a λ's trained seeds")


def summarise(values) -> dict:
    """mean, std (ddof=1), standard error and n of a list of numbers; std and SE are None
    below two values, the mean is None for none."""
    v = np.asarray(values, float)
    n = len(v)
    std = float(v.std(ddof=1)) if n > 1 else None
    return {"mean": float(v.mean()) if n else None, "std": std,
            "se": std / math.sqrt(n) if std is not None else None, "n": n}


def lam_rows(runs: list[dict]) -> list[dict]:
    """One row per λ (sorted by λ) from per-run rows (keys lam, log10_lam, seed, diverged and the
    metrics). A diverged seed is counted (`n_diverged`, `diverged_seeds`) and left out of every
    statistic; a λ whose every seed diverged is itself `diverged`, with no statistics."""
    by_lam: dict[float, list[dict]] = {}
    for r in runs:
        by_lam.setdefault(r["lam"], []).append(r)
    rows = []
    for lam in sorted(by_lam):
        group = sorted(by_lam[lam], key=lambda r: r["seed"])
        trained = [r for r in group if not r.get("diverged")]
        failed = [r for r in group if r.get("diverged")]
        row = {"lam": lam, "log10_lam": group[0]["log10_lam"], "seeds": [r["seed"] for r in trained],
               "n": len(trained), "n_diverged": len(failed), "diverged_seeds": [r["seed"] for r in failed],
               "diverged": not trained, "runs": [r.get("run") for r in group]}
        for key in SUMMARISED:
            s = summarise([r[key] for r in trained])
            row.update({key: s["mean"], f"{key}_std": s["std"], f"{key}_se": s["se"],
                        f"{key}_per_seed": [r[key] for r in trained]})
        for key in AVERAGED:
            vals = [r[key] for r in trained if r.get(key) is not None]
            row[key] = float(np.mean(vals)) if vals else None
        if failed:
            row["advice"] = failed[0].get("advice")
        rows.append(row)
    return rows


def mark_indistinguishable(rows: list[dict], best: dict) -> list[float]:
    """Set each row's `gap` (best mean − its mean), `gap_se` and `indistinguishable`
    (see the module docstring); return the indistinguishable λ values, the best's included."""
    marked = []
    for r in rows:
        if r["diverged"]:
            r.update(gap=None, gap_se=None, indistinguishable=False)
            continue
        gap = best["val_accuracy"] - r["val_accuracy"]
        ses = (best["val_accuracy_se"], r["val_accuracy_se"])
        gap_se = math.sqrt(ses[0] ** 2 + ses[1] ** 2) if None not in ses else None
        r.update(gap=gap, gap_se=gap_se,
                 indistinguishable=bool(gap <= gap_se) if gap_se is not None else gap <= 0.0)
        if r["indistinguishable"]:
            marked.append(r["lam"])
    return marked

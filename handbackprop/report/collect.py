"""Reading the study's outputs into one plain context dict for the report.

Nothing here computes a result: the workflow computed every figure, and the audit rule
(audit.py) checked them and wrote ``report/audit.json``, which is read here like any output.
Paths follow the workflow's output layout below the results directory; the lists of models
and seeds come from the config. A new section's data is one more ``collect_*`` function here,
called from ``collect``.
"""
from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .audit import schedule_of
from .benchmarks import collect_benchmarks
from .provenance import collect_provenance

# The only figures typed in: the published reference results, always labelled as published.
PUBLISHED = {
    "linear_test_accuracy": 0.3930,
    "bonus_test_accuracy": 0.4977,
    "lam": 1.07e-3,
}
# Which final model each published accuracy sits beside (matched by model name).
PUBLISHED_BY_MODEL = {"linear": "linear_test_accuracy", "bonus": "bonus_test_accuracy"}

GATES = ("gradcheck", "overfit", "trajectory")
SAMPLES_PER_CLASS = 8


def read_json(path):
    return json.loads(Path(path).read_text())


def read_csv_columns(path) -> dict[str, list]:
    """A CSV of numbers as {column: [float, ...]} (empty cells become NaN)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = {k: [] for k in (rows[0].keys() if rows else [])}
    for r in rows:
        for k, v in r.items():
            try:
                cols[k].append(float(v))
            except (TypeError, ValueError):
                cols[k].append(math.nan)
    return cols


# --------------------------------------------------------------------------------- data
def collect_data(R: Path) -> dict:
    stats = {s: read_json(R / "data" / s / "stats.json") for s in ("search", "final")}
    names = stats["final"]["label_names"]
    final = R / "data" / "final"
    with np.load(final / "norm.npz") as z:
        mean, std = np.asarray(z["mean"], float), np.asarray(z["std"], float)
    y = np.load(final / "y_train.npy")
    X = np.load(final / "X_train.npy", mmap_mode="r")  # the real split is 600 MB: read rows only
    idx = [np.flatnonzero(y == c)[:SAMPLES_PER_CLASS] for c in range(len(names))]
    rows = np.concatenate(idx)
    pixels = np.asarray(X[np.sort(rows)], float)
    order = np.argsort(np.argsort(rows))  # back to class order after the sorted read
    pixels = pixels[order] * std + mean  # de-normalise to the 0..255 scale
    images = np.clip(pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0, 0.0, 1.0)
    samples = [{"label": names[c], "images": images[sum(map(len, idx[:c])):sum(map(len, idx[:c + 1]))]}
               for c in range(len(names))]

    splits = []
    for s, st in stats.items():
        splits.append({"split": s, "n_train": st["n_train"], "n_val": st["n_val"], "n_test": st["n_test"],
                       "seed": st.get("seed"), "class_counts": st["class_counts"]})
    channels = []
    for i, ch in enumerate(("red", "green", "blue")):
        m, s = mean.reshape(3, -1)[i], std.reshape(3, -1)[i]
        channels.append({"channel": ch, "mean_mean": float(m.mean()), "mean_min": float(m.min()),
                         "mean_max": float(m.max()), "std_mean": float(s.mean()),
                         "std_min": float(s.min()), "std_max": float(s.max())})
    return {
        "download": read_json(R / "data" / "download.json"),
        "stats": stats,
        "label_names": names,
        "splits": splits,
        "samples": samples,
        "samples_per_class": SAMPLES_PER_CLASS,
        "norm": {"channels": channels, "n_features": int(mean.size),
                 "mean_summary": stats["final"].get("mean_summary"),
                 "std_summary": stats["final"].get("std_summary"),
                 "normalisation": stats["final"].get("normalisation", ""),
                 "mean_image": np.clip(mean.reshape(3, 32, 32).transpose(1, 2, 0) / 255.0, 0, 1)},
    }


# -------------------------------------------------------------------------------- gates
def collect_gates(R: Path) -> dict:
    ev = {g: read_json(R / "gates" / f"{g}.json") for g in GATES}
    gc = ev["gradcheck"]
    t = gc["thresholds"]
    grad_rows = []
    for v in gc["variants"]:
        for pname, f in v["params"].items():
            grad_rows.append({
                "variant": v["variant"], "param": pname, "shape": "×".join(map(str, f["shape"])),
                "max_rel": f["max_rel"], "norm_rel": f["norm_rel"], "fd_norm_rel": f["fd_norm_rel"],
                "fd_coords": f.get("fd_coords"),
                "ok": (f["max_rel"] <= t["max_rel"] and f["norm_rel"] <= t["norm_rel"]
                       and f["fd_norm_rel"] <= t["fd_norm_rel"])})
    cost_rows = [{"variant": v["variant"], "cost": v["cost"], "torch_cost": v["torch_cost"],
                  "cost_rel": v["cost_rel"], "ok": v["cost_rel"] <= t["cost_rel"],
                  "hidden": v.get("hidden"), "dropout": v.get("dropout"), "lam": v.get("lam"),
                  "n_images": v.get("n_images")} for v in gc["variants"]]

    overfit = []
    for v in ev["overfit"]["variants"]:
        init_gap = abs(v["initial_cost"] - v["ln10"])
        overfit.append({**{k: v[k] for k in v if k != "history"}, "init_gap": init_gap,
                        "init_ok": init_gap <= v["init_tolerance"],
                        "final_ok": v["final_loss"] <= v["loss_bound"],
                        "history": {k: [h.get(k) for h in v["history"]]
                                    for k in ("step", "eta", "train_loss", "train_accuracy")}})

    tr = ev["trajectory"]
    trajectory = []
    for v in tr["variants"]:
        wn = v.get("weight_norm_rel", {})
        trajectory.append({"variant": v["variant"], "optimizer": v.get("optimizer", "sgd"),
                           "steps": v["steps"], "max_cost_rel": v["max_cost_rel"],
                           "weight_norm_rel": wn, "max_weight_norm_rel": max(wn.values()) if wn else None,
                           "ok": v["passed"], "costs": v["costs"], "torch_costs": v["torch_costs"],
                           "torch_etas": v.get("torch_etas", [])})
    bug = read_json(R / "gates" / "bug_table.json")
    hashes = {g: ev[g].get("code_hash") for g in GATES}
    return {
        "evidence": {g: {"passed": bool(ev[g]["passed"]), "failures": ev[g].get("failures", []),
                         "code_hash": ev[g].get("code_hash")} for g in GATES},
        "all_passed": all(ev[g]["passed"] for g in GATES),
        "hashes": hashes,
        "thresholds": t,
        "gradcheck_settings": gc.get("settings", {}),
        "gradcheck": grad_rows,
        "gradcheck_costs": cost_rows,
        "overfit": overfit,
        "overfit_settings": ev["overfit"].get("settings", {}),
        "trajectory": trajectory,
        "trajectory_tolerance": tr["tolerance"],
        "trajectory_settings": tr.get("settings", {}),
        "bug_rows": bug["rows"],
        # The gates that are columns of the bug table (a new gate becomes a column by itself).
        "bug_columns": [g for g in (bug.get("settings") or GATES) if all(g in r for r in bug["rows"])],
        "bug_uncaught": bug.get("uncaught", []),
    }


# ------------------------------------------------------------------------ searches / finals
def collect_searches(R: Path, config: dict) -> list[dict]:
    out = []
    for model in config["search"]["models"]:
        stages = {s: read_json(R / "search" / model / f"{s}.json") for s in ("coarse", "fine")}
        out.append({"model": model, "coarse": stages["coarse"], "fine": stages["fine"],
                    "chosen": stages["fine"]["best"]})
    return out


def collect_finals(R: Path, config: dict, audit: dict) -> list[dict]:
    """Final runs with their histories; the schedule recomputed for the figure, and the audit's
    comparison of it with the η each run recorded."""
    checked = audit.get("schedule", {}).get("runs", {})
    out = []
    for model in config["final"]["models"]:
        summary = read_json(R / "final" / model / "summary.json")
        runs = []
        for seed in config["final"]["seeds"]:
            d = R / "final" / model / f"seed{seed}"
            m = read_json(d / "metrics.json")
            sched = schedule_of(m)
            sched["max_abs_diff_recorded"] = checked.get(f"final/{model}/seed{seed}", {}).get("max_abs_diff")
            runs.append({"seed": seed, "metrics": m, "history": read_csv_columns(d / "history.csv"),
                         "schedule": sched})
        weight_images = None
        wpath = R / "final" / model / f"seed{config['final']['seeds'][0]}" / "weights.npz"
        if wpath.exists():
            with np.load(wpath) as z:
                if set(z.files) == {"W1", "b1"} and z["W1"].shape[0] == 3072:
                    W = np.asarray(z["W1"], float)
                    weight_images = {"seed": config["final"]["seeds"][0], "images": [
                        _minmax(W[:, c].reshape(3, 32, 32).transpose(1, 2, 0)) for c in range(W.shape[1])]}
        out.append({"model": model, "summary": summary, "runs": runs, "weight_images": weight_images,
                    "spec": summary.get("spec", {}),
                    "published": PUBLISHED.get(PUBLISHED_BY_MODEL.get(model, ""))})
    return out


def _minmax(a):
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def collect_bonus(R: Path, config: dict) -> dict:
    bonus = config.get("bonus") or {}
    out = {}
    if bonus.get("ablation") and (R / "bonus" / "ablation.json").exists():
        out["ablation"] = {**read_json(R / "bonus" / "ablation.json"), "settings": bonus["ablation"]}
    if bonus.get("aug_vs_lambda") and (R / "bonus" / "aug_vs_lambda.json").exists():
        out["aug_vs_lambda"] = {**read_json(R / "bonus" / "aug_vs_lambda.json"),
                                "settings": bonus["aug_vs_lambda"]}
    return out


def collect(results_dir, config: dict, audit: dict, benchmark_paths=None, repo_dir=None) -> dict:
    """The whole report context; figures are made from it separately.

    audit: audit.json's content; benchmark_paths: this config's jobs' benchmark files (None:
    no benchmark table).
    """
    R = Path(results_dir)
    repo = Path(repo_dir) if repo_dir else Path(__file__).resolve().parents[2]
    data = collect_data(R)
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "results_dir": str(config.get("results", R)),
        "published": PUBLISHED,
        "data": data,
        "gates": collect_gates(R),
        "audit": audit,
        "searches": collect_searches(R, config),
        "finals": collect_finals(R, config, audit),
        "bonus": collect_bonus(R, config),
        "benchmarks": collect_benchmarks(benchmark_paths, R / "benchmarks"),
        "provenance": collect_provenance(config, repo, data["download"].get("md5")),
    }

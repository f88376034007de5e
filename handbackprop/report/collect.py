"""Read every output of the study into one plain context dict for the report.

Nothing here computes a result the workflow has not already computed, except what the
report itself must check or summarise: the code-hash comparison, the learning-rate schedule
(recomputed exactly with the training code's own schedule function), benchmark totals and
provenance (git, package versions, machine). Paths follow the workflow's output layout below
the results directory; the lists of models and seeds come from the config.
"""
from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..nn import code_hash as current_code_hash
from ..nn.schedule import cyclic_lr

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
PACKAGES = ("numpy", "pandas", "matplotlib", "jinja2", "torch", "snakemake", "threadpoolctl", "pyyaml")


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


def schedule_of(metrics: dict) -> dict:
    """eta at every step of a run, from the training code's own schedule function."""
    tc = metrics["train_config"]
    steps = np.arange(int(metrics["steps"]))
    eta = cyclic_lr(steps, tc["eta_min"], tc["eta_max"], int(metrics["n_s"]))
    return {"step": steps.tolist(), "eta": np.atleast_1d(eta).tolist(), "n_s": int(metrics["n_s"]),
            "eta_min": tc["eta_min"], "eta_max": tc["eta_max"], "steps": int(metrics["steps"])}


def collect_finals(R: Path, config: dict) -> list[dict]:
    out = []
    for model in config["final"]["models"]:
        summary = read_json(R / "final" / model / "summary.json")
        runs = []
        for seed in config["final"]["seeds"]:
            d = R / "final" / model / f"seed{seed}"
            m = read_json(d / "metrics.json")
            hist = read_csv_columns(d / "history.csv")
            sched = schedule_of(m)
            # The recomputed schedule against the eta the run recorded, at the recorded steps.
            rec = [(int(s), e) for s, e in zip(hist.get("step", []), hist.get("eta", []))
                   if 0 <= s < len(sched["eta"]) and not math.isnan(e)]
            sched["max_abs_diff_recorded"] = max((abs(sched["eta"][s] - e) for s, e in rec), default=None)
            runs.append({"seed": seed, "metrics": m, "history": hist, "schedule": sched})
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


# ------------------------------------------------------------------------------ code hashes
def collect_hashes(R: Path, gates: dict, finals: list[dict], run_paths=None) -> dict:
    """Every training run's code hash against the hash the gates verified.

    run_paths: the metrics.json files of this run's training jobs (the report rule's inputs);
    None globs every metrics.json under R, stale leftovers of other configs included.
    """
    gate_hashes = set(gates["hashes"].values())
    verified = next(iter(gate_hashes)) if len(gate_hashes) == 1 else None
    runs = {}
    for f in finals:
        for r in f["runs"]:
            runs[str(Path("final") / f["model"] / f"seed{r['seed']}")] = r["metrics"].get("code_hash")
        runs[str(Path("final") / f["model"] / "summary")] = f["summary"].get("code_hash")
    # Search and bonus runs are upstream of the declared tables: read each of them too.
    if run_paths is None:
        run_paths = [p for sub in ("search", "bonus", "final") for p in sorted((R / sub).glob("**/metrics.json"))]
    for p in map(Path, run_paths):
        key = str(p.resolve().parent.relative_to(R.resolve()))
        if key not in runs:
            runs[key] = read_json(p).get("code_hash")
    mismatched = sorted(k for k, h in runs.items() if h != verified)
    now = current_code_hash()
    return {"verified": verified, "gates_agree": len(gate_hashes) == 1, "n_runs": len(runs),
            "all_match": verified is not None and not mismatched, "mismatched": mismatched,
            "checkout": now, "checkout_matches": now == verified}


# ------------------------------------------------------------------------------- benchmarks
def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def collect_benchmarks(R: Path) -> dict:
    """Per-stage wall time and peak memory from Snakemake's benchmark TSVs (globbed, not inputs)."""
    groups: dict[str, dict] = {}
    base = R / "benchmarks"
    for p in sorted(base.glob("**/*.tsv")):
        rel = p.relative_to(base).with_suffix("")
        last = re.sub(r"(_?(l\d+|seed\d+|\d+))+$", "", rel.name)
        stage = "/".join([*rel.parent.parts, last] if last else rel.parent.parts) or rel.name
        with open(p, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        for row in rows:
            g = groups.setdefault(stage, {"stage": stage, "jobs": 0, "seconds": 0.0, "max_seconds": 0.0,
                                          "max_rss_mb": math.nan, "cpu_time": 0.0})
            s, rss = _num(row.get("s")), _num(row.get("max_rss"))
            g["jobs"] += 1
            g["seconds"] += 0.0 if math.isnan(s) else s
            g["max_seconds"] = max(g["max_seconds"], 0.0 if math.isnan(s) else s)
            g["cpu_time"] += 0.0 if math.isnan(_num(row.get("cpu_time"))) else _num(row.get("cpu_time"))
            if not math.isnan(rss):
                g["max_rss_mb"] = rss if math.isnan(g["max_rss_mb"]) else max(g["max_rss_mb"], rss)
    rows = list(groups.values())
    rss = [g["max_rss_mb"] for g in rows if not math.isnan(g["max_rss_mb"])]
    return {"rows": rows, "total_seconds": sum(g["seconds"] for g in rows),
            "total_jobs": sum(g["jobs"] for g in rows), "peak_rss_mb": max(rss) if rss else None}


# ------------------------------------------------------------------------------- provenance
def _git(repo: Path, *args) -> tuple[str | None, str]:
    """(stdout, "") on success, (None, why) otherwise."""
    try:
        p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    if p.returncode != 0:
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"git exited {p.returncode}"
        return None, f"{why} (in {repo})"
    return p.stdout.rstrip("\n"), ""  # keep porcelain's leading status columns


def collect_git(repo: Path) -> dict:
    commit, why = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {"available": False, "commit": None, "dirty": None, "changed": [], "reason": why}
    status, _ = _git(repo, "status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"available": True, "commit": commit.strip(), "short": commit.strip()[:12],
            "branch": _git(repo, "rev-parse", "--abbrev-ref", "HEAD")[0],
            "dirty": bool(changed), "changed": changed}


def collect_versions() -> list[dict]:
    out = [{"package": "python", "version": platform.python_version()}]
    for name in PACKAGES:
        try:
            v = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            v = None
        out.append({"package": name, "version": v})
    return out


def collect_machine() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value and not value.isdigit():
                    cpu = value
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 ** 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"cpu": cpu or platform.processor() or "unknown", "logical_cores": os.cpu_count(),
            "usable_cores": usable, "memory_gb": mem_gb, "platform": platform.platform(),
            "python": sys.version.split()[0]}


def config_text(config: dict) -> str:
    try:
        import yaml
        return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    except ImportError:  # the report env may lack PyYAML: JSON is YAML too
        return json.dumps(config, indent=2)


# ----------------------------------------------------------------------------------- all
def collect(results_dir, config: dict, repo_dir=None, run_paths=None) -> dict:
    """The whole report context; figures are made from it separately."""
    R = Path(results_dir)
    repo = Path(repo_dir) if repo_dir else Path(__file__).resolve().parents[2]
    gates = collect_gates(R)
    finals = collect_finals(R, config)
    data = collect_data(R)
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "results_dir": str(config.get("results", R)),
        "published": PUBLISHED,
        "data": data,
        "gates": gates,
        "searches": collect_searches(R, config),
        "finals": finals,
        "bonus": collect_bonus(R, config),
        "hashes": collect_hashes(R, gates, finals, run_paths),
        "benchmarks": collect_benchmarks(R),
        "provenance": {"config": config, "config_text": config_text(config), "git": collect_git(repo),
                       "versions": collect_versions(), "machine": collect_machine(),
                       "data_md5": data["download"].get("md5")},
    }

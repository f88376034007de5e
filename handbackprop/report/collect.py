"""Reading the study's outputs into one plain context dict for the report.

Nothing here computes or judges a result: the workflow computed every figure, the gates
recorded their verdicts, and the audit rule (audit.py) checked the runs and wrote
``report/audit.json``, which is read here like any output. Every file comes from the report
rule's named inputs (inputs.py); which model or seed a file holds, it says itself. A new
section's data is one more ``collect_*`` function here, called from ``collect``.
"""
from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..audit.runs import schedule_of
from .benchmarks import collect_benchmarks
from .costs import collect_costs
from .inputs import Inputs
from .provenance import collect_provenance
from .published import PUBLISHED_BY_MODEL, published_text

# The only figures typed in (published.py): the published reference results, always labelled.
PUBLISHED = PUBLISHED_BY_MODEL

GATES = ("gradcheck", "overfit", "trajectory", "stacked")
# A bug-table cell: the gate failed on the bug, passed despite it, or never ran the planted code.
BUG_CELLS = ("caught", "passed", "not run")
CORRECT_CODE = "(none: correct code)"  # the bug table's control row
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
def collect_data(inp: Inputs) -> dict:
    stats = {s: read_json(inp.one(f"{s}_stats")) for s in ("search", "final")}
    names = stats["final"]["label_names"]
    with np.load(inp.one("norm")) as z:
        mean, std = np.asarray(z["mean"], float), np.asarray(z["std"], float)
    y = np.load(inp.one("y_train"))
    X = np.load(inp.one("X_train"), mmap_mode="r")  # the real split is 600 MB: read rows only
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
                       "seed": st.get("seed"), "class_counts": st["class_counts"],
                       "test_withheld": bool(st.get("test_withheld"))})
    channels = []
    for i, ch in enumerate(("red", "green", "blue")):
        m, s = mean.reshape(3, -1)[i], std.reshape(3, -1)[i]
        channels.append({"channel": ch, "mean_mean": float(m.mean()), "mean_min": float(m.min()),
                         "mean_max": float(m.max()), "std_mean": float(s.mean()),
                         "std_min": float(s.min()), "std_max": float(s.max())})
    return {
        "download": read_json(inp.one("download")),
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
def verdict(row: dict, key: str, where: str) -> bool:
    """A verdict the gate recorded in its JSON; the report never judges a figure again."""
    if key not in row:
        raise KeyError(f"{where}: no recorded verdict '{key}' (the gate JSON predates per-row "
                       "verdicts: rerun the gate)")
    return bool(row[key])


def collect_gradcheck(gc: dict) -> dict:
    """The gradient check's rows with the gate's verdicts, and the headline: how close our
    gradient is to the long-double one compared with autograd's (worst ratio of our error to
    torch's over every parameter)."""
    t = gc["thresholds"]
    rows = []
    for v in gc["variants"]:
        for pname, f in v["params"].items():
            rows.append({
                "variant": v["variant"], "param": pname, "shape": "×".join(map(str, f["shape"])),
                "batch_norm": bool(v.get("batch_norm")),
                "max_rel": f["max_rel"], "norm_rel": f["norm_rel"], "fd_norm_rel": f["fd_norm_rel"],
                "fd_coords": f.get("fd_coords"), "exact_ours_err": f.get("exact_ours_err"),
                "exact_torch_err": f.get("exact_torch_err"), "exact_ratio": f.get("exact_ratio"),
                "exact_ratio_passed": f.get("exact_ratio_passed"), "limits": f.get("limits"),
                "ok": verdict(f, "passed", f"gradcheck {v['variant']} {pname}")})
    costs = [{"variant": v["variant"], "cost": v["cost"], "torch_cost": v["torch_cost"],
              "cost_rel": v["cost_rel"], "limit": v.get("cost_limit"),
              "ok": verdict(v, "cost_passed", f"gradcheck {v['variant']} cost"),
              "hidden": v.get("hidden"), "dropout": v.get("dropout"), "lam": v.get("lam"),
              "batch_norm": bool(v.get("batch_norm")), "n_images": v.get("n_images"),
              "exact_cost": v.get("exact_cost")} for v in gc["variants"]]
    rated = [r for r in rows if r["exact_ratio"] is not None]
    worst = max(rated, key=lambda r: r["exact_ratio"]) if rated else None
    exact = None
    if worst:
        # met: every parameter's ratio within the goal, as the gate judged each one
        exact = {"worst_ratio": worst["exact_ratio"], "worst_variant": worst["variant"],
                 "worst_param": worst["param"], "goal": t.get("exact_ratio"),
                 "met": all(r["exact_ratio_passed"] is not False for r in rated),
                 "n_params": len(rated), "median_ratio": float(np.median([r["exact_ratio"] for r in rated])),
                 "max_ours_err": max(r["exact_ours_err"] for r in rated),
                 "max_torch_err": max(r["exact_torch_err"] for r in rated)}
    return {"rows": rows, "costs": costs, "exact": exact, "longdouble": gc.get("longdouble"),
            "variants": [v["variant"] for v in gc["variants"]],
            "bn_variants": [v["variant"] for v in gc["variants"] if v.get("batch_norm")]}


def collect_trajectory(tr: dict) -> dict:
    """The trajectory gate's variants, one schema for plain and batch-norm ones: every variant
    records its tolerance, its running statistics ({} without batch norm) and its `evaluation`
    (plain: scored three ways; batch norm: eval()-mode probabilities against torch's)."""
    variants, evaluation, batch_norm = [], [], []
    for v in tr["variants"]:
        wn, tol, ev = v["weight_norm_rel"], v["tolerance"], v["evaluation"] or {}
        features = [w for w, on in (("dropout " + str(v.get("dropout")), v.get("dropout")),
                                    ("flips", v.get("flip")), (f"±{v.get('max_shift')} px shifts", v.get("max_shift")),
                                    ("batch norm", v["batch_norm"])) if on]
        variants.append({"variant": v["variant"], "optimizer": v["optimizer"],
                         "dtype": v["dtype"], "tolerance": tol, "features": features,
                         "batch_norm": v["batch_norm"],
                         "steps": v["steps"], "max_cost_rel": v["max_cost_rel"],
                         "weight_norm_rel": wn, "max_weight_norm_rel": max(wn.values()) if wn else None,
                         "ok": v["passed"], "costs": v["costs"], "torch_costs": v["torch_costs"],
                         "torch_etas": v.get("torch_etas", [])})
        if v["batch_norm"]:
            st, te = v["state_norm_rel"], ev.get("torch_eval", {})
            batch_norm.append({"variant": v["variant"], "optimizer": v["optimizer"],
                               "state_norm_rel": st, "max_state_norm_rel": max(st.values()) if st else None,
                               "eval_probs_norm_rel": te.get("prob_norm_rel"),
                               "eval_probs_max_abs": te.get("prob_max_abs"),
                               "n_eval_rows": ev.get("n_rows"), "tolerance": tol, "ok": v["passed"]})
            continue  # its evaluation is the batch-norm table's
        for key, against in (("forward", "plain forward pass"), ("torch_eval", "torch eval()")):
            if key in ev:
                e = ev[key]
                evaluation.append({"variant": v["variant"], "dtype": v["dtype"],
                                   "against": against, "n_rows": ev.get("n_rows"),
                                   "loss": e.get("loss"), "ref_loss": e.get("ref_loss"),
                                   "loss_rel": e.get("loss_rel"), "accuracy": e.get("accuracy"),
                                   "ref_accuracy": e.get("ref_accuracy"),
                                   "prob_max_abs": e.get("prob_max_abs"),
                                   "mispredicted_rows": e.get("mispredicted_rows"),
                                   "near_tie_rows": e.get("near_tie_rows")})
    ensembles = []
    for dtype, e in (tr.get("ensembles") or {}).items():
        vt, pairs = e.get("vs_torch", {}), e.get("identical_pairs", [])
        ensembles.append({"dtype": dtype, "members": e.get("members"), "n_rows": e.get("n_rows"),
                          "accuracy": vt.get("accuracy"), "ref_accuracy": vt.get("ref_accuracy"),
                          "loss": vt.get("loss"), "ref_loss": vt.get("ref_loss"), "loss_rel": vt.get("loss_rel"),
                          "mispredicted_rows": vt.get("mispredicted_rows"),
                          "near_tie_rows": vt.get("near_tie_rows"), "n_pairs": len(pairs),
                          "pairs_max_loss_rel": max((p["loss_rel"] for p in pairs), default=None),
                          "pairs_differing": sum(p["differing_predictions"] for p in pairs)})
    return {"variants": variants, "evaluation": evaluation, "batch_norm": batch_norm, "ensembles": ensembles,
            "tolerances": sorted({v["tolerance"] for v in variants})}


def collect_overfit(of: dict) -> tuple[list, list]:
    """(variants, init-scale rows: per variant and parameter, documented vs empirical std), each
    with the overfit gate's recorded verdicts."""
    variants, init = [], []
    for v in of["variants"]:
        variants.append({**{k: v[k] for k in v if k not in ("history", "init_scale")},
                         "init_gap": abs(v["initial_cost"] - v["ln10"]),
                         "init_ok": verdict(v, "init_passed", f"overfit {v['variant']} initial cost"),
                         "final_ok": verdict(v, "final_passed", f"overfit {v['variant']} final loss"),
                         "history": {k: [h.get(k) for h in v.get("history", [])]
                                     for k in ("step", "eta", "train_loss", "train_accuracy")}})
        for pname, s in (v.get("init_scale") or {}).items():
            init.append({"variant": v["variant"], "param": pname, **init_scale_row(s),
                         "ok": verdict(s, "passed", f"overfit {v['variant']} initial {pname}")})
    return variants, init


def init_scale_row(s: dict) -> dict:
    """One parameter's initial-scale figures in common columns. Three forms: a documented std
    (empirical std, ratio, allowed factor), a documented constant 1 (γ: max |γ − 1|), a
    documented 0 (biases, β: max |p|)."""
    if "documented_value" in s:
        return {"n": s["n"], "documented": f"exactly {s['documented_value']:g}",
                "measured": f"max |p − {s['documented_value']:g}| = {s['max_abs_dev']:.2e}",
                "ratio": None, "allowed_factor": None}
    if "empirical_std" not in s:
        return {"n": s["n"], "documented": "exactly 0", "measured": f"max |p| = {s['max_abs']:.2e}",
                "ratio": None, "allowed_factor": None}
    return {"n": s["n"], "documented": f"std {s['documented_std']:.4g}", "measured": f"std {s['empirical_std']:.4g}",
            "ratio": s["ratio"], "allowed_factor": s["allowed_factor"]}


NETWORK_CHECKS = ("initial loss", "initial scale", "gradient", "overfit", "trajectory")


def collect_user_gates(paths) -> list[dict]:
    """The gate_user_model verdict of each user model this config trains (the report rule's
    `user_gates`: gates/user/{model}.json): one row per check, in the checks' order."""
    out = []
    for path in paths:
        ev = read_json(path)
        checks = ev.get("evidence", {}).get("checks", {})
        out.append({"model": Path(path).stem, "target": ev["target"], "passed": bool(ev["passed"]),
                    "n_images": ev.get("n_images"), "sha256": ev.get("module_sha256", "")[:12],
                    # check_network's order (the JSON file's keys are sorted)
                    "checks": [{"check": k, "passed": bool(checks[k]["passed"]),
                                "summary": checks[k]["summary"]}
                               for k in sorted(checks, key=lambda k: (k not in NETWORK_CHECKS,
                                                                      NETWORK_CHECKS.index(k)
                                                                      if k in NETWORK_CHECKS else 0))]})
    return out


def collect_gates(inp: Inputs) -> dict:
    ev = {g: read_json(inp.one(g)) for g in GATES}
    gc = collect_gradcheck(ev["gradcheck"])
    overfit, init_scale = collect_overfit(ev["overfit"])
    tr = ev["trajectory"]
    traj = collect_trajectory(tr)
    bug = read_json(inp.one("bug_table"))
    hashes = {g: ev[g].get("code_hash") for g in GATES}
    columns = [g for g in (bug.get("settings") or GATES) if all(g in r for r in bug["rows"])]
    # A row names its scope once the bug table records it; until then the catalogue's bn_ prefix.
    bug_rows = [{**r, "batch_norm": r.get("scope") == "batch_norm" if "scope" in r else r["bug"].startswith("bn_")}
                for r in bug["rows"]]
    planted = [r for r in bug_rows if r["bug"] != CORRECT_CODE]
    counts = {g: {c: sum(1 for r in planted if r.get(g) == c) for c in BUG_CELLS} for g in columns}
    return {
        "evidence": {g: {"passed": bool(ev[g]["passed"]), "failures": ev[g].get("failures", []),
                         "code_hash": ev[g].get("code_hash")} for g in GATES},
        "all_passed": all(ev[g]["passed"] for g in GATES),
        "hashes": hashes,
        "thresholds": ev["gradcheck"]["thresholds"],
        "gradcheck_settings": ev["gradcheck"].get("settings", {}),
        "gradcheck": gc["rows"],
        "gradcheck_costs": gc["costs"],
        "gradcheck_exact": gc["exact"],
        "longdouble": gc["longdouble"],
        "gradcheck_bn_variants": gc["bn_variants"],
        "overfit": overfit,
        "init_scale": init_scale,
        "overfit_settings": ev["overfit"].get("settings", {}),
        "trajectory": traj["variants"],
        "trajectory_evaluation": traj["evaluation"],
        "trajectory_bn": traj["batch_norm"],
        "trajectory_ensembles": traj["ensembles"],
        "trajectory_tolerance": tr["tolerance"],
        "trajectory_float32_tolerance": tr.get("float32_tolerance"),
        "trajectory_settings": tr.get("settings", {}),
        "stacked": [{"variant": v["variant"], "dtype": v["dtype"], "lams": v["lams"], "steps": v["steps"],
                     "max_cost_rel": v["max_cost_rel"], "max_weight_rel": v["max_weight_rel"],
                     "tolerance": v["tolerance"], "ok": bool(v["passed"])}  # the gate's verdict
                    for v in ev["stacked"]["variants"]],
        "bug_rows": bug_rows,
        # The gates that are columns of the bug table (a new gate becomes a column by itself).
        "bug_columns": columns,
        "bug_counts": counts,
        "bug_planted": len(planted),
        "bug_planted_bn": sum(1 for r in planted if r["batch_norm"]),
        "bug_uncaught": bug.get("uncaught", []),
    }


# ------------------------------------------------------------------------ searches / finals
def collect_searches(paths) -> list[dict]:
    """Each model's coarse and fine tables (`paths`: every table; each names its model and stage),
    in the order of the first table of each model."""
    by_model: dict[str, dict] = {}
    for p in paths:
        table = read_json(p)
        by_model.setdefault(table["model"], {})[table["stage"]] = table
    out = []
    for model, stages in by_model.items():
        for st in stages.values():
            st["n_diverged_lams"] = sum(1 for r in st["rows"] if r.get("diverged"))
            st["n_diverged_runs"] = sum(r.get("n_diverged", 0) for r in st["rows"])
            st["n_runs"] = len(st.get("runs", [])) or sum(r.get("n", 1) + r.get("n_diverged", 0) for r in st["rows"])
        out.append({"model": model, "coarse": stages["coarse"], "fine": stages["fine"],
                    "chosen": stages["fine"]["best"], "seeds": stages["fine"].get("seeds", []),
                    "se_rule": stages["fine"].get("se_rule")})
    return out


def collect_finals(inp: Inputs, audit: dict) -> list[dict]:
    """Final runs with their histories; the schedule recomputed for the figure, and the audit's
    comparison of it with the η each run recorded. A run's metrics, history and weights are the
    same position of the inputs final_runs, histories and weights (one rule lists all three)."""
    checked = audit.get("schedule", {}).get("runs", {})
    runs_of: dict[str, list] = {}
    first_weights: dict[str, tuple] = {}  # model -> (seed, weights.npz) of its first run
    for mpath, hpath, wpath in zip(inp.many("final_runs"), inp.many("histories"), inp.many("weights"),
                                   strict=True):
        m = read_json(mpath)
        sched = schedule_of(m)
        sched["max_abs_diff_recorded"] = checked.get(f"final/{m['model']}/seed{m['seed']}", {}).get("max_abs_diff")
        runs_of.setdefault(m["model"], []).append({"seed": m["seed"], "metrics": m, "schedule": sched,
                                                   "history": read_csv_columns(hpath)})
        first_weights.setdefault(m["model"], (m["seed"], wpath))
    out = []
    for spath in inp.many("finals"):
        summary = read_json(spath)
        model = summary["model"]
        weight_images = None
        if model in first_weights:
            seed, wpath = first_weights[model]
            with np.load(wpath) as z:  # a linear classifier's weights drawn as 32x32 images
                if set(z.files) == {"W1", "b1"} and z["W1"].shape[0] == 3072:
                    W = np.asarray(z["W1"], float)
                    weight_images = {"seed": seed, "images": [
                        _minmax(W[:, c].reshape(3, 32, 32).transpose(1, 2, 0)) for c in range(W.shape[1])]}
        runs = runs_of.get(model, [])
        pub = PUBLISHED_BY_MODEL.get(model)
        out.append({"model": model, "summary": summary, "runs": runs, "weight_images": weight_images,
                    "spec": summary.get("spec", {}), "lam_from": summary.get("spec", {}).get("lam_from"),
                    "published": pub, "published_text": published_text(pub)})
    return out


def _minmax(a):
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def collect_bonus(inp: Inputs, config: dict) -> dict:
    """The bonus experiments the rule gives (an input with no file: not in this config)."""
    bonus = config.get("bonus") or {}
    out = {}
    if path := inp.optional("recipe"):
        out["recipe"] = {**read_json(path), "settings": bonus["recipe"],
                         "model": (bonus.get("ablation") or {}).get("model")}
    if path := inp.optional("ablation"):
        out["ablation"] = {**read_json(path), "settings": bonus["ablation"]}
    if path := inp.optional("aug_vs_lambda"):
        out["aug_vs_lambda"] = collect_aug_vs_lambda(read_json(path), bonus["aug_vs_lambda"])
    if path := inp.optional("init_sensitivity"):
        out["init_sensitivity"] = collect_init_sensitivity(read_json(path), bonus["init_sensitivity"],
                                                           inp.many("init_histories"))
    return out


def collect_aug_vs_lambda(av: dict, settings: dict) -> dict:
    """The rows, per-condition mean ± std over seeds per λ (diverged runs left out), the fitted
    optimum per seed and the shift with its interval."""
    per_lam = []
    for aug in (False, True):
        for lam_ in sorted({r["lam"] for r in av["rows"] if r["augmentation"] == aug}):
            sel = [r for r in av["rows"] if r["augmentation"] == aug and r["lam"] == lam_]
            trained = [r["val_accuracy"] for r in sel if not r.get("diverged")]
            per_lam.append({"augmentation": aug, "lam": lam_, "log10_lam": sel[0]["log10_lam"],
                            "n": len(trained), "n_diverged": len(sel) - len(trained),
                            "val_accuracy_mean": float(np.mean(trained)) if trained else None,
                            "val_accuracy_std": float(np.std(trained, ddof=1)) if len(trained) > 1 else None})
    return {**av, "per_lam": per_lam, "settings": settings}


def matching_input(recorded: str, paths: list[Path]) -> Path | None:
    """The input whose path ends with the path the init table recorded (it records them below
    the results folder), or None."""
    parts = Path(recorded).parts
    return next((p for p in paths if p.parts[-len(parts):] == parts or p == Path(recorded)), None)


def collect_init_sensitivity(init: dict, settings: dict, histories: list[Path]) -> dict:
    rows = []
    for r in init["rows"]:
        runs = []
        for h in r.get("histories", []):
            path = matching_input(h, histories)
            seed = next((part[4:] for part in Path(h).parts if part.startswith("seed")), "?")
            runs.append({"path": h, "seed": seed,
                         "history": read_csv_columns(path) if path is not None else None})
        rows.append({**r, "runs": runs})
    return {**init, "rows": rows, "settings": settings}


def recorded_eta(runs: list[dict], model: str) -> tuple[str, float, float]:
    """(η source, η_min, η_max) that `model`'s training runs recorded (metrics.json `eta`); every
    run of a model resolves the same η, and a disagreement is an error naming them."""
    seen = {(r["eta"]["eta_source"], r["eta"]["eta_min"], r["eta"]["eta_max"])
            for r in runs if r["model"] == model}
    if len(seen) != 1:
        raise ValueError(f"report: the training runs of {model!r} record "
                         f"{'no η' if not seen else 'different η: ' + str(sorted(seen))}")
    return seen.pop()


def collect_lr_range(paths, runs: list[dict]) -> list[dict]:
    """Each model's range test (`paths`: the rule's; each names its model), with the η its
    training runs recorded: the test's bounds, or fixed in config.yaml (then both are shown)."""
    out = []
    for path in paths:
        rt = read_json(path)
        model = rt["model"]
        b = rt["bounds"]
        source, eta_min, eta_max = recorded_eta(runs, model)
        out.append({"model": model, "eta_source": source, "bounds": b, "rule": b["rule"],
                    "eta_min_used": eta_min, "eta_max_used": eta_max,
                    "fixed": source == "config", "settings": rt["settings"], "spec": rt["spec"],
                    "stopped_early": rt["stopped_early"], "stop": rt.get("stop"),
                    "steps_done": rt["steps_done"], "steps_planned": rt["steps_planned"],
                    "n_train": rt.get("n_train"), "n_val_rows": rt.get("n_val_rows"),
                    "curve": {k: [r[k] for r in rt["records"]] for k in
                              ("step", "eta", "loss_raw", "loss_smoothed", "val_accuracy")},
                    "smoothed_val_accuracy": b.get("smoothed_val_accuracy")})
    return out


def collect(inputs, config: dict, results_dir, repo_dir=None, cores=None) -> dict:
    """The whole report context; figures are made from it separately.

    inputs: the report rule's named inputs (name -> path or paths; inputs.py); results_dir: the
    results folder (the base of the benchmark and run paths in the cost table); cores: the cores
    the study ran on (None: unknown, e.g. on a cluster).
    """
    inp = inputs if isinstance(inputs, Inputs) else Inputs(inputs)
    R = Path(results_dir)
    repo = Path(repo_dir) if repo_dir else Path(__file__).resolve().parents[2]
    audit = read_json(inp.one("audit"))
    data = collect_data(inp)
    benchmarks = inp.many("benchmarks")
    runs = [read_json(p) for p in inp.many("runs")]  # every training run's metrics.json
    return {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "results_dir": str(config.get("results", R)),
        "published": [{"model": m, "network": e["network"], "text": published_text(e)}
                      for m, e in PUBLISHED_BY_MODEL.items()],
        "data": data,
        "gates": {**collect_gates(inp), "user_models": collect_user_gates(inp.many("user_gates"))},
        "audit": audit,
        "lr_range": collect_lr_range(inp.many("lr_range"), runs),
        "searches": collect_searches(inp.many("searches")),
        "finals": collect_finals(inp, audit),
        "bonus": collect_bonus(inp, config),
        "benchmarks": collect_benchmarks(benchmarks, R / "benchmarks"),
        "costs": collect_costs(benchmarks, R / "benchmarks", inp.many("runs"), R, inp.optional("machine_gemm"),
                               config["search"]["models"], cores),
        "provenance": collect_provenance(config, repo, data["download"].get("md5")),
    }

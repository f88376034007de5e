"""Tables that aggregate many training runs: searches, final runs, ablation, augmentation vs lambda."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json
from .data.splits import load_split
from .experiment import confusion_matrix, load_weights
from .nn.network import Network
from .nn.train import ensemble_metrics
from .search import best_row, lambda_shift_statement

ROW_KEYS = ("lambda", "log10_lambda", "seed", "val_accuracy", "val_cost", "val_loss",
            "train_accuracy", "train_cost", "train_loss", "seconds")


def read_runs(paths) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def write_table(table: dict, json_path, csv_path):
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(table["rows"]).to_csv(tmp, index=False)
    write_json(json_path, table)


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def search_table(paths, stage: str, model: str) -> dict:
    rows = []
    for p, m in zip(paths, read_runs(paths)):
        row = {k: m.get(k) for k in ROW_KEYS}
        row["run"] = Path(p).parent.name
        rows.append(row)
    rows.sort(key=lambda r: r["lambda"])
    return {"stage": stage, "model": model, "rows": rows, "best": best_row(rows)}


def networks_from(weight_paths, spec: dict, dtype: str) -> list[Network]:
    nets = []
    for p in weight_paths:
        params = load_weights(p)
        sizes = [params["W1"].shape[0]] + [params[f"W{i}"].shape[1] for i in range(1, len(params) // 2 + 1)]
        nets.append(Network(sizes, dropout=spec.get("dropout", 0.0), dtype=np.dtype(dtype)).set_params(params))
    return nets


def ensemble_of(weight_paths, spec, dtype, data, lam) -> dict:
    """Average softmax over the networks: test accuracy and confusion matrix."""
    nets = networks_from(weight_paths, spec, dtype)
    metrics, pred = ensemble_metrics(nets, data["X_test"], data["y_test"], lam)
    return {"members": len(nets), "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"], "confusion": confusion_matrix(data["y_test"], pred).tolist()}


def final_summary(run_paths, weight_paths, split_dir, model: str, ensemble: bool, dtype: str) -> dict:
    runs = read_runs(run_paths)
    accs = [r["test_accuracy"] for r in runs]
    mean, std = mean_std(accs)
    out = {"model": model, "lambda": runs[0]["lambda"], "seeds": [r["seed"] for r in runs],
           "test_accuracy": accs, "test_accuracy_mean": mean, "test_accuracy_std": std,
           "seconds": [r["seconds"] for r in runs], "spec": runs[0]["spec"],
           "code_hash": runs[0]["code_hash"], "cycles": runs[0]["cycles"]}
    text = (f"{model}: test accuracy {100 * mean:.2f}% ± {100 * std:.2f} over {len(accs)} seed(s), "
            f"lambda {out['lambda']:.3g}")
    if ensemble and len(weight_paths) > 1:
        out["ensemble"] = ensemble_of(weight_paths, runs[0]["spec"], dtype, load_split(split_dir),
                                      out["lambda"])
        text += f"; ensemble of {len(weight_paths)}: {100 * out['ensemble']['test_accuracy']:.2f}%"
    out["text"] = text
    return out


def ablation_table(run_paths, split_dir, dtype: str) -> dict:
    runs = read_runs(run_paths)
    by_variant: dict[str, list[tuple[str, dict]]] = {}
    for p, r in zip(run_paths, runs):
        by_variant.setdefault(r["wildcards"].get("variant", "all"), []).append((p, r))
    rows = []
    data = None
    for variant, items in by_variant.items():
        accs = [r["test_accuracy"] for _, r in items]
        mean, std = mean_std(accs)
        rows.append({"variant": variant, "test_accuracy_mean": mean, "test_accuracy_std": std,
                     "seeds": len(items), "seconds_mean": mean_std([r["seconds"] for _, r in items])[0],
                     "lambda": items[0][1]["lambda"]})
        if variant == "all" and len(items) > 1:
            data = data or load_split(split_dir)
            ens = ensemble_of([Path(p).with_name("weights.npz") for p, _ in items], items[0][1]["spec"],
                              dtype, data, items[0][1]["lambda"])
            rows.append({"variant": "all + ensemble", "test_accuracy_mean": ens["test_accuracy"],
                         "test_accuracy_std": 0.0, "seeds": len(items),
                         "seconds_mean": sum(r["seconds"] for _, r in items),
                         "lambda": items[0][1]["lambda"]})
    text = "\n".join(f"{r['variant']:>20}: {100 * r['test_accuracy_mean']:.2f}% ± "
                     f"{100 * r['test_accuracy_std']:.2f} ({r['seconds_mean']:.0f} s)" for r in rows)
    return {"rows": rows, "text": text}


def aug_vs_lambda(paths) -> dict:
    rows = []
    for m in read_runs(paths):
        rows.append({"augmentation": m["wildcards"]["aug"] == "aug", "seed": m["seed"],
                     "lambda": m["lambda"], "log10_lambda": m["log10_lambda"],
                     "val_accuracy": m["val_accuracy"], "val_cost": m["val_cost"]})
    rows.sort(key=lambda r: (r["augmentation"], r["seed"], r["lambda"]))
    best = {}
    for aug in (False, True):
        label = "augmentation" if aug else "no augmentation"
        best[label] = {}
        for seed in sorted({r["seed"] for r in rows}):
            sel = [r for r in rows if r["augmentation"] == aug and r["seed"] == seed]
            best[label][str(seed)] = best_row(sel)["log10_lambda"]
    seeds = sorted(best["no augmentation"])
    shift = lambda_shift_statement(
        {k: [best[k][s] for s in seeds] for k in best}, "no augmentation", "augmentation")
    return {"rows": rows, "best_log10_lambda": best, "shift": shift}

"""One training run of the study, from a preprocessed split to metrics, history and weights."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json
from .data.splits import load_split
from .nn.network import build_network
from .nn.train import TrainConfig, ensemble_metrics, train

NET_KEYS = {"hidden", "dropout"}
TRAIN_KEYS = {"batch_size", "eta_min", "eta_max", "n_s", "points_per_cycle", "train_eval_size",
              "divergence_factor", "optimizer", "momentum", "flip", "max_shift"}


def train_config(spec: dict, lam: float, cycles: int, seed: int, n_train: int) -> TrainConfig:
    """TrainConfig from a merged model+training spec; n_s_epochs sets n_s in epochs."""
    kw = {k: v for k, v in spec.items() if k in TRAIN_KEYS}
    if spec.get("n_s_epochs"):
        kw["n_s"] = int(spec["n_s_epochs"]) * (n_train // int(spec.get("batch_size", 100)))
    return TrainConfig(lam=lam, cycles=cycles, seed=seed, **kw)


def confusion_matrix(y_true, y_pred, k: int = 10) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted."""
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def run(split_dir, spec: dict, lam: float, cycles: int, seed: int, dtype: str,
        evaluate_test: bool, log=print):
    """Train one model; returns (net, result, metrics dict)."""
    data = load_split(split_dir)
    X, y = data["X_train"], data["y_train"]
    net = build_network(X.shape[1], list(spec["hidden"]), 10, spec.get("dropout", 0.0), dtype, seed)
    cfg = train_config(spec, lam, cycles, seed, X.shape[0])
    log(f"training {spec['hidden'] or 'linear'} lambda={lam:.4g} cycles={cycles} seed={seed} "
        f"n_train={X.shape[0]} n_val={data['X_val'].shape[0]} dtype={dtype}")
    result = train(net, X, y, data["X_val"], data["y_val"], cfg, log=log)
    full_train = net.evaluate(X, y, lam)  # the history scores a subset; the end scores all
    metrics = {
        "lambda": lam, "log10_lambda": math.log10(lam) if lam > 0 else None, "seed": seed,
        "cycles": cycles, "n_s": result.n_s, "steps": result.steps, "seconds": result.seconds,
        "dtype": dtype, "spec": spec, "train_config": cfg.to_dict(),
        "n_train": int(X.shape[0]), "n_val": int(data["X_val"].shape[0]),
        **{f"train_{k}": v for k, v in full_train.items()},
        **{k: v for k, v in result.final.items() if k.startswith("val_")},
    }
    if evaluate_test:
        test, pred = ensemble_metrics([net], data["X_test"], data["y_test"], lam)
        metrics.update({f"test_{k}": v for k, v in test.items()})
        metrics["confusion"] = confusion_matrix(data["y_test"], pred).tolist()
        log(f"test accuracy {test['accuracy']:.4f}")
    return net, result, metrics


def save_history(path, history: list[dict]):
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def save_weights(path, params: dict):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **params)


def load_weights(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def write_run(outputs: dict, net, result, metrics: dict):
    """history.csv and weights.npz first, metrics.json last: its presence means the run is complete."""
    save_history(outputs["history"], result.history)
    if "weights" in outputs:
        save_weights(outputs["weights"], net.params)
    write_json(outputs["metrics"], metrics)

"""One training run of the study, from a preprocessed split to metrics, history and weights."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from ..data.splits import load_split
from ..nn.network import build_network
from ..nn.train import TrainConfig, TrainingDiverged, TrainResult, ensemble_metrics, train
from . import kinds, user_model, user_network
from .plan import TRAIN_KEYS, step_size


def train_config(spec: dict, lam: float, cycles: int, seed: int, n_train: int) -> TrainConfig:
    """TrainConfig from a merged model+training spec; n_s_epochs sets n_s in epochs."""
    kw = {k: v for k, v in spec.items() if k in TRAIN_KEYS}
    if spec.get("n_s_epochs"):
        kw["n_s"] = step_size(spec, n_train)
    return TrainConfig(lam=lam, cycles=cycles, seed=seed, **kw)


def confusion_matrix(y_true, y_pred, k: int = 10) -> np.ndarray:
    """(k, k) counts, rows = true class, columns = predicted: entry [i, j] counts images of
    class i predicted as j, the convention of sklearn.metrics.confusion_matrix (checked against
    it in tests/report/test_figures.py). Row sums are the class counts, so the diagonal over
    them is each class's recall, and over the column sums its precision.

    Labels must be integers in [0, k): the flat index true·k + pred would silently move an
    out-of-range prediction into the next row (or fail with a negative one)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-d of one length, got {t.shape} and {p.shape}")
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (not np.issubdtype(v.dtype, np.integer) or v.min() < 0 or v.max() >= k):
            raise ValueError(f"{name} must hold integer classes in [0, {k}), got {v.dtype} "
                             f"in [{v.min()}, {v.max()}]")
    # int64 first: a uint8 label times k would wrap at 256 (NumPy keeps the array's dtype)
    return np.bincount(t.astype(np.int64) * k + p, minlength=k * k).reshape(k, k)


def job_record(kind: str, split_dir, model: str, eta: dict, verified: dict, threads: int, rule: str,
               wildcards: dict) -> dict:
    """What a training job adds to a run's metrics.json about how it was made: the η it resolved
    (resolve.resolve), the gates' code hash it trained under (stage.still_verified), its threads,
    rule and wildcards, and its kind, split and model (kinds.recorded). The single-run jobs
    (train_run.py) and the stage jobs (train_stack.py) both write it through here."""
    return {"eta_source": eta["eta_source"], "eta": eta, **verified, "threads": threads, "rule": rule,
            "wildcards": wildcards, **kinds.recorded(kind, split_dir, model)}


def time_split(result: TrainResult) -> dict:
    """The loop's seconds split into record-point evaluation and the rest (steps, batches). Not
    `train_seconds`: the audit rescores every train_*/val_*/test_* figure of a run."""
    seconds, ev = float(result.seconds), float(result.eval_seconds)
    return {"eval_seconds": ev, "step_seconds": seconds - ev,
            "eval_fraction": ev / seconds if seconds > 0 else None}


def run(split_dir, spec: dict, lam: float, cycles: int, seed: int, dtype: str,
        evaluate_test: bool, record_divergence: bool = False, snapshots: bool = False, log=print):
    """Train one model at a given lam; returns (net, result, metrics dict).

    With `snapshots` (final runs), result.snapshots holds the weights at every cycle end, the
    members of that run's snapshot ensemble.

    With `record_divergence` (search points), a run that diverges is a result, not a failure:
    its metrics say `diverged` with where and why (step, cost, eta, lam, advice), and the
    tables leave it out of the choice of the best. Final runs let the error stop the job.
    """
    data = load_split(split_dir)
    X, y = data["X_train"], data["y_train"]
    if user_model.is_user_model(spec):  # a user's module (config `module:`), gated by its own rule
        net = user_network.build(spec, X.shape[1], dtype, seed)
    else:
        net = build_network(X.shape[1], list(spec["hidden"]), 10, spec.get("dropout", 0.0), dtype,
                            seed, batch_norm=spec.get("batch_norm", False), init=spec.get("init"))
    cfg = dataclasses.replace(train_config(spec, lam, cycles, seed, X.shape[0]),
                              snapshot_cycles=snapshots)
    log(f"training {spec.get('module') or spec['hidden'] or 'linear'} lam={lam:.4g} cycles={cycles} seed={seed} "
        f"n_train={X.shape[0]} n_val={data['X_val'].shape[0]} dtype={dtype}")
    try:
        result = train(net, X, y, data["X_val"], data["y_val"], cfg, log=log)
    except TrainingDiverged as err:
        if not record_divergence:
            raise
        log(f"DIVERGED (recorded, the search goes on): {err}")
        return net, TrainResult(), run_metrics(net, err, data, spec, lam, cycles, seed, dtype, cfg, False)
    metrics = run_metrics(net, result, data, spec, lam, cycles, seed, dtype, cfg, evaluate_test)
    if evaluate_test:
        log(f"test accuracy {metrics['test_accuracy']:.4f}")
    return net, result, metrics


def run_metrics(net, result, data, spec: dict, lam: float, cycles: int, seed: int, dtype: str,
                cfg: TrainConfig, evaluate_test: bool) -> dict:
    """A run's metrics.json content, from its trained network and TrainResult, or from the
    TrainingDiverged that stopped it (the keys every reader expects, in one order; run() and the
    stacked runs of study/stack_runs.py both write through here)."""
    X, y = data["X_train"], data["y_train"]
    common = {"lam": lam, "log10_lam": math.log10(lam) if lam > 0 else None, "seed": seed, "cycles": cycles}
    if isinstance(result, TrainingDiverged):
        return {**common, "dtype": dtype, "spec": spec, "train_config": cfg.to_dict(),
                "n_train": int(X.shape[0]), "n_val": int(data["X_val"].shape[0]),
                "diverged": True, "divergence": result.to_dict(), "seconds": None,
                "eval_seconds": None, "step_seconds": None, "eval_fraction": None,
                "val_accuracy": None, "val_cost": None, "val_loss": None,
                "train_accuracy": None, "train_cost": None, "train_loss": None}
    full_train = net.evaluate(X, y, lam)  # the history scores a subset; the end scores all
    metrics = {
        "diverged": False, **common, "n_s": result.n_s, "steps": result.steps, "seconds": result.seconds,
        **time_split(result),
        "dtype": dtype, "spec": spec, "train_config": cfg.to_dict(),
        "n_train": int(X.shape[0]), "n_val": int(data["X_val"].shape[0]),
        **{f"train_{k}": v for k, v in full_train.items()},
        **{k: v for k, v in result.final.items() if k.startswith("val_")},
    }
    if evaluate_test:
        test, pred = ensemble_metrics([net], data["X_test"], data["y_test"], lam)
        metrics.update({f"test_{k}": v for k, v in test.items()})
        metrics["confusion"] = confusion_matrix(data["y_test"], pred).tolist()
    return metrics

"""The λ-search points of one model at one seed trained as one stack (nn/stack.py), each with
the result `runs.run` would have given it: same (net, result, metrics) triple, so
`runfiles.write_run` writes the same files into the same run folder per (λ, seed).

The metrics have exactly runs.run's keys (tests/nn/test_stack.py compares them). Timing fields
differ by construction: a run's `seconds` is its share of the stack's loop (`train_stack`:
loop seconds / k), its `eval_seconds` its own record-point evaluations.
"""
from __future__ import annotations

import math

from ..data.splits import load_split
from ..nn.network import build_network
from ..nn.stack import train_stack
from ..nn.train import TrainingDiverged, TrainResult, ensemble_metrics
from .runs import confusion_matrix, time_split, train_config


def run_stack(split_dir, spec: dict, lams: list[float], seed: int, cycles: int, dtype: str,
              evaluate_test: bool = False, record_divergence: bool = True, log=print):
    """Train one model at each λ of `lams` (one seed) as a stack; returns a list of
    (net, result, metrics), in the order of `lams`, each as `runs.run(split_dir, spec, lam,
    cycles, seed, dtype, evaluate_test, record_divergence)` returns it.

    record_divergence=False: the first diverged run's TrainingDiverged is raised once the
    stack has finished (the others' results are then lost, as a failing job loses its own).
    The spec must be stackable: plain SGD, no snapshots (`train_stack` says why if not)."""
    data = load_split(split_dir)
    X, y = data["X_train"], data["y_train"]
    nets = [build_network(X.shape[1], list(spec["hidden"]), 10, spec.get("dropout", 0.0), dtype,
                          seed, batch_norm=spec.get("batch_norm", False), init=spec.get("init"))
            for _ in lams]
    cfgs = [train_config(spec, lam, cycles, seed, X.shape[0]) for lam in lams]
    log(f"training {spec['hidden'] or 'linear'} as a stack of {len(lams)}: lams="
        f"{[float(f'{lam:.4g}') for lam in lams]} cycles={cycles} seed={seed} "
        f"n_train={X.shape[0]} n_val={data['X_val'].shape[0]} dtype={dtype}")
    results = train_stack(nets, X, y, data["X_val"], data["y_val"], cfgs, log=log)
    diverged = [r for r in results if isinstance(r, TrainingDiverged)]
    if diverged and not record_divergence:
        raise diverged[0]
    out = []
    for net, lam, cfg, result in zip(nets, lams, cfgs, results):
        common = {"lam": lam, "log10_lam": math.log10(lam) if lam > 0 else None, "seed": seed,
                  "cycles": cycles}
        if isinstance(result, TrainingDiverged):
            log(f"DIVERGED (recorded, the search goes on): {result}")
            # the keys and order of runs.run's diverged metrics
            out.append((net, TrainResult(), {
                **common, "dtype": dtype, "spec": spec, "train_config": cfg.to_dict(),
                "n_train": int(X.shape[0]), "n_val": int(data["X_val"].shape[0]),
                "diverged": True, "divergence": result.to_dict(), "seconds": None,
                "eval_seconds": None, "step_seconds": None, "eval_fraction": None,
                "val_accuracy": None, "val_cost": None, "val_loss": None,
                "train_accuracy": None, "train_cost": None, "train_loss": None}))
            continue
        full_train = net.evaluate(X, y, lam)  # as runs.run: the history scores a subset
        metrics = {  # the keys and order of runs.run's metrics
            "diverged": False, **common, "n_s": result.n_s, "steps": result.steps,
            "seconds": result.seconds, **time_split(result),
            "dtype": dtype, "spec": spec, "train_config": cfg.to_dict(),
            "n_train": int(X.shape[0]), "n_val": int(data["X_val"].shape[0]),
            **{f"train_{k}": v for k, v in full_train.items()},
            **{k: v for k, v in result.final.items() if k.startswith("val_")},
        }
        if evaluate_test:
            test, pred = ensemble_metrics([net], data["X_test"], data["y_test"], lam)
            metrics.update({f"test_{k}": v for k, v in test.items()})
            metrics["confusion"] = confusion_matrix(data["y_test"], pred).tolist()
        out.append((net, result, metrics))
    return out

"""The λ-search points of one model at one seed trained as one stack (nn/stack.py), each with
the result `runs.run` would have given it: same (net, result, metrics) triple, so
`runfiles.write_run` writes the same files into the same run folder per (λ, seed).

The metrics have exactly runs.run's keys (tests/nn/test_stack.py compares them). Timing fields
differ by construction: a run's `seconds` is its share of the stack's loop (`train_stack`:
loop seconds / k), its `eval_seconds` its own record-point evaluations.
"""
from __future__ import annotations

from ..data.splits import load_split
from ..nn.network import build_network
from ..nn.stack import train_stack
from ..nn.train import TrainingDiverged, TrainResult
from .runs import run, run_metrics, train_config
from .user_model import is_user_model


def stackable(spec: dict) -> bool:
    """Whether `nn.stack.train_stack` can train runs of this spec together: the study's own
    networks with plain SGD only (a momentum or Adam run needs per-run optimiser state the stack
    does not keep; a user's model is their own code, which the stack cannot lay side by side)."""
    return spec.get("optimizer", "sgd") == "sgd" and not is_user_model(spec)


def run_grid(split_dir, spec: dict, lams: list[float], seed: int, cycles: int, dtype: str,
             log=print):
    """The search points `lams` of one model at one seed in one process: as one stack where the
    spec allows (`stackable`), else one after the other through `runs.run`. Either way each
    result is the (net, result, metrics) triple of its run; a diverged run is recorded."""
    if stackable(spec):
        return run_stack(split_dir, spec, lams, seed, cycles, dtype, log=log)
    log(f"not stacked ({spec.get('module') or spec.get('optimizer')}): {len(lams)} runs one after the other")
    return [run(split_dir, spec, lam, cycles, seed, dtype, evaluate_test=False,
                record_divergence=True, log=log) for lam in lams]


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
        if isinstance(result, TrainingDiverged):
            log(f"DIVERGED (recorded, the search goes on): {result}")
        metrics = run_metrics(net, result, data, spec, lam, cycles, seed, dtype, cfg, evaluate_test)
        out.append((net, TrainResult() if isinstance(result, TrainingDiverged) else result, metrics))
    return out

"""Gate 3: the NumPy training loop and a PyTorch one, from the same weights, agree step by step.

A gradient check proves the backward pass; this proves the rest of a step:
the update rule, the learning-rate schedule, the L2 bookkeeping and the
mini-batch order. Variants may train in float32 (against torch in float32, to
`float32_tolerance`) and with dropout and augmentation (torch replays the
loop's random streams and applies its own inverted-dropout scaling and its own
image transforms: gates/torch_replay.py). Given held-out rows, every trained
network is then scored against a plain forward pass and torch in eval() mode,
and ensembles against torch's averaged softmax (gates/evaluation.py).
"""
from __future__ import annotations

import numpy as np

from ..nn.network import Network
from ..nn.train import TrainConfig, train
from . import torch_bn_reference, torch_reference, torch_replay
from .evaluation import ensemble_figures, evaluation_figures
from .gradcheck import norm_relative_error


def torch_steps(start: dict, net: Network, X, y, X_eval, *, optimizer, dtype, dropout, flip,
                max_shift, **sched):
    """Torch's run of the same steps from the same arrays: (costs, etas, final arrays, eval()
    probabilities on X_eval or None). Batch norm: torch.nn.BatchNorm1d; plain float64 without
    random streams: torch's own loop; else a replay of the loop's dropout and augmentation draws."""
    if net.batch_norm:
        return torch_bn_reference.torch_bn_trajectory(
            {k: start[k] for k in net.params}, {k: start[k] for k in net.state}, X, y, X_eval,
            optimizer=optimizer, bn_momentum=net.bn_momentum, eps=net.bn_eps, **sched)
    if dtype == np.float64 and not (dropout or flip or max_shift):
        return (*torch_reference.torch_trajectory(start, X, y, optimizer=optimizer, **sched), None)
    return (*torch_replay.torch_replay_trajectory(start, X, y, optimizer=optimizer, dropout=dropout,
                                                  flip=flip, max_shift=max_shift, dtype=dtype,
                                                  **sched), None)


def trajectory_variant(name: str, spec: dict, X, y, *, lam, seed, steps, batch_size, n_s,
                       eta_min, eta_max, tolerance, float32_tolerance=1e-4, X_eval=None,
                       X_heldout=None, y_heldout=None, models=None) -> dict:
    """One variant, plain or batch norm, in one schema: per-step costs, final arrays (and, for
    batch norm, running statistics) against torch's, and `evaluation` on held-out rows.

    X_eval: rows on which a batch-norm network's eval()-mode probabilities meet torch's;
    X_heldout/y_heldout: rows on which a plain network is scored three ways (evaluation.py).
    models: if a dict, receives name -> (our trained network, its final weights)."""
    optimizer = spec.get("optimizer", "sgd")
    batch_norm = bool(spec.get("batch_norm", False))
    dtype = np.dtype(spec.get("dtype", "float64"))
    dropout, flip, max_shift = spec.get("dropout", 0.0), spec.get("flip", False), spec.get("max_shift", 0)
    if batch_norm and (dtype != np.float64 or dropout or flip or max_shift):
        raise ValueError(f"{name}: a batch-norm trajectory replays float64 steps without dropout "
                         "or augmentation (torch_bn_reference has no replay of either)")
    if batch_norm and (X_eval is None or len(X_eval) == 0):
        raise ValueError(f"{name}: a batch-norm trajectory needs held-out rows to check "
                         "evaluation mode (X_eval is empty)")
    tolerance = float32_tolerance if dtype == np.float32 else tolerance
    net = Network([X.shape[1], *spec["hidden"], 10], dropout=dropout, dtype=dtype,
                  batch_norm=batch_norm, init=spec.get("init"))
    net.init_params(np.random.default_rng(seed))
    start = {k: v.copy() for k, v in net.arrays().items()}  # parameters and running statistics
    sched = dict(lam=lam, seed=seed, batch_size=batch_size, n_s=n_s, eta_min=eta_min,
                 eta_max=eta_max)
    # The gate reads step costs, not the records: plain variants record once a cycle; batch-norm
    # ones keep the loop's default record points, whose eval-mode passes the bug table counts.
    records = {} if batch_norm else {"points_per_cycle": 1}
    cfg = TrainConfig(**sched, optimizer=optimizer, max_steps=steps, divergence_factor=1e6,
                      train_eval_size=len(y), flip=flip, max_shift=max_shift, **records)
    ours = train(net, X, y, None, None, cfg, log=lambda s: None)
    t_costs, t_etas, t_final, t_probs = torch_steps(start, net, X, y, X_eval, optimizer=optimizer,
                                                    dtype=dtype, dropout=dropout, flip=flip,
                                                    max_shift=max_shift, steps=steps, **sched)
    costs = np.array(ours.step_costs)
    cost_rel = np.abs(costs - t_costs) / np.abs(t_costs)
    weight_rel = {k: norm_relative_error(net.params[k], t_final[k]) for k in net.params}
    state_rel = {k: norm_relative_error(net.state[k], t_final[k]) for k in net.state}  # {}: plain
    moved = {k: norm_relative_error(start[k], t_final[k]) if np.any(t_final[k]) else 0.0
             for k in start}
    failures = []
    worst_step = int(np.argmax(cost_rel))
    if not cost_rel.max() <= tolerance:
        failures.append(f"{name}: step {worst_step} cost {costs[worst_step]:.12g} vs torch "
                        f"{t_costs[worst_step]:.12g} (relative {cost_rel.max():.2e} > {tolerance:.0e})")
    for k, r in weight_rel.items():
        if not r <= tolerance:
            failures.append(f"{name}: final {k} differs from torch by {r:.2e} (norm-relative) > "
                            f"{tolerance:.0e}")
    for k, r in state_rel.items():
        if not r <= tolerance:
            failures.append(f"{name}: running statistic {k} differs from torch's BatchNorm1d by "
                            f"{r:.2e} (norm-relative) > {tolerance:.0e}")
    evaluation = None
    if batch_norm:
        evaluation = bn_evaluation(name, net, X_eval, t_probs, tolerance, failures)
    elif X_heldout is not None:
        # The torch side scores the same weights as ours: the trajectory above already bounds
        # how far the two trainings drifted, so this compares the evaluation paths alone (with
        # torch's own drifted weights, an overconfident net's probabilities moved ~1e-10 by
        # rounding in the training, not in the evaluation).
        same = {k: v.copy() for k, v in net.params.items()}
        evaluation, eval_failures = evaluation_figures(name, net, same, X_heldout, y_heldout,
                                                       lam, tolerance)
        failures += eval_failures
        if models is not None:
            models[name] = (net, same)
    return {"variant": name, "optimizer": optimizer, "dtype": dtype.name, "batch_norm": batch_norm,
            "dropout": dropout, "flip": flip, "max_shift": max_shift, "steps": steps, "lam": lam,
            "tolerance": tolerance, "evaluation": evaluation,
            "max_cost_rel": float(cost_rel.max()), "weight_norm_rel": weight_rel,
            "state_norm_rel": state_rel, "weight_moved": moved, "costs": costs.tolist(),
            "torch_costs": t_costs.tolist(), "torch_etas": t_etas.tolist(), "failures": failures,
            "passed": not failures}


def bn_evaluation(name: str, net: Network, X_eval, t_probs, tolerance: float, failures: list) -> dict:
    """Evaluation-mode probabilities (from the running statistics) against torch eval()'s."""
    probs = net.predict_proba(np.asarray(X_eval, dtype=np.float64))
    rel = norm_relative_error(probs, t_probs)
    max_abs = float(np.max(np.abs(probs - t_probs)))
    if not rel <= tolerance:
        failures.append(f"{name}: evaluation-mode probabilities on {len(X_eval)} held-out rows "
                        f"differ from torch eval() by {rel:.2e} (norm-relative, max abs "
                        f"{max_abs:.2e}) > {tolerance:.0e}")
    return {"n_rows": int(len(X_eval)), "torch_eval": {"prob_norm_rel": rel, "prob_max_abs": max_abs}}


def trajectory(variants: dict[str, dict], X, y, X_eval=None, **kw) -> dict:
    """X_eval: held-out rows on which batch-norm variants compare evaluation-mode outputs;
    X_heldout/y_heldout (kw): the rows every other network and the ensembles are scored on."""
    models: dict = {}
    results = [trajectory_variant(name, spec, X, y, X_eval=X_eval, models=models, **kw)
               for name, spec in variants.items()]
    failures = [f for r in results for f in r["failures"]]
    ensembles = {}
    if kw.get("X_heldout") is not None:
        # one ensemble per dtype, of every network trained in it (different architectures too)
        for dt in sorted({r["dtype"] for r in results}):
            members = [models[r["variant"]] for r in results
                       if r["dtype"] == dt and r["variant"] in models]
            if len(members) < 2:
                continue
            tol = kw.get("float32_tolerance", 1e-4) if dt == "float32" else kw["tolerance"]
            ensembles[dt], ens_failures = ensemble_figures(
                dt, members, kw["X_heldout"], kw["y_heldout"], kw["lam"], tol)
            failures += ens_failures
    return {"gate": "trajectory", "passed": not failures, "failures": failures,
            "tolerance": kw["tolerance"], "float32_tolerance": kw.get("float32_tolerance"),
            "variants": results, "ensembles": ensembles}

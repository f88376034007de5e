"""Gate 3 for batch-norm networks: our training loop against torch.nn.BatchNorm1d, step by step.

Beyond the plain trajectory (per-step cost, final parameters, here γ and β too),
a batch-norm network carries state no gradient sees: the running statistics.
They must match torch's after the trajectory, and so must the evaluation-mode
class probabilities on held-out rows, which are computed from them.
"""
from __future__ import annotations

import numpy as np

from ..nn.network import Network
from ..nn.train import TrainConfig, train
from . import torch_bn_reference
from .gradcheck import norm_relative_error


def bn_trajectory_variant(name: str, spec: dict, X, y, X_eval, *, lam, seed, steps, batch_size,
                          n_s, eta_min, eta_max, tolerance) -> dict:
    if X_eval is None or len(X_eval) == 0:
        raise ValueError(f"{name}: a batch-norm trajectory needs held-out rows to check "
                         "evaluation mode (X_eval is empty)")
    optimizer = spec.get("optimizer", "sgd")
    net = Network([X.shape[1], *spec["hidden"], 10], dtype=np.float64, batch_norm=True,
                  init=spec.get("init"))
    net.init_params(np.random.default_rng(seed))
    start = {k: v.copy() for k, v in net.arrays().items()}
    cfg = TrainConfig(lam=lam, batch_size=batch_size, eta_min=eta_min, eta_max=eta_max, n_s=n_s,
                      seed=seed, optimizer=optimizer, max_steps=steps, divergence_factor=1e6,
                      train_eval_size=len(y))
    ours = train(net, X, y, None, None, cfg, log=lambda s: None)
    t_costs, t_etas, t_final, t_probs = torch_bn_reference.torch_bn_trajectory(
        {k: start[k] for k in net.params}, {k: start[k] for k in net.state},
        X, y, X_eval, lam=lam, seed=seed, batch_size=batch_size, n_s=n_s, eta_min=eta_min,
        eta_max=eta_max, steps=steps, optimizer=optimizer, bn_momentum=net.bn_momentum,
        eps=net.bn_eps)
    probs = net.predict_proba(np.asarray(X_eval, dtype=np.float64))

    costs = np.array(ours.step_costs)
    cost_rel = np.abs(costs - t_costs) / np.abs(t_costs)
    final = net.arrays()
    weight_rel = {k: norm_relative_error(net.params[k], t_final[k]) for k in net.params}
    state_rel = {k: norm_relative_error(net.state[k], t_final[k]) for k in net.state}
    moved = {k: norm_relative_error(start[k], t_final[k]) if np.any(t_final[k]) else 0.0
             for k in final}
    probs_rel = norm_relative_error(probs, t_probs)
    probs_max_abs = float(np.max(np.abs(probs - t_probs)))

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
    if not probs_rel <= tolerance:
        failures.append(f"{name}: evaluation-mode probabilities on {len(X_eval)} held-out rows "
                        f"differ from torch eval() by {probs_rel:.2e} (norm-relative, max abs "
                        f"{probs_max_abs:.2e}) > {tolerance:.0e}")
    return {"variant": name, "optimizer": optimizer, "batch_norm": True, "steps": steps,
            "lam": lam, "max_cost_rel": float(cost_rel.max()), "weight_norm_rel": weight_rel,
            "state_norm_rel": state_rel, "eval_probs_norm_rel": probs_rel,
            "eval_probs_max_abs": probs_max_abs, "n_eval_rows": int(len(X_eval)),
            "weight_moved": moved, "costs": costs.tolist(), "torch_costs": t_costs.tolist(),
            "torch_etas": t_etas.tolist(), "failures": failures, "passed": not failures}

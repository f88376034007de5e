"""Gate 3: the NumPy training loop and a PyTorch one, from the same weights, agree step by step.

A gradient check proves the backward pass; this proves the rest of a step:
the update rule, the learning-rate schedule, the L2 bookkeeping and the
mini-batch order.
"""
from __future__ import annotations

import numpy as np

from ..nn.network import Network
from ..nn.train import TrainConfig, train
from . import torch_reference
from .trajectory_bn import bn_trajectory_variant
from .gradcheck import norm_relative_error


def trajectory_variant(name: str, spec: dict, X, y, *, lam, seed, steps, batch_size, n_s,
                       eta_min, eta_max, tolerance) -> dict:
    optimizer = spec.get("optimizer", "sgd")
    net = Network([X.shape[1], *spec["hidden"], 10], dtype=np.float64, init=spec.get("init"))
    net.init_params(np.random.default_rng(seed))
    start = {k: v.copy() for k, v in net.params.items()}
    cfg = TrainConfig(lam=lam, batch_size=batch_size, eta_min=eta_min, eta_max=eta_max, n_s=n_s,
                      seed=seed, optimizer=optimizer, max_steps=steps, divergence_factor=1e6,
                      train_eval_size=len(y))
    ours = train(net, X, y, None, None, cfg, log=lambda s: None)
    t_costs, t_etas, t_final = torch_reference.torch_trajectory(
        start, X, y, lam=lam, seed=seed, batch_size=batch_size, n_s=n_s, eta_min=eta_min,
        eta_max=eta_max, steps=steps, optimizer=optimizer)
    costs = np.array(ours.step_costs)
    cost_rel = np.abs(costs - t_costs) / np.abs(t_costs)
    weight_rel = {k: norm_relative_error(net.params[k], t_final[k]) for k in net.params}
    moved = {k: norm_relative_error(start[k], t_final[k]) if np.any(t_final[k]) else 0.0
             for k in net.params}
    failures = []
    worst_step = int(np.argmax(cost_rel))
    if not cost_rel.max() <= tolerance:
        failures.append(f"{name}: step {worst_step} cost {costs[worst_step]:.12g} vs torch "
                        f"{t_costs[worst_step]:.12g} (relative {cost_rel.max():.2e} > {tolerance:.0e})")
    for k, r in weight_rel.items():
        if not r <= tolerance:
            failures.append(f"{name}: final {k} differs from torch by {r:.2e} (norm-relative) > "
                            f"{tolerance:.0e}")
    return {"variant": name, "optimizer": optimizer, "steps": steps, "lam": lam,
            "max_cost_rel": float(cost_rel.max()), "weight_norm_rel": weight_rel,
            "weight_moved": moved, "costs": costs.tolist(), "torch_costs": t_costs.tolist(),
            "torch_etas": t_etas.tolist(), "failures": failures, "passed": not failures}


def trajectory(variants: dict[str, dict], X, y, X_eval=None, **kw) -> dict:
    """X_eval: held-out rows on which batch-norm variants compare evaluation-mode outputs."""
    results = [bn_trajectory_variant(name, spec, X, y, X_eval, **kw) if spec.get("batch_norm")
               else trajectory_variant(name, spec, X, y, **kw) for name, spec in variants.items()]
    failures = [f for r in results for f in r["failures"]]
    return {"gate": "trajectory", "passed": not failures, "failures": failures,
            "tolerance": kw["tolerance"], "variants": results}

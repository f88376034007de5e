"""Gate 2: the initial cost is ln(10), and the real training loop memorises ~100 images."""
from __future__ import annotations

import math

import numpy as np

from ..nn import layers
from ..nn.network import Network
from ..nn.train import TrainConfig, train
from .initialisation import init_scale_figures

LN10 = math.log(10.0)


def overfit_variant(name: str, spec: dict, X, y, *, seed: int, steps: int, eta_max: float,
                    init_tolerance: float, loss_bound: float, dtype="float64",
                    init_scale_tolerance: float = 1.5, log=print) -> dict:
    """One model variant: initial weight scale and initial cost (lambda=0), then train to
    memorise X, y."""
    net = Network([X.shape[1], *spec["hidden"], 10], dropout=0.0, dtype=np.dtype(dtype),
                  batch_norm=spec.get("batch_norm", False), init=spec.get("init"))
    net.init_params(np.random.default_rng(seed))
    init_scale, scale_failures = init_scale_figures(name, net, init_scale_tolerance)
    # The training forward (batch statistics for batch norm), without moving running averages.
    scores, _ = net.forward(np.asarray(X, dtype=net.dtype), training=True, update_stats=False)
    init_loss, _, _ = layers.softmax_cross_entropy(scores, y)
    cfg = TrainConfig(lam=0.0, cycles=1, batch_size=min(100, len(y)), eta_min=eta_max / 10,
                      eta_max=eta_max, n_s=max(1, steps // 2), points_per_cycle=20, seed=seed,
                      max_steps=steps, divergence_factor=1e6, train_eval_size=len(y))
    result = train(net, X, y, None, None, cfg, log=lambda s: log(f"[{name}] {s}"))
    final = result.final
    failures = list(scale_failures)
    # Each check's verdict is recorded beside its figure and limit: the report shows these.
    init_passed = not abs(init_loss - LN10) > init_tolerance
    if not init_passed:
        failures.append(f"{name}: initial cost {init_loss:.4f} is not within {init_tolerance} "
                        f"of ln(10) = {LN10:.4f}")
    if final["train_accuracy"] < 1.0:
        failures.append(f"{name}: training accuracy {final['train_accuracy']:.2%} < 100% "
                        f"after {steps} steps on {len(y)} images")
    final_passed = final["train_loss"] < loss_bound
    if not final_passed:
        failures.append(f"{name}: training loss {final['train_loss']:.4g} not below {loss_bound} "
                        f"after {steps} steps on {len(y)} images")
    return {"variant": name, "initial_cost": init_loss, "ln10": LN10,
            "init_tolerance": init_tolerance, "init_passed": init_passed,
            "final_passed": bool(final_passed and final["train_accuracy"] >= 1.0),
            "init_scale": init_scale,
            "init_scale_tolerance": init_scale_tolerance, "final_loss": final["train_loss"],
            "final_accuracy": final["train_accuracy"], "loss_bound": loss_bound, "steps": steps,
            "n_images": int(len(y)), "history": result.history, "failures": failures,
            "passed": not failures}


def overfit(variants: dict[str, dict], X, y, **kw) -> dict:
    results = [overfit_variant(name, spec, X, y, **kw) for name, spec in variants.items()]
    failures = [f for r in results for f in r["failures"]]
    return {"gate": "overfit", "passed": not failures, "failures": failures, "variants": results}

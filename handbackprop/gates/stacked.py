"""The stacked gate: k runs trained as one stack (nn/stack.py) equal k runs trained one by one.

The single run is what the other gates prove (gradient check, overfit, the trajectory against
torch). The stack reuses the single run's layer functions where their shapes allow, so the bugs
planted there reach it (tests/gates/test_stacked.py counts the calls); what the stack adds — the
side-by-side first layer, the batched deeper layers, the per-run λ, the removal of a diverged
run — is proved here by equality: for each variant, k runs of different λ from one seed are
trained `steps` steps as a stack and, separately, by `train.train`, and every run's per-step
costs and final weights must agree to `tolerance` (float64: rounding alone, ~1e-16). The λ
must differ between runs, or a run's λ applied to another run would go unseen.
"""
from __future__ import annotations

import numpy as np

from ..nn import stack
from ..nn.network import Network
from ..nn.train import TrainConfig, TrainingDiverged, train
from .gradcheck import norm_relative_error


def _nets(X, spec, k, seed, dtype):
    nets = []
    for _ in range(k):
        net = Network([X.shape[1], *spec["hidden"], 10], dropout=spec.get("dropout", 0.0),
                      dtype=dtype, init=spec.get("init"), batch_norm=spec.get("batch_norm", False))
        nets.append(net.init_params(np.random.default_rng(seed)))
    return nets


def stacked_variant(name, spec, X, y, *, lams, seed, steps, batch_size, n_s, eta_min, eta_max,
                    tolerance, float32_tolerance=1e-5) -> dict:
    dtype = np.dtype(spec.get("dtype", "float64"))
    # float32: the stack's GEMMs have other shapes than the single run's, so they round
    # differently (not a bug); float64 leaves rounding at ~1e-16
    tolerance = float32_tolerance if dtype == np.float32 else tolerance
    cfgs = [TrainConfig(lam=lam, batch_size=batch_size, eta_min=eta_min, eta_max=eta_max,
                        n_s=n_s, seed=seed, max_steps=steps, divergence_factor=1e6,
                        train_eval_size=len(y), flip=spec.get("flip", False),
                        max_shift=spec.get("max_shift", 0), points_per_cycle=1) for lam in lams]
    stacked = _nets(X, spec, len(lams), seed, dtype)
    res = stack.train_stack(stacked, X, y, None, None, cfgs, log=lambda s: None)
    failures, cost_rel, weight_rel = [], [], []
    for j, (cfg, r) in enumerate(zip(cfgs, res)):
        single = _nets(X, spec, 1, seed, dtype)[0]
        try:
            ref = train(single, X, y, None, None, cfg, log=lambda s: None)
        except TrainingDiverged as err:
            ref = err
        if isinstance(ref, TrainingDiverged) or isinstance(r, TrainingDiverged):
            if not (isinstance(ref, TrainingDiverged) and isinstance(r, TrainingDiverged)
                    and ref.step == r.step):
                failures.append(f"{name}: run {j} (lam={cfg.lam:g}) diverged "
                                f"{'alone' if isinstance(r, TrainingDiverged) else 'singly only'}")
            continue
        c, c_ref = np.array(r.step_costs), np.array(ref.step_costs)
        same = (c == c_ref) | (np.isnan(c) & np.isnan(c_ref))  # equal, or both inf / both NaN
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = float(np.max(np.where(same, 0.0, np.abs(c - c_ref) / np.abs(c_ref))))
        w = max(norm_relative_error(stacked[j].arrays()[k], v)  # batch norm: the statistics too
                for k, v in single.arrays().items())
        cost_rel.append(rel)
        weight_rel.append(w)
        if not rel <= tolerance:
            failures.append(f"{name}: run {j} (lam={cfg.lam:g}) step costs differ from the single "
                            f"run by {rel:.2e} (relative) > {tolerance:.0e}")
        if not w <= tolerance:
            failures.append(f"{name}: run {j} (lam={cfg.lam:g}) final weights differ from the "
                            f"single run by {w:.2e} (norm-relative) > {tolerance:.0e}")
    return {"variant": name, "lams": list(lams), "steps": steps, "dtype": dtype.name,
            "tolerance": tolerance,
            "max_cost_rel": max(cost_rel, default=None),
            "max_weight_rel": max(weight_rel, default=None),
            "cost_rel": cost_rel, "weight_rel": weight_rel,
            "failures": failures, "passed": not failures}


def stacked_gate(X, y, settings: dict) -> dict:
    """The gate runner's calling convention (runner.GATES: gate(X, y, settings) -> evidence), so
    wiring it is `GATES["stacked"] = stacked_gate` plus its settings; `run_catalogue` with
    planted_bugs.STACKED_BUGS then tables the stacked bug like the others.

    settings: n_images (optional: the first n rows), lams (distinct, at least 2), seed, steps, batch_size, n_s, eta_min, eta_max,
    tolerance (float64), float32_tolerance (optional, 1e-5), variants {name: {hidden, dropout?,
    flip?, max_shift?, dtype?, batch_norm?}}.
    Returns the evidence dict {gate, passed, failures, tolerance, variants: [...]}."""
    n = settings.get("n_images")  # as the runner's gates: the first n rows, in float64
    X, y = np.asarray(X[:n], dtype=np.float64), np.asarray(y[:n])
    lams = list(settings["lams"])
    if len(lams) < 2 or len(set(lams)) != len(lams):
        raise ValueError(f"the stacked gate needs at least two distinct lambdas, got {lams}")
    kw = {key: settings[key] for key in ("seed", "steps", "batch_size", "n_s", "eta_min",
                                         "eta_max", "tolerance")}
    kw["float32_tolerance"] = settings.get("float32_tolerance", 1e-5)
    results = [stacked_variant(name, spec, X, y, lams=lams, **kw)
               for name, spec in settings["variants"].items()]
    failures = [f for r in results for f in r["failures"]]
    return {"gate": "stacked", "passed": not failures, "failures": failures,
            "tolerance": settings["tolerance"], "variants": results}

"""Networks and loops: the study's three gates, generalised to a user's network.

A network is an object with

    n_classes                                   the loss's classes (initial loss ln K)
    init_params(rng) -> {name: array}           the user's initialisation
    data(rng) -> (X, y)                         a small batch to check and overfit on
    loss(params, X, y) -> scalar                the forward + loss, written against an array
                                                namespace (runs on torch for the reference)
    loss_and_grads(params, X, y) -> (loss, {name: grad})   the hand-written backward
    step(params, grads, lr)                     the update (in place, or returns new params)
    lr                                          the learning rate for overfit and trajectory
    init_std = {name: std}  (optional)          the documented initial scale of each weight
    torch_optimizer(tensors, lr) (optional)     the torch optimiser the step should match;
                                                default torch.optim.SGD (plain SGD)

A network the workflow trains (a `models:` entry with `module: path/to/file.py::Name`,
handbackprop/study/user_model.py) also needs

    input_dim                                   the width of the rows it takes (3072 for CIFAR-10)
    decayed = ("W1", ...)                       the parameters λ decays: the study adds λ‖W‖²
                                                to the loss and 2λW to their gradients
    scores(params, X) -> (N, K)                 class scores, for accuracy, loss and ensembles

and n_classes 10; the study trains it with its own optimiser, schedule and λ (the user's `step`
and `lr` serve the checks; the trajectory check proves `step` equals the optimiser).
Example: examples/cifar_mlp.py.

Checks, each in float64:

1. initial loss within 0.5 of ln K, and each weight's std within 1.5x of `init_std`;
2. the whole loss's gradient against autograd on `loss` (the layer checker's figures and limits);
3. overfitting the small batch: the user's own loop drives the loss below `overfit_bound`;
4. trajectory: `trajectory_steps` steps of the user's loop against a torch replay (autograd on
   the user's loss + the torch optimiser), same start, same mini-batches, parameters agreeing
   to 1e-10 norm-relative after every step — a step that is wrong (say, biases never updated)
   passes the gradient check and fails here.
"""
from __future__ import annotations

import math

import numpy as np

from . import contract
from .contract import ContractError
from .errors import Thresholds, compare, exceeded, norm_relative_error


def _step(net, params, grads, lr):
    res = net.step(params, grads, lr)
    return res if res is not None else params


def _torch_grads(net, params, X, y):
    import torch

    pt = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params.items()}
    loss = net.loss(pt, torch.tensor(X), torch.tensor(y))
    if not torch.is_tensor(loss):
        raise ContractError("loss returned a non-tensor for torch inputs: it converts to NumPy "
                            "somewhere; write it against xp = array_namespace(X)")
    gs = torch.autograd.grad(loss, list(pt.values()), allow_unused=True)
    return float(loss.detach()), {k: (g.numpy() if g is not None else np.zeros(pt[k].shape)) for k, g in zip(pt, gs)}


def check_network(net, **kw) -> dict:
    """All four checks (see the module docstring); a wrong network may overflow: that is a
    finding reported by the checks, not a warning to print."""
    with np.errstate(all="ignore"):
        return _check_network(net, **kw)


def _check_network(net, *, seed: int = 0, thresholds: Thresholds = Thresholds(),
                  overfit_steps: int = 300, overfit_bound: float = 0.05,
                  trajectory_steps: int = 20, batch_size: int = 10,
                  trajectory_tolerance: float = 1e-10, name: str | None = None) -> dict:
    import torch

    name = name or getattr(net, "__name__", type(net).__name__)
    net = contract.instantiate(net)
    for attr in ("n_classes", "init_params", "data", "loss", "loss_and_grads", "step", "lr"):
        if not hasattr(net, attr):
            raise ContractError(f"{name}: a network needs `{attr}` (see handbackprop.check.network)")
    rng = np.random.default_rng(seed)
    p0 = {k: np.array(v, dtype=np.float64) for k, v in net.init_params(rng).items()}
    X, y = net.data(rng)
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    checks = {}

    loss0, grads = net.loss_and_grads({k: v.copy() for k, v in p0.items()}, X, y)
    lnk = math.log(net.n_classes)
    checks["initial loss"] = {"passed": abs(loss0 - lnk) <= 0.5, "loss": float(loss0), "ln_K": lnk,
                              "summary": f"{loss0:.4f} vs ln {net.n_classes} = {lnk:.4f} (within 0.5)"}
    stds = getattr(net, "init_std", None) or {}
    ratios = {k: float(p0[k].std() / s) for k, s in stds.items()}
    bad = {k: r for k, r in ratios.items() if not 1 / 1.5 <= r <= 1.5}
    checks["initial scale"] = {"passed": not bad, "ratios": ratios, "summary": (
        "no init_std declared" if not stds else
        ", ".join(f"{k} std {r:.2f}x documented" for k, r in ratios.items()) + (" — outside 1.5x" if bad else ""))}

    t_loss, t_grads = _torch_grads(net, p0, X, y)
    if set(grads) != set(p0):
        raise ContractError(f"{name}.loss_and_grads returned gradients {sorted(grads)}, "
                            f"parameters are {sorted(p0)}")
    figs = {k: compare(np.asarray(grads[k]), t_grads[k]) for k in p0}
    wrong = {k: f for k, f in figs.items() if exceeded(f, thresholds)}
    loss_rel = abs(loss0 - t_loss) / max(1e-300, abs(t_loss))
    checks["gradient"] = {"passed": not wrong and loss_rel <= 1e-12, "arrays": figs, "loss_rel": loss_rel,
                          "summary": ("every parameter agrees with autograd (worst norm rel "
                                      f"{max(f['norm_rel'] for f in figs.values()):.1e}; loss {loss_rel:.1e})"
                                      if not wrong and loss_rel <= 1e-12 else
                                      "; ".join(f"d{k} is wrong: norm rel {f['norm_rel']:.2e}, max rel "
                                                f"{f['max_rel']:.2e}" for k, f in wrong.items())
                                      + (f"; loss differs from torch's by {loss_rel:.1e}" if loss_rel > 1e-12 else ""))}

    params = {k: v.copy() for k, v in p0.items()}
    losses = []
    with np.errstate(all="ignore"):
        for _ in range(overfit_steps):
            loss, g = net.loss_and_grads(params, X, y)
            losses.append(float(loss))
            params = _step(net, params, g, net.lr)
        final = net.loss_and_grads(params, X, y)[0]
    checks["overfit"] = {"passed": bool(final <= overfit_bound), "first": losses[0], "final": float(final),
                         "summary": f"loss {losses[0]:.3f} -> {final:.4f} in {overfit_steps} steps "
                                    f"on {len(y)} rows (bound {overfit_bound})"}

    order = np.random.default_rng([seed, 1]).permutation(len(y))
    batches = [order[(i * batch_size) % len(y):][:batch_size] for i in range(trajectory_steps)]
    ours = {k: v.copy() for k, v in p0.items()}
    pt = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in p0.items()}
    make = getattr(net, "torch_optimizer", None)
    opt = make(list(pt.values()), net.lr) if make else torch.optim.SGD(list(pt.values()), lr=net.lr)
    worst, first_bad = 0.0, None
    for s, idx in enumerate(batches, start=1):
        _, g = net.loss_and_grads(ours, X[idx], y[idx])
        ours = _step(net, ours, g, net.lr)
        opt.zero_grad()
        net.loss(pt, torch.tensor(X[idx]), torch.tensor(y[idx])).backward()
        opt.step()
        errs = {k: norm_relative_error(np.asarray(ours[k]), pt[k].detach().numpy()) for k in pt}
        k = max(errs, key=errs.get)
        worst = max(worst, errs[k])
        if first_bad is None and not errs[k] <= trajectory_tolerance:
            first_bad = (s, k, errs[k])
    checks["trajectory"] = {"passed": first_bad is None, "worst": worst, "steps": trajectory_steps,
                            "summary": (f"{trajectory_steps} steps agree with the torch replay "
                                        f"(worst norm rel {worst:.1e} <= {trajectory_tolerance:.0e})"
                                        if first_bad is None else
                                        f"step {first_bad[0]}: {first_bad[1]} differs from the torch "
                                        f"replay by {first_bad[2]:.2e} norm rel (> {trajectory_tolerance:.0e})")}
    failures = [f"{c}: {v['summary']}" for c, v in checks.items() if not v["passed"]]
    return {"layer": name, "passed": not failures, "verdict": "pass" if not failures else "network wrong",
            "failures": failures, "notes": [], "checks": checks}

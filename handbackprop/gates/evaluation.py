"""Evaluation checks: the path from a trained network to a reported number.

Run by the trajectory gate after its steps, on held-out rows: our
`predict_proba`/`evaluate` against (a) a plain forward pass of the same
network and (b) the torch module with the torch trajectory's final weights in
eval() mode; and `ensemble_metrics` against torch's averaged softmax, and
against the network itself when both members are the same network.

Accuracies are compared prediction by prediction: a row may disagree only
where the reference's two largest probabilities are within the tolerance
(a near-tie that rounding may break either way).
"""
from __future__ import annotations

import numpy as np

from ..nn import layers
from ..nn import train as nn_train
from ..nn.network import Network
from .torch_replay import torch_evaluate


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _prediction_mismatch(pred, ref_probs, tolerance) -> tuple[int, int]:
    """(rows predicted differently from the reference outside near-ties, near-tie rows)."""
    top2 = np.sort(ref_probs, axis=1)[:, -2:]  # (N, 2)
    near_tie = (top2[:, 1] - top2[:, 0]) <= tolerance
    differ = np.asarray(pred) != ref_probs.argmax(axis=1)
    return int(np.sum(differ & ~near_tie)), int(np.sum(near_tie))


def _compare(label: str, ours: dict, ref: dict, tolerance: float, failures: list, name: str) -> dict:
    """ours/ref: {probs (N, K) or None, pred (N,), loss, accuracy[, cost]}."""
    fig = {"loss": ours["loss"], "ref_loss": ref["loss"], "loss_rel": _rel(ours["loss"], ref["loss"]),
           "accuracy": ours["accuracy"], "ref_accuracy": ref["accuracy"]}
    if ours.get("probs") is not None:
        fig["prob_max_abs"] = float(np.max(np.abs(ours["probs"].astype(np.float64) - ref["probs"])))
    if "cost" in ours and "cost" in ref:
        fig["cost_rel"] = _rel(ours["cost"], ref["cost"])
    fig["mispredicted_rows"], fig["near_tie_rows"] = _prediction_mismatch(ours["pred"], ref["probs"],
                                                                          tolerance)
    for key in ("loss_rel", "cost_rel", "prob_max_abs"):
        if key in fig and not fig[key] <= tolerance:
            failures.append(f"{name}: {label}: {key} = {fig[key]:.3e} > {tolerance:.0e} "
                            f"(ours {ours['loss']:.10g}, reference {ref['loss']:.10g})")
    if fig["mispredicted_rows"]:
        failures.append(f"{name}: {label}: {fig['mispredicted_rows']} held-out rows predicted "
                        f"differently (accuracy {ours['accuracy']:.4f} vs reference "
                        f"{ref['accuracy']:.4f})")
    return fig


def _with_pred(m: dict, probs) -> dict:
    return {**m, "probs": probs, "pred": probs.argmax(axis=1)}


def plain_forward(net: Network, X, y) -> dict:
    """Scores from the network's own forward pass (no dropout masks), softmax in float64."""
    scores, _ = net.forward(np.asarray(X, dtype=net.dtype))
    loss, _, probs = layers.softmax_cross_entropy(scores.astype(np.float64), np.asarray(y))
    return {"probs": probs, "pred": probs.argmax(axis=1), "loss": loss,
            "accuracy": float((probs.argmax(axis=1) == y).mean())}


def evaluation_figures(name: str, net: Network, torch_params: dict, X, y, lam: float,
                       tolerance: float) -> tuple[dict, list[str]]:
    """A trained network scored on held-out rows three ways; figures and failures."""
    failures: list[str] = []
    y = np.asarray(y)
    chunk = max(1, len(y) // 3 + 1)  # chunks that do not divide the rows: a short last chunk
    probs = net.predict_proba(X)
    ev = net.evaluate(X, y, lam, batch=chunk)
    ours = _with_pred(ev, probs)
    figs = {"n_rows": int(len(y)), "chunk": chunk,
            "forward": _compare("predict_proba/evaluate vs plain forward", ours,
                                plain_forward(net, X, y), tolerance, failures, name)}
    t = torch_evaluate(torch_params, net.dropout, X, y, lam, net.dtype)
    figs["torch_eval"] = _compare("evaluate vs torch eval()", ours, _with_pred(t, t["probs"]),
                                  tolerance, failures, name)
    return figs, failures


def _twin(net: Network) -> Network:
    return Network(list(net.sizes), dropout=net.dropout, dtype=net.dtype).set_params(
        {k: v.copy() for k, v in net.params.items()})


def ensemble_figures(label: str, members: list[tuple[Network, dict]], X, y, lam: float,
                     tolerance: float) -> tuple[dict, list[str]]:
    """members: (our trained network, torch's final weights for it). Our ensemble_metrics
    against torch's averaged eval() softmax, and each network against an ensemble of two
    copies of itself (loss and accuracy must be the network's own)."""
    failures: list[str] = []
    y = np.asarray(y)
    metrics, pred = nn_train.ensemble_metrics([m for m, _ in members], X, y, lam)
    t = [torch_evaluate(tp, net.dropout, X, y, lam, net.dtype) for net, tp in members]
    t_probs = np.mean([m["probs"].astype(np.float64) for m in t], axis=0)  # (N, K)
    # log of the mean probability of the true class, by log-sum-exp over members (no underflow)
    log_true = np.stack([m["log_probs"][np.arange(len(y)), y] for m in t])  # (members, N)
    log_mean = np.logaddexp.reduce(log_true, axis=0) - np.log(len(t))
    ref = {"probs": t_probs, "loss": float(-log_mean.mean()),
           "accuracy": float((t_probs.argmax(axis=1) == y).mean())}
    figs = {"members": len(members), "n_rows": int(len(y)),
            "vs_torch": _compare(f"ensemble ({label}) vs torch averaged softmax",
                                 {**metrics, "pred": pred}, ref, tolerance, failures, label)}
    twins = []
    for net, _ in members:
        m2, pred2 = nn_train.ensemble_metrics([net, _twin(net)], X, y, lam)
        single = net.evaluate(X, y, lam)
        probs = net.predict_proba(X).astype(np.float64)
        fig = {"loss": m2["loss"], "network_loss": single["loss"],
               "loss_rel": _rel(m2["loss"], single["loss"]), "accuracy": m2["accuracy"],
               "network_accuracy": single["accuracy"],
               "differing_predictions": int(np.sum(pred2 != probs.argmax(axis=1)))}
        if not fig["loss_rel"] <= tolerance or fig["differing_predictions"] or \
                m2["accuracy"] != single["accuracy"]:
            failures.append(f"{label}: ensemble of two identical {net.sizes} networks: loss "
                            f"{m2['loss']:.10g} vs the network's {single['loss']:.10g}, accuracy "
                            f"{m2['accuracy']:.4f} vs {single['accuracy']:.4f}")
        twins.append(fig)
    figs["identical_pairs"] = twins
    return figs, failures

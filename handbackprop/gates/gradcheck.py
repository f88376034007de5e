"""Gate 1: analytic gradients against PyTorch autograd and centred finite differences."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The error figures and the limits' verdicts are the user-facing checker's (handbackprop.check):
# one definition for the study's layers and for a user's. Re-exported: trajectory gates use them.
from ..check.errors import (FIGURE_LIMITS, compare, exact_ratio_exceeded, exceeded,  # noqa: F401
                            max_relative_error, norm_relative_error)
from ..nn.network import Network
from . import exactness, torch_bn_reference, torch_reference


@dataclass(frozen=True)
class GradcheckThresholds:
    # Correct float64 code measures ~1e-16 norm-relative here; a real bug is 1e-4 and up.
    max_rel: float = 1e-7
    norm_rel: float = 1e-10
    cost_rel: float = 1e-12
    fd_norm_rel: float = 1e-6
    # Our float64 error over torch's, both against the long-double gradient; measured 0.17-0.56.
    exact_ratio: float = 2.0


def finite_difference(net: Network, X, y, lam, masks, name, coords, h=1e-6):
    """Centred differences of the cost along sampled coordinates of one parameter."""
    p = net.params[name].reshape(-1)  # a view: writes change the network
    out = np.empty(len(coords))
    for j, c in enumerate(coords):
        old = p[c]
        p[c] = old + h
        plus = net.cost(X, y, lam, masks, update_stats=False)
        p[c] = old - h
        minus = net.cost(X, y, lam, masks, update_stats=False)
        p[c] = old
        out[j] = (plus - minus) / (2 * h)
    return out


def check_variant(name: str, net: Network, X, y, lam: float, masks, rng: np.random.Generator,
                  fd_coords: int, thresholds: GradcheckThresholds, exact: bool = True) -> dict:
    """Every figure for one model variant; `net` must be float64. `exact`: also measure both
    gradients against the long-double one (gates/exactness.py)."""
    if net.dtype != np.float64:
        raise ValueError("gradcheck runs in float64: cast the network first")
    X = np.asarray(X, dtype=np.float64)
    loss, reg, grads = net.cost_and_grads(X, y, lam, masks, update_stats=False)
    reference = (torch_bn_reference.torch_bn_cost_and_grads if net.batch_norm
                 else torch_reference.torch_cost_and_grads)
    t_cost, t_loss, t_grads = reference(net.params, X, y, lam, masks)
    cost = loss + reg
    cost_rel = abs(cost - t_cost) / max(1e-300, abs(t_cost))
    params = {}
    for pname in net.params:
        a, b = grads[pname], t_grads[pname]
        k = min(fd_coords, a.size)
        coords = rng.choice(a.size, size=k, replace=False)
        fd = finite_difference(net, X, y, lam, masks, pname, coords)
        params[pname] = {
            "shape": list(a.shape),
            **compare(a, b),  # max_rel, norm_rel
            "fd_norm_rel": norm_relative_error(a.reshape(-1)[coords], fd),
            "fd_coords": int(k),
        }
    exact_figs = None
    if exact:
        exact_figs = exactness.exactness_figures(net.params, X, y, lam, masks, grads, t_grads,
                                                 cost, t_cost)
        for pname, fig in exact_figs["params"].items():
            params[pname].update({f"exact_{k}": v for k, v in fig.items()})
    failures = []
    cost_passed = not cost_rel > thresholds.cost_rel
    if not cost_passed:
        failures.append(f"{name}: cost {cost:.17g} vs torch {t_cost:.17g} "
                        f"(relative error {cost_rel:.3e} > {thresholds.cost_rel:.0e})")
    # The ratio counts only where long double is wider than float64 (else it tests nothing).
    ratio_counts = bool(exact_figs and exact_figs["extended"])
    for pname, fig in params.items():
        over = exceeded(fig, thresholds)
        for key, value, limit in over:
            failures.append(f"{name}: parameter {pname}: {key} = {value:.3e} > {limit:.0e}")
        ratio_over = exact_ratio_exceeded(fig, thresholds)
        if ratio_counts and ratio_over:
            failures.append(f"{name}: parameter {pname}: error against the long-double gradient "
                            f"{fig['exact_ours_err']:.2e} is {fig['exact_ratio']:.3g}x torch's "
                            f"{fig['exact_torch_err']:.2e} (> {thresholds.exact_ratio:g})")
        # The row's own verdict and the limits it was judged by: the report shows these.
        fig["limits"] = {key: getattr(thresholds, attr) for key, attr in FIGURE_LIMITS if key in fig}
        if "exact_ratio" in fig:
            fig["limits"]["exact_ratio"] = thresholds.exact_ratio
            fig["exact_ratio_passed"] = not ratio_over
        fig["passed"] = not over and not (ratio_counts and ratio_over)
    return {"variant": name, "cost": cost, "torch_cost": t_cost, "cost_rel": cost_rel,
            "cost_limit": thresholds.cost_rel, "cost_passed": cost_passed,
            "loss": loss, "torch_loss": t_loss, "lam": lam, "n_images": int(X.shape[0]),
            "hidden": net.hidden, "dropout": net.dropout, "batch_norm": net.batch_norm,
            "params": params,
            "exact_cost": exact_figs["cost"] if exact_figs else None,
            "failures": failures, "passed": not failures}


def gradcheck(variants: dict[str, dict], X, y, *, lam: float, seed: int, fd_coords: int,
              thresholds: GradcheckThresholds, exact: bool = True) -> dict:
    """variants: name -> {hidden: [...], dropout: p}. Random weights, lam > 0, fixed masks."""
    results = []
    for i, (name, spec) in enumerate(variants.items()):
        rng = np.random.default_rng([seed, i])
        net = Network([X.shape[1], *spec["hidden"], 10], dropout=spec.get("dropout", 0.0),
                      dtype=np.float64, batch_norm=spec.get("batch_norm", False))
        if net.batch_norm:
            net.set_params(batchnorm_gate_point(net, rng))
            masks = net.draw_masks(rng, X.shape[0])
            results.append(check_variant(name, net, X, y, lam, masks, rng, fd_coords, thresholds))
            continue
        # The gate's own random point, not the model's initialiser (the overfit gate checks
        # that): W ~ N(0, 1/fan_in) keeps scores O(1); biases nonzero so their gradients count.
        sizes = net.sizes
        params = {}
        for j, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            params[f"W{j}"] = rng.normal(0, 1 / np.sqrt(d_in), (d_in, d_out))
            params[f"b{j}"] = rng.normal(0, 0.1, d_out)
        net.set_params(params)
        masks = net.draw_masks(rng, X.shape[0])
        results.append(check_variant(name, net, X, y, lam, masks, rng, fd_coords, thresholds,
                                     exact=exact))
    failures = [f for r in results for f in r["failures"]]
    return {"gate": "gradcheck", "passed": not failures, "failures": failures,
            "thresholds": thresholds.__dict__, "variants": results,
            "longdouble": exactness.platform() if exact else None}


def batchnorm_gate_point(net: Network, rng: np.random.Generator) -> dict:
    """The gate's random point for a batch-norm network: W ~ N(0, 1/fan_in); γ near 1
    and β, b nonzero, all distinct, so a bug that treats γ as 1 or β as 0 shows."""
    params = {}
    for j, (d_in, d_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:]), start=1):
        params[f"W{j}"] = rng.normal(0, 1 / np.sqrt(d_in), (d_in, d_out))
        if j < net.n_layers:
            params[f"gamma{j}"] = rng.normal(1.0, 0.2, d_out)
            params[f"beta{j}"] = rng.normal(0, 0.1, d_out)
        else:
            params[f"b{j}"] = rng.normal(0, 0.1, d_out)
    return params


def markdown_table(evidence: dict) -> str:
    t = evidence["thresholds"]
    exact = bool(evidence.get("longdouble"))
    ex_head, ex_rule = (" ours vs exact | torch vs exact | ratio |", "---|---|---|") if exact else ("", "")
    lines = [
        "| variant | parameter | shape | max rel. error | norm rel. error | finite-diff norm rel. |"
        + ex_head,
        "|---|---|---|---|---|---|" + ex_rule,
    ]
    for v in evidence["variants"]:
        for pname, f in v["params"].items():
            ex = (f" {f['exact_ours_err']:.2e} | {f['exact_torch_err']:.2e} | {f['exact_ratio']:.2f} |"
                  if exact else "")
            lines.append(f"| {v['variant']} | {pname} | {'×'.join(map(str, f['shape']))} | "
                         f"{f['max_rel']:.2e} | {f['norm_rel']:.2e} | {f['fd_norm_rel']:.2e} |" + ex)
        lines.append(f"| {v['variant']} | cost | {v['cost']:.6f} | | {v['cost_rel']:.2e} | |"
                     + (" | | |" if exact else ""))
    lines.append(f"| thresholds | | | {t['max_rel']:.0e} | {t['norm_rel']:.0e} (cost {t['cost_rel']:.0e}) "
                 f"| {t['fd_norm_rel']:.0e} |" + (f" | | {t['exact_ratio']:g} |" if exact else ""))
    lines.append("")
    if exact:
        ld = evidence["longdouble"]
        lines.append(f"Exact gradient: np.longdouble ({ld['mantissa_bits'] + 1}-bit mantissa, "
                     f"eps {ld['eps']:.1e}); {ld['note']}. Ratio = our error / torch's.")
        lines.append("")
    lines.append("PASSED" if evidence["passed"] else "FAILED:\n" + "\n".join(evidence["failures"]))
    return "\n".join(lines) + "\n"

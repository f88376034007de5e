"""Exactness: our float64 gradient and torch's, each against the gradient in extended precision.

Agreement with autograd shows two implementations agree; it does not say
which is closer to the exact gradient. Here the same cost, at the same float64
weights, images and dropout masks, is differentiated once more in
`np.longdouble` (80-bit x87 extended on x86-64: 64-bit mantissa, eps ~1.1e-19,
2048x finer than float64) by a small forward/backward written for this
purpose only. Its rounding error is far below float64's, so it serves as the
exact gradient; each float64 gradient's norm-relative error against it is
that implementation's own rounding error. The ratio ours/torch says whether
our backward pass is as accurate as autograd (goal: <= 2).

Where longdouble is no wider than float64 (e.g. aarch64 macOS, Windows), the
reference is not more exact: `platform()` says so and the figures are marked
`extended: false`.
"""
from __future__ import annotations

import numpy as np

LD = np.longdouble


def platform() -> dict:
    fi, f64 = np.finfo(LD), np.finfo(np.float64)
    extended = bool(fi.eps < f64.eps)
    return {"dtype": str(np.dtype(LD)), "bits": int(np.dtype(LD).itemsize * 8),
            "mantissa_bits": int(fi.nmant), "eps": float(fi.eps), "float64_eps": float(f64.eps),
            "extended": extended,
            "note": ("np.longdouble is wider than float64 here" if extended else
                     "np.longdouble is no wider than float64 on this platform: the reference "
                     "gradient is not more exact than the two it judges")}


def longdouble_cost_and_grads(params: dict, X, y, lam: float, masks=None, eps: float = 1e-5):
    """Mean softmax cross-entropy + lam * sum ||W||^2 of the ReLU net, and its gradient,
    all in long double. params W1 (D, H1), b1 (H1,), ...; with batch norm (gamma1 present) a
    hidden layer has W_l, gamma_l, beta_l and normalises by its batch statistics (biased
    variance, `eps` inside the root, as torch's training mode). masks: one (N, H) array per
    hidden layer (already scaled), or None. Returns (cost, {name: grad}) in long double."""
    n_layers = sum(1 for k in params if k.startswith("W"))
    bn = "gamma1" in params
    P = {k: np.asarray(v).astype(LD) for k, v in params.items()}
    y = np.asarray(y)
    n = X.shape[0]
    inputs, pre, norm = [], [], []  # layer inputs (N, D_l); hidden pre-ReLU (N, H_l); BN (ŝ, 1/σ)
    h = np.asarray(X).astype(LD)
    for i in range(1, n_layers + 1):
        inputs.append(h)
        if bn and i < n_layers:
            s_ = h @ P[f"W{i}"]  # (N, H)
            mu = s_.mean(axis=0)
            inv = LD(1) / np.sqrt(((s_ - mu) ** 2).mean(axis=0) + LD(eps))
            s_hat = (s_ - mu) * inv
            norm.append((s_hat, inv))
            z = s_hat * P[f"gamma{i}"] + P[f"beta{i}"]
        else:
            z = h @ P[f"W{i}"] + P[f"b{i}"]  # (N, D_out)
        if i < n_layers:
            pre.append(z)
            h = np.where(z > 0, z, LD(0))
            if masks is not None:
                h = h * np.asarray(masks[i - 1]).astype(LD)
        else:
            h = z
    m = h.max(axis=1, keepdims=True)
    e = np.exp(h - m)  # (N, K)
    lse = m + np.log(e.sum(axis=1, keepdims=True))  # (N, 1)
    loss = (lse[:, 0] - h[np.arange(n), y]).sum() / LD(n)
    reg = LD(lam) * sum((P[f"W{i}"] ** 2).sum() for i in range(1, n_layers + 1))
    d = e / e.sum(axis=1, keepdims=True)
    d[np.arange(n), y] -= LD(1)
    d /= LD(n)  # d cost / d scores (N, K)
    grads = {}
    for i in range(n_layers, 0, -1):
        if bn and i < n_layers:  # d is d cost / d (γ ŝ + β) here
            s_hat, inv = norm[i - 1]
            grads[f"gamma{i}"] = (d * s_hat).sum(axis=0)
            grads[f"beta{i}"] = d.sum(axis=0)
            g = d * P[f"gamma{i}"]
            d = inv * (g - g.mean(axis=0) - s_hat * (g * s_hat).mean(axis=0))  # d / d s
        else:
            grads[f"b{i}"] = d.sum(axis=0)
        grads[f"W{i}"] = inputs[i - 1].T @ d + LD(2) * LD(lam) * P[f"W{i}"]
        if i > 1:
            d = d @ P[f"W{i}"].T  # (N, H_{i-1})
            if masks is not None:
                d = d * np.asarray(masks[i - 2]).astype(LD)
            d = d * (pre[i - 2] > 0)
    return loss + reg, grads


def _norm_rel(a, exact) -> float:
    diff = np.asarray(a).astype(LD) - exact
    den = np.sqrt((exact * exact).sum())
    num = np.sqrt((diff * diff).sum())
    return float(num / den) if den > 0 else float(num)


def exactness_figures(params: dict, X, y, lam: float, masks, ours: dict, torch_grads: dict,
                      ours_cost: float, torch_cost: float) -> dict:
    """Per parameter: our and torch's norm-relative error against the long-double gradient,
    and their ratio (ours / torch; both exactly 0 counts as 1)."""
    cost, exact = longdouble_cost_and_grads(params, X, y, lam, masks)
    per_param = {}
    for k in params:
        e_ours, e_torch = _norm_rel(ours[k], exact[k]), _norm_rel(torch_grads[k], exact[k])
        ratio = e_ours / e_torch if e_torch > 0 else (1.0 if e_ours == 0 else float("inf"))
        per_param[k] = {"ours_err": e_ours, "torch_err": e_torch, "ratio": ratio}
    c = abs(cost)
    return {"cost": {"ours_err": float(abs(LD(ours_cost) - cost) / c),
                     "torch_err": float(abs(LD(torch_cost) - cost) / c)},
            "params": per_param, "extended": platform()["extended"]}

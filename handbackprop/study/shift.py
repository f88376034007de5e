"""Does augmentation move the best λ? A fitted optimum per seed and condition, the paired shift
between conditions, and a confidence interval that decides the verdict.

The optimum of one seed's curve (validation accuracy against log10 λ):
  1. drop diverged points, sort by log10 λ, take the argmax;
  2. window: the `fit_points` grid points centred on the argmax (default 5: the argmax and two
     neighbours each side), shifted inward, not shrunk, when the argmax is at or near the grid's
     edge (fewer points only when the grid itself has fewer);
  3. least-squares quadratic a·x² + b·x + c over the window; when it is concave (a < 0 beyond
     round-off, see FLAT), the optimum is its vertex −b/(2a), clipped to the window's span;
     otherwise (a flat or convex fit: no interior peak) the argmax itself.
  `at_edge` says the argmax is the grid's first or last point, or the vertex was clipped: the
  true optimum may lie outside the grid, and the grid should be widened.

The shift per seed is optimum(aug) − optimum(noaug), paired by seed (same batch order in both
conditions, see nn/train.random_streams). Its mean gets a paired Student-t interval,
mean ± t_{(1+level)/2, n−1} · std(ddof=1)/sqrt(n): with 5–10 seeds a percentile bootstrap over
seeds is too narrow (it has the normal quantile and a /n variance), and the t interval needs no
random seed. The verdict is "smaller" or "larger" only when the interval excludes 0.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

NO_SHIFT = "no shift detectable at this budget"
# A window whose fitted curvature changes the accuracy by less than this fraction of its size
# across the window is flat. A constant curve fits a ≈ ±1e-16 by round-off, and "a < 0" alone
# then took −b/(2a) of two round-off terms as the optimum (anywhere in the window); a real
# accuracy difference is at least 1/n_val ≥ 1e-5, far above 1e-12.
FLAT = 1e-12


def fitted_optimum(log10_lams, accuracies, fit_points: int = 5) -> dict:
    """The optimum of one curve by the rule in the module docstring; None accuracies (diverged
    points) are dropped. Returns log10_lam (the optimum), argmax_log10_lam, window, coeffs
    [a, b, c] (None when no quadratic was fitted), method ('quadratic' or 'argmax'), at_edge."""
    if fit_points < 3 or fit_points % 2 == 0:
        raise ValueError(f"fit_points must be odd and at least 3, got {fit_points}")
    pts = sorted((float(x), float(a)) for x, a in zip(log10_lams, accuracies) if a is not None)
    if not pts:
        raise ValueError("no trained point to fit: every λ of this curve diverged")
    x = np.array([p[0] for p in pts])  # (P,)
    acc = np.array([p[1] for p in pts])  # (P,)
    i = int(np.argmax(acc))  # the first of tied maxima: the smaller λ
    k = min(fit_points, len(x))
    lo = min(max(0, i - k // 2), len(x) - k)
    xw, aw = x[lo:lo + k], acc[lo:lo + k]
    out = {"argmax_log10_lam": float(x[i]), "window": xw.tolist(), "coeffs": None,
           "method": "argmax", "log10_lam": float(x[i]),
           "at_edge": len(x) > 1 and i in (0, len(x) - 1)}
    if k >= 3:
        a, b, c = np.polyfit(xw, aw, 2)
        out["coeffs"] = [float(a), float(b), float(c)]
        half_span = (xw[-1] - xw[0]) / 2
        if a * half_span ** 2 < -FLAT * max(1.0, float(np.abs(aw).max())):
            vertex = -b / (2 * a)
            opt = float(np.clip(vertex, xw[0], xw[-1]))
            out.update(method="quadratic", log10_lam=opt,
                       at_edge=bool(out["at_edge"] or opt != vertex))
    return out


def t_quantile(p: float, df: int) -> float:
    """The p-quantile of Student's t with df degrees of freedom: scipy.stats.t.ppf, the field's
    reference (it replaced a hand-written bisection on a Simpson-rule CDF)."""
    if not 0 < p < 1 or df < 1:
        raise ValueError(f"t quantile needs 0 < p < 1 and df >= 1, got p={p}, df={df}")
    return float(stats.t.ppf(p, df))


def paired_t_interval(diffs, level: float = 0.95) -> dict:
    """mean, std (ddof=1) and the two-sided `level` t interval of the mean of paired
    differences; the interval is None below two differences (no estimate of the spread)."""
    d = np.asarray(diffs, float)
    n = len(d)
    if n == 0:
        raise ValueError("no seed has both conditions: nothing to compare")
    mean = float(d.mean())
    if n < 2:
        return {"mean": mean, "std": None, "n": n, "ci_low": None, "ci_high": None, "t": None}
    std = float(d.std(ddof=1))  # ddof=1: the sample estimate the t distribution goes with
    t = t_quantile((1 + level) / 2, n - 1)  # scipy.stats.t.ppf
    half = t * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "ci_low": mean - half, "ci_high": mean + half, "t": t}


def _seed_order(seed):
    """Numeric seeds (also as strings, JSON's keys) in numeric order, then any others."""
    s = str(seed)
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


EDGE = "no verdict: optima at the grid's edge"


def shift_statistic(optima: dict[str, dict], a: str, b: str, level: float = 0.95,
                    at_edge: dict[str, dict] | None = None) -> dict:
    """The shift of the fitted optimum from condition a to b (b − a, log10 λ) over the seeds
    both have, its interval, the verdict and the sentence stating it.

    optima: {condition: {seed: optimum log10 λ}}; at_edge: the same shape, True where that
    optimum sits at the grid's edge (fitted_optimum's `at_edge`). An optimum at an edge is a
    bound, not a measurement: when any of the paired optima is one, no verdict is drawn, and
    the statement says how many there are."""
    seeds = sorted(set(optima[a]) & set(optima[b]), key=_seed_order)
    diffs = [optima[b][s] - optima[a][s] for s in seeds]
    ci = paired_t_interval(diffs, level)
    lo, hi = ci["ci_low"], ci["ci_high"]
    edges = [(c, s) for c in (a, b) for s in seeds if (at_edge or {}).get(c, {}).get(s)]
    if edges:
        verdict = EDGE
    elif lo is not None and hi < 0:
        verdict = "smaller"
    elif lo is not None and lo > 0:
        verdict = "larger"
    else:
        verdict = NO_SHIFT
    pct = f"{100 * level:g}%"
    per_seed = "per seed " + ", ".join(f"{d:+.2f}" for d in diffs)
    if lo is None:
        interval = f"one seed, so no interval; {per_seed}"
    else:
        interval = (f"{pct} paired-t interval {lo:+.2f} to {hi:+.2f} over {len(diffs)} seeds, "
                    f"which {'includes' if lo <= 0 <= hi else 'excludes'} 0; {per_seed}")
    if verdict == EDGE:
        statement = (f"No verdict on a shift of the best λ between {a} and {b}: {len(edges)} of the "
                     f"{2 * len(seeds)} fitted optima sit at the grid's edge ("
                     + ", ".join(f"{c} seed {s}" for c, s in edges)
                     + f"), where the curve's peak may lie outside the grid; the mean shift "
                     f"{ci['mean']:+.2f} in log10 λ ({interval}) is a bound, not a measurement. "
                     "Widen the grid (bonus.aug_vs_lambda.offsets) to measure it.")
    elif verdict == NO_SHIFT:
        statement = (f"No shift of the best λ between {a} and {b} is detectable at this budget: "
                     f"the fitted optimum moved by {ci['mean']:+.2f} in log10 λ on average "
                     f"({interval}).")
    else:
        statement = (f"With {b}, the best λ is {verdict} than with {a}: the fitted optimum moved "
                     f"by {ci['mean']:+.2f} in log10 λ on average, a factor of "
                     f"{10 ** ci['mean']:.2g} in λ ({interval}).")
    return {"verdict": verdict, "statement": statement, "seeds": seeds,
            "per_seed_shift_log10": diffs, "mean_shift_log10": ci["mean"],
            "std_shift_log10": ci["std"], "n_seeds": ci["n"], "ci_low": lo, "ci_high": hi,
            "ci_level": level, "ci_method": "paired Student-t over seeds", "t_quantile": ci["t"],
            "from": a, "to": b, "n_at_edge": len(edges),
            "at_edge": [{"condition": c, "seed": s} for c, s in edges]}

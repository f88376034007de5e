"""The λ choice from a model of the validation surface, not from the argmax of seed means.

Why: with two seeds per λ and a surface that is flat within noise, the argmax of the means
follows rounding noise, so a rerun picks another λ. A fit over every seed's run smooths that
noise away, its bootstrap says how far the choice could move, and the "flat band" says which λ
the data cannot tell apart from the best.

The rule (`fit_surface`), on validation accuracy y against x = log10 λ, one point per trained
run (diverged runs have no accuracy and are left out; a λ with more trained seeds weighs more):
  1. window: every trained λ (`fit_points=None`), or the `fit_points` λ values centred on the
     best mean, shifted inward, not shrunk, at the grid's edge (a quadratic holds only near a
     peak; the coarse grid spans decades). Fewer than 3 distinct λ: no fit, the best mean.
  2. ordinary least squares y = a·x² + b·x + c over the window's runs; residual standard
     deviation s with df = runs − 3 (it holds the seed noise and any lack of fit).
  3. flat band: the connected x range around the fitted maximum over the window's span where
     the fitted accuracy is below that maximum by at most t_{(1+level)/2, df} × the standard
     error of the fitted difference (from the fit's covariance s²(XᵀX)⁻¹): the λ values the
     runs cannot tell apart from the best.
  4. chosen log10 λ: the midpoint of the span when the band covers all of it (a flat surface:
     no λ is better than another, and the midpoint does not move with noise); otherwise the
     fitted maximum over the span, the vertex −b/(2a) when the fit is concave with its vertex
     inside, else the higher edge (a monotone surface, flagged).
  5. interval: residual bootstrap (the window's design fixed; leverage-adjusted, centred
     residuals resampled with replacement; refit; rules 3–4 rerun), percentile interval of the
     chosen x. Residuals rather than seeds: with 1–2 seeds per λ, resampling seeds within a λ
     has no spread (1 seed) or half the variance of the mean (2 seeds: (n−1)/n), so its interval
     would be too narrow; pooled residuals estimate the noise from every run. Runs are treated
     as independent: one seed shares its initialisation and batch order across λ, and such a
     common offset moves the whole curve, not its vertex, so independence errs on the wide
     side. The RNG seed comes
     from the caller (the table derives it from model and stage) so a rerun gives the same
     interval from the same runs.
  6. selection uncertainty: the fitted accuracy (original fit) at each bootstrap choice minus
     that at the chosen λ; its root mean square is what choosing λ again could cost, which the
     headline interval (`headline_interval`) adds to the final runs' seed spread.

With df = 0 (as many runs as parameters) there is no noise estimate: no band, no interval, and
the sentence says so.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

REPLICATES = 2000
DENSE = 401  # evaluation points over the fitted span (rule 3–4 on a grid, edges refined)

FIT_RULE = ("quadratic least squares of validation accuracy on log10 λ over every trained run in "
            "the window; chosen λ: the fitted maximum, or the span's midpoint when the whole span "
            "is within noise of it; interval: residual bootstrap, percentile")


def _design(x) -> np.ndarray:
    x = np.asarray(x, float)
    return np.stack([x * x, x, np.ones_like(x)], axis=-1)


def _window(x: np.ndarray, y: np.ndarray, fit_points: int | None) -> np.ndarray:
    """The distinct λ (log10) of the window: all, or `fit_points` centred on the best mean."""
    lams = np.unique(x)
    if fit_points is None or fit_points >= len(lams):
        return lams
    means = np.array([y[x == v].mean() for v in lams])
    i = int(np.argmax(means))
    lo = min(max(0, i - fit_points // 2), len(lams) - fit_points)
    return lams[lo:lo + fit_points]


def _choose(beta: np.ndarray, s2: np.ndarray | None, M: np.ndarray, xs: np.ndarray, tq: float | None):
    """Rules 3–4 for one or many fits (beta (B, 3), s2 (B,)): chosen x, index of the fitted
    maximum on `xs`, band mask (B, len(xs)) or None, flat (B,)."""
    D = _design(xs)  # (P, 3)
    F = beta @ D.T  # (B, P)
    top = np.argmax(F, axis=1)  # (B,)
    chosen = xs[top].copy()
    if s2 is None:
        return chosen, top, None, np.zeros(len(beta), bool)
    G = D[top][:, None, :] - D[None, :, :]  # (B, P, 3): the difference's gradient
    var = s2[:, None] * np.einsum("bpi,ij,bpj->bp", G, M, G)
    drop = F[np.arange(len(beta)), top][:, None] - F
    inside = drop <= tq * np.sqrt(np.maximum(var, 0.0)) + 1e-15
    # the connected run of `inside` that holds the maximum
    band = np.zeros_like(inside)
    for b in range(len(beta)):
        t = top[b]
        lo = t
        while lo > 0 and inside[b, lo - 1]:
            lo -= 1
        hi = t
        while hi < len(xs) - 1 and inside[b, hi + 1]:
            hi += 1
        band[b, lo:hi + 1] = True
    flat = band.all(axis=1)
    chosen[flat] = 0.5 * (xs[0] + xs[-1])
    return chosen, top, band, flat


def _refine_edge(phi, a: float, b: float) -> float:
    """The root of phi between a (inside the band) and b (outside), by brentq; a itself when
    the dense grid's tolerance put a point at phi(a) ≥ 0 inside (no sign change to bracket)."""
    if phi(a) >= 0:
        return float(a)
    return float(optimize.brentq(phi, a, b, xtol=1e-10))


def fit_surface(log10_lams, accuracies, *, grid=None, fit_points: int | None = None,
                level: float = 0.95, replicates: int = REPLICATES, seed: int = 0,
                fallback_log10: float | None = None, label: str = "search") -> dict:
    """The surface fit, chosen λ, interval, band and sentence (rules in the module docstring).

    log10_lams, accuracies: one pair per run (accuracy None: diverged, left out). grid: every
    log10 λ of the search, diverged ones included (for the edge flags; default: the runs').
    fallback_log10: what to choose with fewer than 3 λ (default: the best mean). label names
    the search in the sentence."""
    pts = [(float(x), float(a)) for x, a in zip(log10_lams, accuracies) if a is not None]
    if not pts:
        raise ValueError("no trained run to fit: every λ diverged")
    x_all = np.array([p[0] for p in pts])
    y_all = np.array([p[1] for p in pts])
    grid = np.unique(np.asarray(grid if grid is not None else x_all, float))
    g_lo, g_hi = float(grid[0]), float(grid[-1])
    lams = _window(x_all, y_all, fit_points)
    keep = np.isin(x_all, lams)
    x, y = x_all[keep], y_all[keep]
    lo, hi = float(lams[0]), float(lams[-1])
    out = {"rule": FIT_RULE, "level": level, "n_runs": int(len(x)), "n_lams": int(len(lams)),
           "window_log10": [lo, hi], "grid_log10": [g_lo, g_hi],
           "window_at_grid_edge": {"lower": bool(lo <= g_lo), "upper": bool(hi >= g_hi)},
           "coeffs": None, "residual_sd": None, "df": 0, "band_log10": None, "band_lam": None,
           "interval_log10": None, "interval_lam": None, "interval_edge": [], "edge": None,
           "selection": None, "bootstrap": None}
    if len(lams) < 3:
        means = {v: y[x == v].mean() for v in lams}
        best = fallback_log10 if fallback_log10 is not None else max(means, key=means.get)
        out.update(method="best mean", shape="too few λ", choice="best mean (no fit)",
                   log10_lam=float(best), lam=10.0 ** float(best), fitted_accuracy=None)
        out["sentence"] = (f"{label}: only {len(lams)} λ trained, too few for a surface fit (a quadratic "
                           f"needs 3), so the best mean is chosen, λ = {10.0 ** best:.3g}, with no interval.")
        return out

    X = _design(x)
    M = np.linalg.inv(X.T @ X)
    beta = M @ X.T @ y
    resid = y - X @ beta
    df = len(x) - 3
    s2 = float(resid @ resid / df) if df > 0 else None
    tq = float(stats.t.ppf((1 + level) / 2, df)) if df > 0 else None
    xs = np.linspace(lo, hi, DENSE)
    chosen, top, band, flat = _choose(beta[None], None if s2 is None else np.array([s2]), M, xs, tq)
    a, b, c = (float(v) for v in beta)
    f = lambda v: float(_design(v) @ beta)  # noqa: E731
    x_star = float(chosen[0])
    if not flat[0] and a < 0 and lo < -b / (2 * a) < hi:
        x_star = -b / (2 * a)  # exact, not the dense grid's nearest point
    out.update(method="quadratic", coeffs=[a, b, c], df=df, log10_lam=x_star, lam=10.0 ** x_star,
               fitted_accuracy=f(x_star), residual_sd=math.sqrt(s2) if s2 is not None else None)
    if flat[0]:
        out["shape"], out["choice"] = "flat", "midpoint of the span (whole span within noise)"
    elif a < 0 and lo < -b / (2 * a) < hi:
        out["shape"], out["choice"] = "peak", "vertex of the concave fit"
    else:
        out["shape"], out["choice"] = "monotone", "fitted maximum at the span's edge"
    if not flat[0]:
        out["edge"] = "lower" if x_star <= lo else ("upper" if x_star >= hi else None)

    if band is not None:
        idx = np.flatnonzero(band[0])
        x_top = xs[top[0]]
        d_top = _design(x_top)

        def phi(v):  # > 0 outside the band
            g = d_top - _design(v)
            return (f(x_top) - f(v)) - tq * math.sqrt(max(s2 * float(g @ M @ g), 0.0))

        b_lo = xs[0] if idx[0] == 0 else _refine_edge(phi, xs[idx[0]], xs[idx[0] - 1])
        b_hi = xs[-1] if idx[-1] == len(xs) - 1 else _refine_edge(phi, xs[idx[-1]], xs[idx[-1] + 1])
        out["band_log10"] = [float(b_lo), float(b_hi)]
        out["band_lam"] = [10.0 ** b_lo, 10.0 ** b_hi]

    h = np.einsum("ij,jk,ik->i", X, M, X)
    if s2 is not None and replicates > 0:
        rng = np.random.default_rng(seed)
        if np.all(h < 1 - 1e-9):
            r, how = resid / np.sqrt(1 - h), "leverage-adjusted, centred residuals"
        else:
            # A λ with one run among only 3 λ fixes the fit exactly there (leverage 1, residual
            # 0): rescale all residuals by sqrt(N/df) instead, the variance-correct alternative.
            r, how = resid * math.sqrt(len(x) / df), "residuals rescaled by sqrt(N/df), centred"
        r = r - r.mean()
        ystar = (X @ beta)[None, :] + r[rng.integers(0, len(r), (replicates, len(r)))]  # (B, N)
        bstar = ystar @ (M @ X.T).T  # (B, 3)
        s2star = ((ystar - bstar @ X.T) ** 2).sum(axis=1) / df
        cstar, _, _, _ = _choose(bstar, s2star, M, xs, tq)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        ilo, ihi = (float(v) for v in np.percentile(cstar, q))
        out["interval_log10"] = [ilo, ihi]
        out["interval_lam"] = [10.0 ** ilo, 10.0 ** ihi]
        out["interval_edge"] = [e for e, hit in (("lower", ilo <= lo + 1e-12), ("upper", ihi >= hi - 1e-12))
                                if hit]
        loss = _design(cstar) @ beta - out["fitted_accuracy"]  # ≤ 0 up to the dense grid
        out["selection"] = {"rms_loss": float(np.sqrt(np.mean(loss ** 2))), "mean_loss": float(loss.mean()),
                            "df": df, "replicates": replicates}
        out["bootstrap"] = {"method": f"residual bootstrap ({how})",
                            "replicates": replicates, "seed": int(seed),
                            "share_flat": float(np.mean(np.isclose(cstar, 0.5 * (lo + hi))))}
    out["sentence"] = sentence(out, label)
    return out


def _lam(x: float) -> str:
    return f"{10.0 ** x:.3g}"


def sentence(s: dict, label: str = "search") -> str:
    """The generated statement of a fit: what the surface is, the chosen λ, its interval, the
    band, and the edges it reaches. Every figure comes from `s`."""
    lo, hi = s["window_log10"]
    where = (f"a quadratic fit over {s['n_runs']} runs at {s['n_lams']} λ "
             f"({_lam(lo)} to {_lam(hi)})")
    pct = f"{100 * s['level']:g}%"
    noise = (f"; residual SD {100 * s['residual_sd']:.2f} points" if s["residual_sd"] is not None else "")
    if s["shape"] == "flat":
        text = (f"{label}: the validation surface is flat within noise — any λ in "
                f"[{_lam(s['band_log10'][0])}, {_lam(s['band_log10'][1])}] (the whole fitted span) gives "
                f"the same accuracy within noise ({where}{noise}), so λ = {s['lam']:.3g}, the span's "
                f"midpoint in log10 λ, is chosen")
    elif s["shape"] == "peak":
        text = f"{label}: validation accuracy peaks inside the span at λ = {s['lam']:.3g} ({where}{noise})"
    else:
        side = s["edge"]
        text = (f"{label}: validation accuracy rises towards the {side} edge of the span: best at "
                f"λ = {s['lam']:.3g} ({where}{noise})")
        if s["window_at_grid_edge"][side]:
            text += (f"; the optimum may lie {'below' if side == 'lower' else 'above'} the grid, "
                     "which should be widened")
    if s["interval_log10"] is not None:
        a, b = s["interval_log10"]
        if b - a < 1e-9:  # a degenerate interval: say so instead of "x to x"
            text += (f"; every one of {s['bootstrap']['replicates']} residual-bootstrap refits "
                     f"chooses the same λ")
        else:
            text += (f"; {pct} interval of the chosen λ {_lam(a)} to {_lam(b)} "
                     f"({s['bootstrap']['replicates']} residual-bootstrap refits)")
        for side in s["interval_edge"]:
            text += (f"; the interval reaches the {side} edge of the "
                     + ("grid" if s["window_at_grid_edge"][side] else "fitting window"))
    if s["band_log10"] is not None and s["shape"] != "flat":
        b_lo, b_hi = s["band_log10"]
        if b_hi - b_lo < 1e-6:  # the slope is significant right up to the maximum
            text += "; no other λ of the span gives the same validation accuracy within noise"
        else:
            text += (f"; any λ in [{_lam(b_lo)}, {_lam(b_hi)}] gives the same validation accuracy "
                     "within noise")
    if s["df"] == 0:
        text += ("; as many runs as fitted parameters, so no noise estimate: no interval and no "
                 "flat band")
    return text + "."


def headline_interval(accuracies, selection: dict | None, level: float = 0.95) -> dict:
    """The headline's interval: the final runs' standard error (std(ddof=1)/sqrt(n), df n − 1)
    and, when given, the λ selection's root-mean-square loss (`fit_surface`'s `selection`, df of
    its fit) added in quadrature; a Student-t interval (scipy.stats.t) with the smallest
    component's degrees of freedom. Components with no estimate (one final seed, no bootstrap) are listed as
    missing; with none left there is no interval."""
    acc = np.asarray(accuracies, float)
    n = len(acc)
    mean = float(acc.mean())
    comps, missing = {}, []
    if n > 1:
        comps["final seeds"] = {"se": float(acc.std(ddof=1) / math.sqrt(n)), "df": n - 1}
    else:
        missing.append("final seeds")
    if selection and selection.get("df", 0) > 0:
        comps["λ selection"] = {"se": float(selection["rms_loss"]), "df": int(selection["df"])}
    else:
        missing.append("λ selection")
    out = {"level": level, "mean": mean, "components": comps, "missing": missing,
           "method": ("Student-t, df of the smallest component, on the quadrature sum of the "
                      "final seeds' standard error and the λ selection's RMS loss")}
    se2 = sum(c["se"] ** 2 for c in comps.values())
    if not comps:
        out.update(se=None, df=None, t=None, low=None, high=None, half_width=None)
        return out
    # The smallest component's df, not Welch–Satterthwaite's: with 3 final seeds (df 2) a
    # selection term with df 13 raises the Satterthwaite df enough that t falls faster than the
    # SE grows, so adding a source of variation would narrow the interval. min(df) is the
    # conservative bound (Satterthwaite's df is never below it); adding a term never narrows.
    df = float(min(c["df"] for c in comps.values()))
    t = float(stats.t.ppf((1 + level) / 2, df))
    half = t * math.sqrt(se2)
    out.update(se=math.sqrt(se2), df=float(df), t=t, low=mean - half, high=mean + half, half_width=half)
    return out

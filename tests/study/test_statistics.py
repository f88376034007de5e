"""Every statistic the report prints, against an independent computation, on data built so that
the usual mistake would change the answer (issue 23):

- the t quantile: a printed table (hand-checked values);
- the paired shift interval: scipy.stats.ttest_rel on the seed-aligned pairs, with per-seed
  offsets far larger than the shift (an unpaired interval, or pairs matched by position instead
  of by seed, then gives a different interval and verdict);
- mean, std and SE: the standard library's statistics.stdev and scipy.stats.sem at n = 2, where
  ddof = 0 is off by √2;
- the indistinguishable band: recomputed from scipy.stats.sem, with λ placed between the right
  band and the band each mistake would draw;
- the fitted optimum: scipy.optimize.curve_fit on the documented window and a bounded
  scipy.optimize.minimize_scalar of the fitted parabola, on a flat and on sharp surfaces.

Each check is a function of the implementation, run on the code (must pass) and on a planted
wrong variant (must fail), so the test is shown to be able to fail.
"""
import math
import statistics
import warnings
from statistics import NormalDist

import numpy as np
import pytest
from scipy import optimize, stats

from handbackprop.study import grids, replicates, shift, tables

# --------------------------------------------------------------------------- t quantile
# Two-sided 95% / 90% / 99% critical values of Student's t, as printed in the NIST/SEMATECH
# e-Handbook of Statistical Methods, table 1.3.6.7.2 (3 decimals), and in any textbook table.
T_TABLE = {(0.975, 1): 12.706, (0.975, 2): 4.303, (0.975, 4): 2.776, (0.975, 9): 2.262,
           (0.95, 4): 2.132, (0.995, 4): 4.604, (0.975, 29): 2.045}


def check_t_quantile(q):
    for (p, df), value in T_TABLE.items():
        assert q(p, df) == pytest.approx(value, abs=6e-4), (p, df)  # the table rounds to 3 places
        assert q(1 - p, df) == pytest.approx(-value, abs=6e-4)


def test_t_quantile_is_the_printed_table():
    check_t_quantile(shift.t_quantile)


def test_t_quantile_check_catches_the_normal_quantile():
    with pytest.raises(AssertionError):  # 1.96 for every df: the too-narrow "bootstrap" interval
        check_t_quantile(lambda p, df: NormalDist().inv_cdf(p))


# --------------------------------------------------------------------------- paired interval
# Seed offsets of several log10 units (each seed's own optimum), shifts of ≈ −0.30 ± 0.05: only
# the pairing removes the offsets. Seeds are inserted in a different order per condition, so
# matching by position pairs the wrong seeds.
OFFSETS = {"1": -3.0, "2": -0.5, "3": 1.2, "4": -2.1, "5": 0.4}
SHIFTS = {"1": -0.27, "2": -0.35, "3": -0.24, "4": -0.31, "5": -0.36}
OPTIMA = {"noaug": {s: OFFSETS[s] for s in ("1", "2", "3", "4", "5")},
          "aug": {s: OFFSETS[s] + SHIFTS[s] for s in ("5", "3", "1", "4", "2")}}


def check_shift_interval(statistic, optima=OPTIMA, level=0.95):
    seeds = sorted(optima["noaug"], key=int)
    a = np.array([optima["noaug"][s] for s in seeds])
    b = np.array([optima["aug"][s] for s in seeds])
    ref = stats.ttest_rel(b, a)  # b − a, the direction the report states
    ci = ref.confidence_interval(confidence_level=level)
    st = statistic(optima, "noaug", "aug", level)
    assert st["mean_shift_log10"] == pytest.approx(float(np.mean(b - a)), abs=1e-12)
    assert st["ci_low"] == pytest.approx(ci.low, abs=1e-10)
    assert st["ci_high"] == pytest.approx(ci.high, abs=1e-10)
    assert st["verdict"] == ("smaller" if ci.high < 0 else "larger" if ci.low > 0 else shift.NO_SHIFT)
    return st


def test_paired_interval_is_scipys_ttest_rel():
    st = check_shift_interval(shift.shift_statistic)
    assert st["verdict"] == "smaller"  # the pairing sees the shift through the offsets
    assert st["std_shift_log10"] == pytest.approx(statistics.stdev(SHIFTS.values()))
    for level in (0.9, 0.99):
        check_shift_interval(shift.shift_statistic, level=level)
    two = {"noaug": {"1": -3.0, "2": 1.0}, "aug": {"2": 0.5, "1": -3.2}}  # n = 2: t_{0.975,1} = 12.7
    check_shift_interval(shift.shift_statistic, two)


def unpaired_statistic(optima, a, b, level):
    """Planted: the two conditions as independent samples (Welch), the offsets left in."""
    xa, xb = list(optima[a].values()), list(optima[b].values())
    ci = stats.ttest_ind(xb, xa, equal_var=False).confidence_interval(confidence_level=level)
    return {"mean_shift_log10": float(np.mean(xb) - np.mean(xa)), "ci_low": ci.low, "ci_high": ci.high,
            "verdict": shift.NO_SHIFT if ci.low <= 0 <= ci.high else "smaller" if ci.high < 0 else "larger"}


def position_paired_statistic(optima, a, b, level):
    """Planted: pairs matched by dict order instead of by seed."""
    d = [vb - va for va, vb in zip(optima[a].values(), optima[b].values())]
    ci = shift.paired_t_interval(d, level)
    return {"mean_shift_log10": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"],
            "verdict": shift.NO_SHIFT if ci["ci_low"] <= 0 <= ci["ci_high"] else "smaller"}


def ddof0_statistic(optima, a, b, level):
    """Planted: the spread with ddof = 0 (too narrow by sqrt(n/(n−1)))."""
    seeds = sorted(optima[a], key=int)
    d = np.array([optima[b][s] - optima[a][s] for s in seeds])
    half = shift.t_quantile((1 + level) / 2, len(d) - 1) * d.std(ddof=0) / math.sqrt(len(d))
    return {"mean_shift_log10": float(d.mean()), "ci_low": d.mean() - half, "ci_high": d.mean() + half,
            "verdict": "smaller" if d.mean() + half < 0 else shift.NO_SHIFT}


@pytest.mark.parametrize("planted", [unpaired_statistic, position_paired_statistic, ddof0_statistic])
def test_interval_check_catches_the_planted_mistakes(planted):
    with pytest.raises(AssertionError):
        check_shift_interval(planted)


def test_unpaired_would_change_the_verdict():
    """Not only the digits: on these data the unpaired interval says there is no shift."""
    assert unpaired_statistic(OPTIMA, "noaug", "aug", 0.95)["verdict"] == shift.NO_SHIFT
    assert shift.shift_statistic(OPTIMA, "noaug", "aug")["verdict"] == "smaller"


# --------------------------------------------------------------------------- mean, std, SE
PAIR = [0.52, 0.57]  # n = 2: std(ddof=1) = 0.05/√2 ≈ 0.0354, std(ddof=0) = 0.025


def check_summarise(summarise):
    for values in (PAIR, [0.50, 0.52, 0.57], [1.0, 1.3, 1.9, 0.7]):
        s = summarise(values)
        assert s["n"] == len(values)
        assert s["mean"] == pytest.approx(statistics.fmean(values), abs=1e-15)
        assert s["std"] == pytest.approx(statistics.stdev(values), rel=1e-12)
        assert s["se"] == pytest.approx(stats.sem(values), rel=1e-12)  # scipy: ddof=1 by default


def test_summarise_is_stdev_and_scipy_sem():
    check_summarise(replicates.summarise)
    one = replicates.summarise([0.5])
    assert one["std"] is None and one["se"] is None  # no spread from one seed, not 0


def ddof0_summarise(values):
    v = np.asarray(values, float)
    std = float(v.std()) if len(v) > 1 else None
    return {"mean": float(v.mean()), "std": std, "se": std / math.sqrt(len(v)) if std else None, "n": len(v)}


def test_summarise_check_catches_ddof0():
    with pytest.raises(AssertionError):
        check_summarise(ddof0_summarise)


def check_mean_std(mean_std):
    for values in (PAIR, [0.50, 0.52, 0.57]):
        mean, std = mean_std(values)
        assert mean == pytest.approx(statistics.fmean(values), abs=1e-15)
        assert std == pytest.approx(statistics.stdev(values), rel=1e-12)


def test_tables_mean_std_is_stdev():
    """tables.mean_std: the final, ablation and snapshot-ensemble "mean ± std" of the report."""
    check_mean_std(tables.mean_std)
    with pytest.raises(AssertionError):
        check_mean_std(lambda v: (float(np.mean(v)), float(np.std(v))))  # planted: ddof = 0


# --------------------------------------------------------------------------- indistinguishable band
def seed_runs(lam, accs):
    return [{"lam": lam, "log10_lam": math.log10(lam), "seed": i + 1, "diverged": False,
             "val_accuracy": a, "val_cost": 1.0, "run": f"{lam}/seed{i + 1}"} for i, a in enumerate(accs)]


# Two seeds per λ, every SE 0.01 (std 0.01·√2, n = 2): the right threshold is
# sqrt(0.01² + 0.01²) = 0.01414. ddof = 0 makes it 0.0100, adding the SEs makes it 0.0200.
# 1e-3 is the best (0.61); 1e-2 sits at gap 0.012 (inside only with ddof = 1), 1e-4 at gap
# 0.017 (outside, but inside if the SEs were added), 1e-1 at 0.04 (outside for every rule).
BAND_RUNS = (seed_runs(1e-4, [0.583, 0.603]) + seed_runs(1e-3, [0.60, 0.62])
             + seed_runs(1e-2, [0.588, 0.608]) + seed_runs(1e-1, [0.56, 0.58]))


def independent_band(runs):
    by = {}
    for r in runs:
        by.setdefault(r["lam"], []).append(r["val_accuracy"])
    means = {lam: statistics.fmean(v) for lam, v in by.items()}
    best = max(means, key=means.get)
    se = {lam: stats.sem(v) for lam, v in by.items()}
    return sorted(lam for lam in by if means[best] - means[lam] <= math.hypot(se[best], se[lam]))


def check_band(runs=BAND_RUNS):
    rows = replicates.lam_rows(runs)
    best = grids.best_row(rows)
    assert replicates.mark_indistinguishable(rows, best) == independent_band(runs)


def test_indistinguishable_band_is_recomputed_from_scipy_sem():
    assert independent_band(BAND_RUNS) == [1e-3, 1e-2]
    check_band()


def test_band_check_catches_ddof0(monkeypatch):
    monkeypatch.setattr(replicates, "summarise", ddof0_summarise)
    with pytest.raises(AssertionError):
        check_band()


def test_band_check_catches_added_standard_errors(monkeypatch):
    def added(rows, best):  # planted: SE_best + SE_λ (0.02) instead of sqrt(SE_best² + SE_λ²)
        marked = []
        for r in rows:
            r["indistinguishable"] = best["val_accuracy"] - r["val_accuracy"] <= (
                best["val_accuracy_se"] + r["val_accuracy_se"])
            if r["indistinguishable"]:
                marked.append(r["lam"])
        return marked
    monkeypatch.setattr(replicates, "mark_indistinguishable", added)
    with pytest.raises(AssertionError):
        check_band()


def test_ablation_noise_rule_uses_the_standard_error_of_the_difference():
    """tables._beaten_by, the ablation's "loses beyond the seed noise": gap > sqrt(s²/n + s²/n)
    with s the ddof=1 std, at n = 2 where ddof = 0 would call a noise gap real."""
    accs = {"all": [0.50, 0.52], "no_aug": [0.51, 0.55]}  # gap 0.02; SE of difference 0.0224
    # (ddof = 0 would make it 0.0158 and call the gap real)
    rows = []
    for variant, v in accs.items():
        mean, std = tables.mean_std(v)
        rows.append({"variant": variant, "test_accuracy_mean": mean, "test_accuracy_std": std, "seeds": len(v)})
    se = math.hypot(stats.sem(accs["all"]), stats.sem(accs["no_aug"]))
    assert rows[1]["test_accuracy_mean"] - rows[0]["test_accuracy_mean"] < se  # noise, by scipy
    assert tables._beaten_by(rows) == []
    assert rows[1]["gap_to_all_se"] == pytest.approx(se)


# --------------------------------------------------------------------------- fitted optimum
GRID = [-4.5, -4.0, -3.5, -3.0, -2.5, -2.0, -1.5]


def reference_optimum(xs, accs, fit_points=5):
    """The documented rule, computed another way: the window by hand, the least-squares parabola
    by scipy.optimize.curve_fit (on x centred in the window), its maximum by a bounded
    minimize_scalar over the window; a parabola that is not concave has no interior peak."""
    xs, accs = np.asarray(xs, float), np.asarray(accs, float)
    i = int(np.argmax(accs))
    lo = min(max(0, i - fit_points // 2), len(xs) - fit_points)
    xw, aw = xs[lo:lo + fit_points], accs[lo:lo + fit_points]
    mid = xw.mean()
    with warnings.catch_warnings():  # an exact parabola leaves no residual to estimate a covariance
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        (a, b, c), _ = optimize.curve_fit(lambda x, a, b, c: a * x * x + b * x + c, xw - mid, aw)
    if a >= -1e-9:
        return float(xs[i]), "argmax"
    best = optimize.minimize_scalar(lambda x: -(a * x * x + b * x + c), bounds=(xw[0] - mid, xw[-1] - mid),
                                    method="bounded", options={"xatol": 1e-10})
    return float(best.x + mid), "quadratic"


SHARP = {  # accuracies on GRID: one spike; a spike with a shoulder; a steep ridge near the edge
    "spike": [0.30, 0.30, 0.30, 0.60, 0.30, 0.30, 0.30],
    "shoulder": [0.30, 0.31, 0.32, 0.60, 0.50, 0.30, 0.29],
    "ridge": [0.20, 0.25, 0.40, 0.48, 0.61, 0.60, 0.10],
    "smooth": [0.50 - 0.02 * (x + 2.2) ** 2 for x in GRID],
}


def check_fitted_optimum(fit):
    for name, accs in SHARP.items():
        ref, method = reference_optimum(GRID, accs)
        got = fit(GRID, accs, 5)
        assert got["method"] == method, name
        assert got["log10_lam"] == pytest.approx(ref, abs=1e-6), name
    for level in (0.1, 0.4, 0.47, 0.5123, 0.6):  # flat: no peak, the argmax (first of the ties)
        got = fit(GRID, [level] * len(GRID), 5)
        assert got["method"] == "argmax" and got["log10_lam"] == GRID[0], level
    tiny = [0.5 - 1e-5 * (x + 3.1) ** 2 for x in GRID]  # a real if shallow peak is still one
    assert fit(GRID, tiny, 5)["log10_lam"] == pytest.approx(-3.1, abs=1e-6)


def test_fitted_optimum_matches_curve_fit_and_minimize_scalar():
    assert reference_optimum(GRID, SHARP["spike"]) == (pytest.approx(-3.0), "quadratic")
    check_fitted_optimum(shift.fitted_optimum)


def test_fitted_optimum_check_catches_the_planted_mistakes(monkeypatch):
    real = shift.fitted_optimum

    def whole_grid(xs, accs, fit_points=5):  # planted: fit_points ignored, the whole grid fitted
        return real(xs, accs, len(xs))

    def flipped(xs, accs, fit_points=5):  # planted: vertex +b/(2a)
        out = real(xs, accs, fit_points)
        if out["method"] == "quadratic":
            a, b, _ = out["coeffs"]
            out["log10_lam"] = float(np.clip(b / (2 * a), out["window"][0], out["window"][-1]))
        return out

    for planted in (whole_grid, flipped):
        with pytest.raises(AssertionError):
            check_fitted_optimum(planted)
    monkeypatch.setattr(shift, "FLAT", 0.0)  # planted: "a < 0" alone, the code before issue 23
    with pytest.raises(AssertionError):
        check_fitted_optimum(shift.fitted_optimum)


def check_aug_per_lam(collect_fn):
    """report.collect.collect_aug_vs_lambda's per-λ mean ± std (the aug-vs-λ figure's error
    bars): two seeds per λ and condition, one diverged seed left out."""
    accs = {(False, 1e-3): [0.52, 0.57], (True, 1e-3): [0.50, 0.58], (True, 1e-2): [0.44, 0.47]}
    rows = [{"augmentation": aug, "lam": lam, "log10_lam": math.log10(lam), "seed": i + 1, "diverged": False,
             "val_accuracy": a} for (aug, lam), v in accs.items() for i, a in enumerate(v)]
    rows.append({"augmentation": True, "lam": 1e-2, "log10_lam": -2.0, "seed": 3, "diverged": True,
                 "val_accuracy": None})
    per_lam = {(r["augmentation"], r["lam"]): r for r in collect_fn({"rows": rows}, {})["per_lam"]}
    for key, v in accs.items():
        assert per_lam[key]["n"] == 2
        assert per_lam[key]["val_accuracy_mean"] == pytest.approx(statistics.fmean(v))
        assert per_lam[key]["val_accuracy_std"] == pytest.approx(statistics.stdev(v), rel=1e-12)
    assert per_lam[(True, 1e-2)]["n_diverged"] == 1


def test_aug_vs_lambda_error_bars_are_stdev():
    from handbackprop.report import collect
    check_aug_per_lam(collect.collect_aug_vs_lambda)

    def ddof0(av, settings):  # planted: np.std's default ddof = 0
        out = collect.collect_aug_vs_lambda(av, settings)
        for r in out["per_lam"]:
            v = [x["val_accuracy"] for x in av["rows"] if x["augmentation"] == r["augmentation"]
                 and x["lam"] == r["lam"] and not x["diverged"]]
            r["val_accuracy_std"] = float(np.std(v))
        return out
    with pytest.raises(AssertionError):
        check_aug_per_lam(ddof0)

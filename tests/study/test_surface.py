"""The λ choice from a fit of the validation surface (handbackprop/study/surface.py) and the
headline interval, on constructed surfaces whose answer is known: sharp, flat, noisy, peak
beyond the grid's edge, monotone, too few points, no noise estimate."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from handbackprop.study import surface, tables
from handbackprop.study.surface import fit_surface, headline_interval

GRID = np.linspace(-4.0, -2.0, 8)  # a fine grid: 8 λ over two decades
X2 = np.repeat(GRID, 2)  # 2 seeds per λ, as the real study


def peak(x, x0, k, top=0.5):
    return top - k * (np.asarray(x) - x0) ** 2


def noisy(y, sd, seed):
    return y + np.random.default_rng(seed).normal(0, sd, len(y))


# ------------------------------------------------------------------ the known shapes
def test_sharp_peak_finds_the_vertex_with_a_tight_interval_and_band():
    y = noisy(peak(X2, -3.2, 0.05), 0.002, 1)
    s = fit_surface(X2, y, seed=3)
    assert s["shape"] == "peak" and s["method"] == "quadratic" and s["edge"] is None
    assert s["log10_lam"] == pytest.approx(-3.2, abs=0.03)
    assert s["lam"] == pytest.approx(10 ** s["log10_lam"])
    lo, hi = s["interval_log10"]
    assert lo < -3.2 < hi and hi - lo < 0.1 and s["interval_edge"] == []
    b_lo, b_hi = s["band_log10"]
    assert b_lo < s["log10_lam"] < b_hi and b_hi - b_lo < 0.3  # a sharp peak: a narrow band
    assert s["df"] == len(X2) - 3 and s["residual_sd"] == pytest.approx(0.002, rel=0.5)
    assert "peaks inside the span at λ = " + f"{s['lam']:.3g}" in s["sentence"]
    assert "flat" not in s["sentence"]
    json.dumps(s, allow_nan=False)


def test_flat_surface_is_said_to_be_flat_and_the_midpoint_is_chosen():
    y = noisy(np.full(len(X2), 0.5), 0.003, 2)
    s = fit_surface(X2, y, seed=3)
    assert s["shape"] == "flat" and s["edge"] is None
    assert s["band_log10"] == pytest.approx([-4.0, -2.0])  # the whole span
    assert s["log10_lam"] == pytest.approx(-3.0)  # its midpoint, whatever the noise did
    assert "flat within noise — any λ in [0.0001, 0.01] (the whole fitted span)" in s["sentence"]


def test_on_a_flat_surface_the_choice_does_not_follow_the_noise():
    # The failure: a rerun's noise moved the argmax of 2-seed means. On a flat surface
    # the fit's choice is the span's midpoint for most draws of the noise (a false peak passes
    # the 95% band test now and then), and spreads far less than the argmax.
    fits, argmaxes = [], []
    for i in range(40):
        y = noisy(np.full(len(X2), 0.5), 0.003, 100 + i)
        fits.append(fit_surface(X2, y, replicates=0)["log10_lam"])
        argmaxes.append(GRID[np.argmax(y.reshape(8, 2).mean(axis=1))])
    assert np.mean(np.isclose(fits, -3.0)) >= 0.8
    # mean distance from the midpoint (the flat surface's every λ is as good; a stable choice
    # stays put): measured 0.09 against 0.58 decades over 200 draws
    dist = lambda v: np.mean(np.abs(np.asarray(v) + 3.0))  # noqa: E731
    assert dist(fits) < 0.4 * dist(argmaxes), (dist(fits), dist(argmaxes))


def test_noisy_peak_interval_covers_the_true_vertex_about_95_percent_of_the_time():
    # Coverage is the claim an interval makes: simulate reruns with a known vertex.
    truth, hits, err_fit, err_argmax = -3.2, 0, [], []
    n = 80
    for i in range(n):
        y = noisy(peak(X2, truth, 0.01), 0.004, 1000 + i)
        s = fit_surface(X2, y, seed=i, replicates=300)
        lo, hi = s["interval_log10"]
        hits += lo <= truth <= hi
        err_fit.append(s["log10_lam"] - truth)
        err_argmax.append(GRID[np.argmax(y.reshape(8, 2).mean(axis=1))] - truth)
    assert 0.85 <= hits / n <= 1.0, hits / n
    # ...and the fitted choice moves far less between reruns than the argmax of the means.
    rms = lambda e: math.sqrt(np.mean(np.square(e)))  # noqa: E731
    assert rms(err_fit) < 0.7 * rms(err_argmax), (rms(err_fit), rms(err_argmax))


def test_a_peak_beyond_the_grid_is_flagged_at_the_edge():
    y = noisy(peak(X2, -4.6, 0.05), 0.002, 4)
    s = fit_surface(X2, y, seed=3)
    assert s["shape"] == "monotone" and s["edge"] == "lower"
    assert s["log10_lam"] == pytest.approx(-4.0) and s["window_at_grid_edge"]["lower"]
    assert "lower" in s["interval_edge"]
    assert "rises towards the lower edge" in s["sentence"]
    assert "may lie below the grid, which should be widened" in s["sentence"]


def test_monotone_rise_to_the_upper_edge():
    y = noisy(0.4 + 0.02 * (X2 + 4), 0.002, 5)
    s = fit_surface(X2, y, seed=3)
    assert s["shape"] == "monotone" and s["edge"] == "upper" and s["log10_lam"] == pytest.approx(-2.0)
    assert "may lie above the grid" in s["sentence"]
    # the rise is significant right up to the edge: no other λ is within noise of it
    assert "no other λ of the span gives the same validation accuracy within noise" in s["sentence"]


def test_edge_of_the_window_is_not_the_edge_of_the_grid():
    # A diverged λ beyond the trained ones still belongs to the grid: the optimum is not "beyond
    # the grid" but at a λ that diverged.
    y = list(noisy(0.4 + 0.02 * (X2 + 4), 0.002, 5))
    s = fit_surface(list(X2) + [-1.5, -1.5], y + [None, None], grid=list(GRID) + [-1.5], seed=3)
    assert s["edge"] == "upper" and not s["window_at_grid_edge"]["upper"]
    assert s["n_runs"] == len(X2)  # diverged runs are left out of the fit
    assert "may lie above the grid" not in s["sentence"]


def test_coarse_window_takes_the_points_around_the_best_mean_shifted_inward():
    coarse = np.repeat(np.linspace(-5, -1, 8), 2)
    # a peak near -4.4, a collapse at large λ that a quadratic over the whole grid would chase
    y = np.where(coarse > -2, 0.1, peak(coarse, -4.4, 0.05))
    s = fit_surface(coarse, y, fit_points=5, seed=3)
    assert s["n_lams"] == 5 and s["window_log10"] == pytest.approx([-5, -5 + 4 * 4 / 7])
    assert s["log10_lam"] == pytest.approx(-4.4, abs=1e-6)


# ------------------------------------------------------------------ degenerate inputs
def test_three_single_runs_fit_exactly_with_no_noise_estimate():
    s = fit_surface([-5, -3, -1], [0.30, 0.52, 0.25], seed=3)
    assert s["df"] == 0 and s["residual_sd"] is None
    assert s["interval_log10"] is None and s["band_log10"] is None and s["selection"] is None
    assert s["log10_lam"] == pytest.approx(-3 + (0.30 - 0.25) / (0.30 - 2 * 0.52 + 0.25))
    assert "no noise estimate: no interval and no flat band" in s["sentence"]


def test_two_lams_are_too_few_to_fit():
    s = fit_surface([-3, -3, -2, -2], [0.5, 0.52, 0.4, 0.41], seed=3)
    assert s["method"] == "best mean" and s["log10_lam"] == -3 and s["interval_log10"] is None
    assert "too few for a surface fit" in s["sentence"]
    with pytest.raises(ValueError, match="every λ diverged"):
        fit_surface([-3, -2], [None, None])


def test_the_bootstrap_is_deterministic_given_its_seed():
    y = noisy(peak(X2, -3.2, 0.01), 0.004, 6)
    a, b = fit_surface(X2, y, seed=7), fit_surface(X2, y, seed=7)
    assert a == b and a["bootstrap"]["seed"] == 7
    assert tables.surface_seed("deep9", "fine") == tables.surface_seed("deep9", "fine") \
        != tables.surface_seed("deep9", "coarse")


def test_selection_loss_is_small_on_a_sharp_surface_and_never_a_gain():
    sharp = fit_surface(X2, noisy(peak(X2, -3.2, 0.05), 0.002, 1), seed=3)["selection"]
    wide = fit_surface(X2, noisy(peak(X2, -3.2, 0.01), 0.004, 1), seed=3)["selection"]
    for sel in (sharp, wide):
        assert sel["rms_loss"] >= abs(sel["mean_loss"]) and sel["mean_loss"] <= 1e-6
        assert sel["df"] == len(X2) - 3
    # the noisier, flatter surface leaves the choice looser: the cost of choosing again is larger
    assert sharp["rms_loss"] < wide["rms_loss"]


# ------------------------------------------------------------------ the headline interval
def test_headline_interval_seeds_only_by_hand():
    h = headline_interval([0.50, 0.51, 0.52], None)
    se = 0.01 / math.sqrt(3)
    t = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))  # t_{0.975, 2}, closed form for df = 2
    assert h["se"] == pytest.approx(se) and h["df"] == pytest.approx(2) and h["t"] == pytest.approx(t)
    assert (h["low"], h["high"]) == pytest.approx((0.51 - t * se, 0.51 + t * se))
    assert h["missing"] == ["λ selection"] and list(h["components"]) == ["final seeds"]


def test_headline_interval_adds_the_selection_in_quadrature():
    h = headline_interval([0.50, 0.51, 0.52], {"rms_loss": 0.004, "df": 13})
    se_f = 0.01 / math.sqrt(3)
    se = math.sqrt(se_f ** 2 + 0.004 ** 2)
    assert h["se"] == pytest.approx(se) and h["df"] == 2  # the smaller df: the seeds'
    assert h["half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * se)
    # adding a source of variation never narrows the interval
    assert h["half_width"] > headline_interval([0.50, 0.51, 0.52], None)["half_width"]
    assert h["missing"] == []


def test_one_final_seed_and_no_bootstrap_gives_no_interval():
    h = headline_interval([0.5], None)
    assert h["low"] is None and h["half_width"] is None
    assert h["missing"] == ["final seeds", "λ selection"]
    # with a selection term alone, an interval from that term only
    h = headline_interval([0.5], {"rms_loss": 0.01, "df": 5})
    assert h["half_width"] == pytest.approx(stats.t.ppf(0.975, 5) * 0.01)


def test_a_single_run_with_leverage_one_still_gets_an_interval():
    # 3 λ, the last with one run: the quadratic passes through it exactly (leverage 1), so its
    # leverage-adjusted residual is undefined; the rescaled residuals still give an interval.
    x = [-4, -4, -3, -3, -2]
    y = [0.48, 0.49, 0.52, 0.50, 0.47]
    s = fit_surface(x, y, seed=3, replicates=500)
    assert s["df"] == 2 and s["interval_log10"] is not None
    assert "rescaled" in s["bootstrap"]["method"]
    assert s["interval_log10"][0] <= s["log10_lam"] <= s["interval_log10"][1]


def test_search_tables_carry_the_fit_and_the_next_stage_follows_it(tmp_path):
    from handbackprop.study import grids

    def write(stage, points):
        paths = []
        for lam, seed, acc in points:
            p = tmp_path / stage / grids.lam_label(lam) / f"seed{seed}" / "metrics.json"
            p.parent.mkdir(parents=True)
            p.write_text(json.dumps({"lam": lam, "log10_lam": math.log10(lam), "seed": seed,
                                     "val_accuracy": acc, "val_cost": 1.0, "val_loss": 1.0,
                                     "train_accuracy": 0.5, "train_cost": 1.0, "train_loss": 1.0,
                                     "seconds": 1.0}))
            paths.append(p)
        return paths

    # A known peak at log10 λ = -3.3 with seed noise: the coarse table centres the fine grid on
    # its fit, and the fine table's final λ is the fit's vertex, not one of the grid's points.
    rng = np.random.default_rng(12)
    coarse = tables.search_table(
        write("coarse", [(10.0 ** e, s, float(peak(e, -3.3, 0.03) + rng.normal(0, 0.003)))
                         for e in np.linspace(-5, -1, 8) for s in (1, 2)]),
        "coarse", "m", fine={"n": 8, "half_width": 0.5, "l_min": -5, "l_max": -1})
    assert coarse["chose_on"] == {"split": "search", "part": "val", "field": "val_accuracy"}
    centre = coarse["surface"]["log10_lam"]
    assert [math.log10(v) for v in coarse["fine_grid"].values()] == pytest.approx(
        list(np.linspace(centre - 0.5, centre + 0.5, 8)))
    fine_lams = list(coarse["fine_grid"].values())
    fine = tables.search_table(
        write("fine", [(lam, s, float(peak(math.log10(lam), -3.3, 0.03) + rng.normal(0, 0.003)))
                       for lam in fine_lams for s in (1, 2)]), "fine", "m")
    fit = fine["surface"]
    assert type(fine["final_lam"]) is float and fine["final_lam"] == fit["lam"]
    assert fit["shape"] == "peak" and fine["final_lam"] not in fine_lams  # the vertex, not a grid point
    lo, hi = fit["interval_log10"]
    assert lo <= -3.3 <= hi and fit["bootstrap"]["seed"] == tables.surface_seed("m", "fine")
    json.dumps(fine, allow_nan=False)

"""The augmentation-vs-λ statistic (handbackprop/study/shift.py): fitted optima, the t interval,
and verdicts on constructed curves with a known shift and with none."""
import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from handbackprop.study import grids, shift, tables


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995])
def test_t_quantile_matches_the_closed_forms(p):
    assert shift.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
    a = 2 * p - 1  # df = 2: F(t) = 1/2 + t / (2 sqrt(t² + 2))
    assert shift.t_quantile(p, 2) == pytest.approx(a * math.sqrt(2 / (1 - a * a)), rel=1e-9)
    assert shift.t_quantile(p, 100_000) == pytest.approx(NormalDist().inv_cdf(p), rel=1e-4)
    assert shift.t_quantile(1 - p, 4) == pytest.approx(-shift.t_quantile(p, 4))


def test_paired_t_interval_by_hand():
    # diffs 1, 2, 3: mean 2, std 1; half width t_{0.975, 2} / sqrt(3), t from the df = 2 closed form
    t = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))
    ci = shift.paired_t_interval([1.0, 2.0, 3.0], 0.95)
    assert ci["mean"] == 2.0 and ci["std"] == pytest.approx(1.0)
    assert ci["ci_low"] == pytest.approx(2 - t / math.sqrt(3)) and ci["ci_high"] == pytest.approx(2 + t / math.sqrt(3))


GRID = [-4.5, -4.0, -3.5, -3.0, -2.5, -2.0, -1.5]


def parabola(x0, xs=GRID, top=0.5, curv=0.02):
    return [top - curv * (x - x0) ** 2 for x in xs]


@pytest.mark.parametrize("fit_points", [3, 5, 7])
def test_an_exact_parabola_gives_its_vertex(fit_points):
    fit = shift.fitted_optimum(GRID, parabola(-2.2), fit_points)
    assert fit["method"] == "quadratic" and fit["log10_lam"] == pytest.approx(-2.2, abs=1e-9)
    assert fit["argmax_log10_lam"] == -2.0 and len(fit["window"]) == fit_points
    assert not fit["at_edge"]


def test_an_edge_maximum_keeps_the_window_size_and_is_flagged():
    fit = shift.fitted_optimum(GRID, parabola(-5.0), 5)  # the peak lies left of the grid
    assert fit["window"] == GRID[:5]  # shifted inward, not shrunk
    assert fit["at_edge"] and fit["log10_lam"] == -4.5  # the vertex clipped to the window
    inside = shift.fitted_optimum(GRID, parabola(-4.4), 5)  # argmax at the edge, vertex inside
    assert inside["at_edge"] and inside["log10_lam"] == pytest.approx(-4.4)


def test_no_peak_falls_back_to_the_argmax_and_diverged_points_are_dropped():
    rising = [0.1 * i ** 2 for i in range(len(GRID))]  # convex: no interior maximum
    fit = shift.fitted_optimum(GRID, rising, 3)
    assert fit["method"] == "argmax" and fit["log10_lam"] == -1.5
    acc = parabola(-3.0)
    acc[-1] = None  # a diverged point
    fit = shift.fitted_optimum(GRID, acc, 7)
    assert len(fit["window"]) == 6 and fit["log10_lam"] == pytest.approx(-3.0)
    with pytest.raises(ValueError, match="odd"):
        shift.fitted_optimum(GRID, acc, 4)


def write_aug_runs(tmp_path, optimum, seeds=(1, 2, 3, 4, 5), noise=0.002, seed=0):
    """metrics.json of an aug-vs-λ study whose seed s peaks at optimum(aug, s) (log10 λ), with
    seeded Gaussian noise of `noise` on every accuracy."""
    rng = np.random.default_rng(seed)
    paths = []
    for aug in ("aug", "noaug"):
        for s in seeds:
            for x, acc in zip(GRID, parabola(optimum(aug, s))):
                lam = 10.0 ** x
                p = tmp_path / aug / grids.lam_label(lam) / f"seed{s}" / "metrics.json"
                p.parent.mkdir(parents=True)
                p.write_text(json.dumps({"wildcards": {"aug": aug}, "seed": s, "lam": lam, "log10_lam": x,
                                         "val_accuracy": acc + noise * rng.normal(), "val_cost": 1.0}))
                paths.append(p)
    return paths


def seed_offset(s):
    """Where each seed's own noaug optimum sits: seeds differ, the pairing removes it."""
    return -2.2 + 0.15 * math.sin(3 * s)


# base: where the noaug optima sit, so that both conditions' optima stay inside the grid
@pytest.mark.parametrize("true_shift, verdict, base", [(-0.8, "smaller", 0.0), (0.6, "larger", -0.8)])
def test_a_known_shift_is_detected_with_its_sign(tmp_path, true_shift, verdict, base):
    table = tables.aug_vs_lambda(write_aug_runs(
        tmp_path, lambda aug, s: base + seed_offset(s) + (true_shift if aug == "aug" else 0.0)))
    assert table["shift"]["n_at_edge"] == 0
    st = table["shift"]
    assert st["verdict"] == verdict and st["n_seeds"] == 5
    assert st["ci_low"] <= true_shift <= st["ci_high"]
    assert (st["ci_high"] < 0) if verdict == "smaller" else (st["ci_low"] > 0)
    assert f"{st['ci_low']:+.2f} to {st['ci_high']:+.2f}" in st["statement"]
    assert f"is {verdict} than with no augmentation" in st["statement"]
    for label in ("augmentation", "no augmentation"):
        assert sorted(table["best_log10_lam"][label]) == ["1", "2", "3", "4", "5"]
    json.dumps(table, allow_nan=False)


def test_no_shift_is_not_detected(tmp_path):
    table = tables.aug_vs_lambda(write_aug_runs(tmp_path, lambda aug, s: seed_offset(s), noise=0.004))
    st = table["shift"]
    assert st["verdict"] == shift.NO_SHIFT
    assert st["ci_low"] < 0 < st["ci_high"]
    assert "includes 0" in st["statement"] and st["statement"].startswith("No shift")


def test_one_seed_gives_no_interval_and_no_verdict():
    st = shift.shift_statistic({"a": {"1": -2.0}, "b": {"1": -3.0}}, "a", "b")
    assert st["ci_low"] is None and st["verdict"] == shift.NO_SHIFT and "no interval" in st["statement"]


def test_seeds_pair_by_seed_in_numeric_order():
    st = shift.shift_statistic({"a": {"10": 0.0, "2": 0.0, "3": 0.0}, "b": {"2": 1.0, "10": 3.0, "3": 2.0, "4": 9.0}},
                               "a", "b")
    assert st["seeds"] == ["2", "3", "10"] and st["per_seed_shift_log10"] == [1.0, 2.0, 3.0]


def simulated_shifts(true_shift, reps, noise=0.004, n_seeds=5, fit_points=5):
    """`reps` simulated studies (in memory): the verdict of each."""
    rng = np.random.default_rng(42)
    verdicts = []
    for _ in range(reps):
        optima = {"noaug": {}, "aug": {}}
        for s in range(n_seeds):
            x0 = -2.2 + 0.2 * rng.normal()
            for cond, x in (("noaug", x0), ("aug", x0 + true_shift)):
                acc = np.array(parabola(x)) + noise * rng.normal(size=len(GRID))
                optima[cond][str(s)] = shift.fitted_optimum(GRID, acc, fit_points)["log10_lam"]
        verdicts.append(shift.shift_statistic(optima, "noaug", "aug")["verdict"])
    return verdicts


def test_the_interval_rarely_claims_a_shift_that_is_not_there_and_finds_one_that_is():
    null = simulated_shifts(0.0, 200)
    # a 95% interval: ~10 of 200 false claims expected; 20 is 3 standard deviations above
    assert sum(v != shift.NO_SHIFT for v in null) <= 20
    assert simulated_shifts(-0.8, 50).count("smaller") == 50


def test_optima_at_the_grids_edge_give_no_verdict_and_say_how_many():
    """A clear shift measured from optima pinned to an edge is a bound: refused, and counted."""
    optima = {"no augmentation": {"1": -2.0, "2": -2.1, "3": -1.9},
              "augmentation": {"1": -3.0, "2": -3.1, "3": -3.0}}
    clear = shift.shift_statistic(optima, "no augmentation", "augmentation")
    assert clear["verdict"] == "smaller" and clear["n_at_edge"] == 0
    edge = {"no augmentation": {}, "augmentation": {"1": True, "3": True}}
    pinned = shift.shift_statistic(optima, "no augmentation", "augmentation", at_edge=edge)
    assert pinned["verdict"] == shift.EDGE and pinned["n_at_edge"] == 2
    assert "2 of the 6 fitted optima sit at the grid's edge" in pinned["statement"]
    assert "excludes 0" in pinned["statement"]  # the interval is still reported, as a bound
    assert pinned["ci_low"] == clear["ci_low"]

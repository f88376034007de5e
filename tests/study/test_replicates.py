"""Search tables with seed replicates: per-λ statistics, the best mean, the indistinguishable set
(handbackprop/study/replicates.py, tables.search_table), on hand-computed examples."""
import json
import math

import pytest

from handbackprop.study import grids, replicates, tables


def run(lam, seed, acc, cost=1.0, diverged=False):
    return {"lam": lam, "log10_lam": math.log10(lam), "seed": seed, "diverged": diverged,
            "val_accuracy": None if diverged else acc, "val_cost": None if diverged else cost,
            "val_loss": None if diverged else cost - 0.1, "train_accuracy": None if diverged else 0.6,
            "train_cost": None if diverged else 1.2, "train_loss": None if diverged else 1.1,
            "seconds": None if diverged else 2.0, "run": f"{grids.lam_label(lam)}/seed{seed}",
            **({"advice": "lower lambda"} if diverged else {})}


def test_mean_std_and_standard_error_by_hand():
    # 0.50, 0.52, 0.54: mean 0.52; deviations ±0.02, 0 -> var (0.0004 + 0.0004) / 2, std 0.02;
    # SE 0.02 / sqrt(3). Costs 1.0, 1.3, 1.9: mean 1.4; var (0.16 + 0.01 + 0.25) / 2 = 0.21.
    rows = replicates.lam_rows([run(1e-3, 1, 0.50, 1.0), run(1e-3, 2, 0.52, 1.3), run(1e-3, 3, 0.54, 1.9)])
    (r,) = rows
    assert r["n"] == 3 and r["seeds"] == [1, 2, 3] and r["n_diverged"] == 0
    assert r["val_accuracy"] == pytest.approx(0.52)
    assert r["val_accuracy_std"] == pytest.approx(0.02)
    assert r["val_accuracy_se"] == pytest.approx(0.02 / math.sqrt(3))
    assert r["val_accuracy_per_seed"] == [0.50, 0.52, 0.54]
    assert r["val_cost"] == pytest.approx(1.4)
    assert r["val_cost_std"] == pytest.approx(math.sqrt(0.21))
    assert r["val_cost_se"] == pytest.approx(math.sqrt(0.21) / math.sqrt(3))


def test_one_seed_has_a_mean_but_no_spread():
    (r,) = replicates.lam_rows([run(1e-3, 4, 0.5)])
    assert r["val_accuracy"] == 0.5 and r["val_accuracy_std"] is None and r["val_accuracy_se"] is None


def test_diverged_seeds_are_counted_and_excluded():
    rows = replicates.lam_rows([run(1e-1, 1, None, diverged=True), run(1e-1, 2, 0.30),
                                run(1e-3, 2, 0.5), run(1e0, 1, None, diverged=True),
                                run(1e0, 2, None, diverged=True), run(1e-3, 1, 0.4)])
    assert [r["lam"] for r in rows] == [1e-3, 1e-1, 1e0]  # sorted by λ
    partly, every = rows[1], rows[2]
    assert partly["n"] == 1 and partly["n_diverged"] == 1 and partly["diverged_seeds"] == [1]
    assert partly["val_accuracy"] == 0.30 and not partly["diverged"]
    assert every["diverged"] and every["n"] == 0 and every["n_diverged"] == 2
    assert every["val_accuracy"] is None and every["advice"] == "lower lambda"
    assert rows[0]["seeds"] == [1, 2] and rows[0]["val_accuracy_per_seed"] == [0.4, 0.5]


def test_indistinguishable_is_within_the_standard_error_of_the_difference():
    rows = replicates.lam_rows([
        run(1e-4, 1, 0.57), run(1e-4, 2, 0.59),   # mean 0.58, SE 0.01: gap 0.03 > 0.0141
        run(1e-3, 1, 0.60), run(1e-3, 2, 0.62),   # mean 0.61, SE 0.01: the best
        run(1e-2, 1, 0.59), run(1e-2, 2, 0.61),   # mean 0.60, SE 0.01: gap 0.01 <= sqrt(2) * 0.01
        run(1e-1, 1, 0.605),                      # one seed, no SE: only a tie would count
        run(1e0, 1, None, diverged=True), run(1e0, 2, None, diverged=True)])
    best = grids.best_row(rows)
    assert best["lam"] == 1e-3
    marked = replicates.mark_indistinguishable(rows, best)
    assert marked == [1e-3, 1e-2]
    by = {r["lam"]: r for r in rows}
    assert by[1e-2]["gap"] == pytest.approx(0.01) and by[1e-2]["gap_se"] == pytest.approx(math.sqrt(2) * 0.01)
    assert by[1e-4]["gap"] == pytest.approx(0.03) and not by[1e-4]["indistinguishable"]
    assert by[1e-1]["gap_se"] is None and not by[1e-1]["indistinguishable"]
    assert by[1e0]["indistinguishable"] is False


def write_runs(tmp_path, stage, points):
    """metrics.json of each (lam, seed, acc[, cost]) in the workflow's folder layout."""
    paths = []
    for lam, seed, acc, *cost in points:
        p = tmp_path / stage / grids.lam_label(lam) / f"seed{seed}" / "metrics.json"
        p.parent.mkdir(parents=True)
        r = run(lam, seed, acc, *cost)
        p.write_text(json.dumps({k: v for k, v in r.items() if k != "run"}))
        paths.append(p)
    return paths


FINE = {"n": 3, "half_width": 0.5, "l_min": -5, "l_max": -1}


def test_the_best_is_the_best_mean_not_the_best_single_seed(tmp_path):
    # 1e-4 has the single best seed (0.70) but mean 0.55; 1e-2 has mean 0.59 and wins.
    paths = write_runs(tmp_path, "coarse", [(1e-4, 1, 0.70), (1e-4, 2, 0.40), (1e-2, 1, 0.60),
                                            (1e-2, 2, 0.58), (1e-3, 1, 0.50), (1e-3, 2, 0.52)])
    table = tables.search_table(paths, "coarse", "m", fine=FINE)
    assert table["best"]["lam"] == 1e-2 and table["best"]["val_accuracy"] == pytest.approx(0.59)
    assert table["seeds"] == [1, 2] and len(table["runs"]) == 6 and len(table["rows"]) == 3
    assert table["rows"][0]["runs"] == ["lam_1.00e-04/seed1", "lam_1.00e-04/seed2"]
    # The fine grid is centred on the surface fit's choice, not on the best mean: 1e-4's seeds
    # spread by 0.30, so the fit's noise covers the whole span (flat) and the choice is the
    # span's midpoint, 1e-3 (study/surface.py).
    assert table["surface"]["shape"] == "flat" and table["surface"]["log10_lam"] == pytest.approx(-3)
    assert [math.log10(v) for v in table["fine_grid"].values()] == pytest.approx([-3.5, -3, -2.5])
    # 1e-4: gap 0.04 but its seeds spread (SE 0.15), so sqrt(0.15² + 0.01²) covers it: noise.
    # 1e-3: gap 0.08 against sqrt(0.01² + 0.01²): distinguishable.
    assert table["indistinguishable"] == [1e-4, 1e-2]
    assert "sqrt(SE_best² + SE_λ²)" in table["se_rule"]


def test_equal_means_go_to_the_lower_mean_cost_and_fine_table_gives_final_lam(tmp_path):
    paths = write_runs(tmp_path, "fine", [(1e-3, 1, 0.50, 1.8), (1e-3, 2, 0.54, 1.8),
                                          (2e-3, 1, 0.53, 1.7), (2e-3, 2, 0.51, 1.5)])
    table = tables.search_table(paths, "fine", "m")
    # two λ are too few for a surface fit: the best mean (ties: the lower cost) is final
    assert table["surface"]["method"] == "best mean"
    assert table["final_lam"] == 2e-3 == table["best"]["lam"]
    assert "fine_grid" not in table


def test_a_lam_with_every_seed_diverged_is_never_chosen(tmp_path):
    paths = write_runs(tmp_path, "coarse", [(1e-3, 1, 0.4), (1e-3, 2, 0.42), (1e-1, 1, 0.9), (1e-1, 2, 0.9)])
    for p in paths[2:]:  # both seeds of 1e-1 diverged
        m = json.loads(p.read_text())
        m.update(diverged=True, val_accuracy=None, val_cost=None,
                 divergence={"step": 3, "eta": 0.05, "advice": "lower lambda"})
        p.write_text(json.dumps(m))
    table = tables.search_table(paths, "coarse", "m", fine=FINE)
    assert table["best"]["lam"] == 1e-3
    assert table["rows"][1]["diverged"] and table["rows"][1]["n_diverged"] == 2
    assert [r["diverged"] for r in table["runs"]] == [False, False, True, True]
    json.dumps(table, allow_nan=False)  # no NaN from a λ without statistics

"""What the config means (handbackprop/study/plan.py) and how λ is chosen (grids, tables),
on constructed inputs whose right answer is known."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from handbackprop.nn.train import TrainingDiverged
from conftest import load_config
from handbackprop.study import grids, plan, runs, tables

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def quick():
    return load_config()


# ------------------------------------------------------------------ cross-field checks
BAD = {
    # A batch larger than the quick profile's 500 training rows: n_s would be 0 steps.
    "batch larger than the split": ({"training": {"batch_size": 1000}}, "training.batch_size"),
    "model batch larger than the split": ({"models": {"mlp50": {"hidden": [50], "batch_size": 600}}},
                                          "models.mlp50.batch_size"),
    "eta_min above eta_max": ({"training": {"eta_min": 0.5}}, "training.eta_min"),
    "model eta_max below eta_min": ({"models": {"bonus": {"eta_max": 1e-6}}}, "models.bonus.eta_max"),
    "n_val takes every image": ({"data": {"splits": {"final": {"n_val": 600, "seed": 1}}}},
                                "data.splits.final.n_val"),
    "unknown final model": ({"final": {"models": ["linear", "deep"]}}, "final.models"),
    "ensemble of a model without finals": ({"final": {"ensemble": ["resnet"]}}, "final.ensemble"),
    "final model without a search": ({"search": {"models": ["linear"]}}, "final.models"),
    "empty coarse range": ({"search": {"coarse": {"l_min": -1, "l_max": -3}}}, "search.coarse"),
    "ablation of a model without finals": ({"final": {"models": ["linear", "deep3"], "ensemble": []}},
                                           "bonus.ablation.model"),
    "init experiment on a model without finals": ({"final": {"models": ["linear", "bonus"],
                                                             "ensemble": []}},
                                                  "bonus.init_sensitivity.model"),
    "lam_from an unknown model": ({"models": {"deep9_nobn": {"hidden": [10], "lam_from": "deep99"}}},
                                  "models.deep9_nobn.lam_from"),
    "batch norm without a hidden layer": ({"models": {"linear": {"hidden": [], "batch_norm": True}}},
                                          "models.linear.batch_norm"),
    "shift fit wider than its grid": ({"bonus": {"aug_vs_lambda": {"fit_points": 7}}},
                                      "bonus.aug_vs_lambda.fit_points"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_names_the_key_at_fault(case):
    overlay, key = BAD[case]
    with pytest.raises(plan.ConfigError, match=rf"config error at {key.replace('.', '[.]')}:") as err:
        plan.validate(load_config(overlay))
    assert err.value.key == key


def test_validate_accepts_the_shipped_configs(quick):
    plan.validate(quick)
    plan.validate(yaml.safe_load((REPO / "config.yaml").read_text()))


def test_the_last_valid_batch_passes_and_one_more_fails():
    plan.validate(load_config({"training": {"batch_size": 500}}))  # 500 rows: one batch per epoch
    with pytest.raises(plan.ConfigError, match="batch of 501 is larger than the 500 training rows"):
        plan.validate(load_config({"training": {"batch_size": 501}}))


# ------------------------------------------------------------------ specs and settings
def test_model_spec_layers_defaults_model_and_overrides(quick):
    spec = plan.model_spec(quick, "bonus", dropout=0.0)
    assert spec["batch_size"] == quick["training"]["batch_size"]  # default
    assert spec["eta_max"] == quick["models"]["bonus"]["eta_max"]  # the model's own
    assert spec["dropout"] == 0.0  # the override wins over the model's 0.3
    assert plan.model_spec(quick, "linear")["dropout"] == 0.0  # filled in when absent


def test_step_size_in_epochs_steps_or_default():
    assert plan.step_size({"batch_size": 100, "n_s": None}, 45_000) == 900  # 2 epochs
    assert plan.step_size({"batch_size": 100, "n_s": 500}, 45_000) == 500
    assert plan.step_size({"batch_size": 100, "n_s": 500, "n_s_epochs": 4}, 45_000) == 1800
    assert plan.step_size({"batch_size": 100, "n_s": None}, 99) == 0  # what validate refuses


def test_search_settings_per_model(quick):
    assert plan.search_settings(quick, "bonus") == {"n_coarse": 3, "n_fine": 2, "coarse_cycles": 1,
                                                    "fine_cycles": 1, "seeds": [1]}
    assert plan.lam_model(quick, "deep9_nobn") == "deep9" and plan.lam_model(quick, "deep3") == "deep3"


def test_init_variants_cross_sigma_with_batch_norm_on_and_off(quick):
    v = plan.init_variants(quick)  # quick: σ in {1e-1, 1e-4}
    assert v == {"bn_sigma_1e-01": {"batch_norm": True, "init": 0.1},
                 "bn_sigma_1e-04": {"batch_norm": True, "init": 1e-4},
                 "nobn_sigma_1e-01": {"batch_norm": False, "init": 0.1},
                 "nobn_sigma_1e-04": {"batch_norm": False, "init": 1e-4}}
    assert plan.search_settings(quick, "linear")["n_coarse"] == quick["search"]["coarse"]["n"]
    assert plan.search_settings(quick, "linear")["seeds"] == quick["search"]["seeds"] == [1]
    assert plan.search_settings(quick, "mlp50")["seeds"] == [1, 2]  # the per-model override


def test_ablation_switches_each_improvement_off_then_all(quick):
    v = plan.ablation_variants(quick, {"dropout": 0.3})  # a recipe with every improvement
    assert v["no_dropout"] == {"dropout": 0.0}
    assert v["no_augmentation"] == {"flip": False, "max_shift": 0}
    assert v["no_momentum"] == {"optimizer": "sgd"}
    assert "no_width" in v  # the quick bonus is 64 wide
    assert v["all_off"] == {**v["no_width"], **v["no_dropout"], **v["no_augmentation"], **v["no_momentum"]}


def test_aug_spec_switches_only_augmentation(quick):
    on, off = plan.aug_spec(quick, "aug"), plan.aug_spec(quick, "noaug")
    assert on["flip"] and on["max_shift"] == 3 and not off["flip"] and off["max_shift"] == 0
    assert {k: v for k, v in on.items() if k not in ("flip", "max_shift")} == \
        {k: v for k, v in off.items() if k not in ("flip", "max_shift")}


# ------------------------------------------------------------------------ lam grids
def test_lam_labels_name_folders_and_keep_exact_values():
    lams = [10.0 ** e for e in (-5, -3.5, -2)]
    labels = grids.lam_labels(lams)
    assert list(labels) == ["lam_1.00e-05", "lam_3.16e-04", "lam_1.00e-02"]
    assert list(labels.values()) == lams  # the float itself, not the rounded label


def test_lam_labels_add_digits_rather_than_merge_two_runs():
    labels = grids.lam_labels([1.001e-3, 1.002e-3])
    assert len(labels) == 2 and "lam_1.001e-03" in labels
    with pytest.raises(ValueError, match="repeated"):
        grids.lam_labels([1e-3, 1e-3])


def test_coarse_grid_is_evenly_spaced_in_log10(quick):
    grid = plan.coarse_grid(quick, "linear")  # quick: 4 points over [-5, -1]
    assert [round(math.log10(v), 12) for v in grid.values()] == pytest.approx([-5, -11 / 3, -7 / 3, -1])


# ------------------------------------------------------------------------ selection
def row(lam, acc, cost=1.0):
    return {"lam": lam, "log10_lam": math.log10(lam), "val_accuracy": acc, "val_cost": cost}


def test_best_row_is_the_highest_validation_accuracy():
    rows = [row(1e-4, 0.40), row(1e-3, 0.47), row(1e-2, 0.45)]
    assert grids.best_row(rows)["lam"] == 1e-3


def test_ties_go_to_the_lower_validation_cost():
    rows = [row(1e-4, 0.47, cost=1.9), row(1e-3, 0.47, cost=1.7), row(1e-2, 0.47, cost=1.8)]
    assert grids.best_row(rows)["lam"] == 1e-3


def test_fine_grid_is_centred_on_the_coarse_best():
    rows = [row(10.0 ** e, acc) for e, acc in ((-5, 0.3), (-3, 0.5), (-1, 0.2))]
    assert grids.fine_exponents(rows, 5, 0.5, -5, -1) == pytest.approx([-3.5, -3.25, -3, -2.75, -2.5])


@pytest.mark.parametrize("edge, expected", [(-5, [-5, -4]), (-1, [-2, -1])])
def test_fine_grid_is_shifted_not_shrunk_at_an_edge(edge, expected):
    rows = [row(10.0 ** e, 0.5 if e == edge else 0.3) for e in (-5, -3, -1)]
    exps = grids.fine_exponents(rows, 3, 0.5, -5, -1)
    assert [exps[0], exps[-1]] == pytest.approx(expected)


def write_runs(tmp_path, stage, points):
    paths = []
    for i, (lam, acc) in enumerate(points):
        p = tmp_path / stage / grids.lam_label(lam) / "seed1" / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({**row(lam, acc), "seed": 1, "val_loss": 1.0, "train_accuracy": 0.5,
                                 "train_cost": 1.0, "train_loss": 1.0, "seconds": 1.0}))
        paths.append(p)
    return paths


def test_coarse_table_writes_the_fine_grid_and_fine_table_the_final_lam(tmp_path):
    coarse = tables.search_table(
        write_runs(tmp_path, "coarse", [(1e-5, 0.30), (1e-3, 0.52), (1e-1, 0.25)]), "coarse", "m",
        fine={"n": 3, "half_width": 0.5, "l_min": -5, "l_max": -1})
    assert coarse["best"]["lam"] == 1e-3
    # The fine grid is centred on the vertex of the parabola through the three points, not on
    # the best point: x = -3 + (h/2)(y0 - y2)/(y0 - 2 y1 + y2) with h = 2.
    vertex = -3 + (0.30 - 0.25) / (0.30 - 2 * 0.52 + 0.25)
    assert coarse["surface"]["shape"] == "peak" and coarse["surface"]["log10_lam"] == pytest.approx(vertex)
    assert [math.log10(v) for v in coarse["fine_grid"].values()] == pytest.approx(
        [vertex - 0.5, vertex, vertex + 0.5])
    fine = tables.search_table(
        write_runs(tmp_path, "fine", [(lam, acc) for lam, acc in
                                      zip(coarse["fine_grid"].values(), (0.51, 0.50, 0.53))]),
        "fine", "m")
    # a convex fit has its maximum at the higher edge: the fine best, not the coarse choice
    assert fine["final_lam"] == pytest.approx(10 ** (vertex + 0.5))
    assert fine["surface"]["edge"] == "upper" and fine["surface"]["interval_log10"] is None  # df 0
    assert [r["runs"] for r in fine["rows"]] == [[f"{label}/seed1"] for label in coarse["fine_grid"]]


# ------------------------------------------------------------------ diverged search points
def split_dir(tmp_path, n=200, d=3072, seed=0):
    """A preprocessed-split folder of learnable blobs (what load_split reads)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))
    for part, m in (("train", n), ("val", 50), ("test", 50)):
        y = rng.integers(0, 10, m)
        np.save(tmp_path / f"X_{part}.npy", (centres[y] + rng.normal(size=(m, d))).astype(np.float32))
        np.save(tmp_path / f"y_{part}.npy", y.astype(np.int64))
    np.savez(tmp_path / "norm.npz", mean=np.zeros(d), std=np.ones(d))
    (tmp_path / "stats.json").write_text(json.dumps({"label_names": [str(i) for i in range(10)]}))
    return tmp_path


SPEC = {"hidden": [], "dropout": 0.0, "batch_size": 50, "eta_min": 1e-5, "eta_max": 0.01,
        "n_s": None, "points_per_cycle": 2, "train_eval_size": 200, "divergence_factor": 10}


def test_a_diverged_search_point_is_recorded_and_a_final_run_fails(tmp_path):
    d = split_dir(tmp_path)
    # 2*lam*eta_max = 20: the weight decay alone overshoots.
    spec = {**SPEC, "eta_max": 10.0}
    _, _, m = runs.run(d, spec, 1.0, 1, 1, "float64", False, record_divergence=True, log=lambda s: None)
    assert m["diverged"] and m["val_accuracy"] is None
    assert m["divergence"]["cause"] == "l2" and "lower lambda" in m["divergence"]["advice"]
    json.dumps(m)  # a complete, JSON-safe metrics file
    with pytest.raises(TrainingDiverged):
        runs.run(d, spec, 1.0, 1, 1, "float64", False, record_divergence=False, log=lambda s: None)
    _, _, ok = runs.run(d, SPEC, 1e-3, 1, 1, "float64", False, record_divergence=True, log=lambda s: None)
    assert ok["diverged"] is False and ok["val_accuracy"] > 0.5


def test_diverged_points_are_shown_but_never_chosen(tmp_path):
    paths = write_runs(tmp_path, "coarse", [(1e-5, 0.30), (1e-3, 0.52), (1e-1, 0.99)])
    m = json.loads(paths[2].read_text())
    m.update(diverged=True, val_accuracy=None, val_cost=None,
             divergence={"step": 7, "eta": 0.05, "advice": "lower lambda (below 10)"})
    paths[2].write_text(json.dumps(m))
    table = tables.search_table(paths, "coarse", "m", fine={"n": 3, "half_width": 0.5, "l_min": -5, "l_max": -1})
    assert table["best"]["lam"] == 1e-3
    assert [r["diverged"] for r in table["rows"]] == [False, False, True]
    assert table["runs"][2]["diverged_step"] == 7


def test_a_search_where_every_point_diverged_fails_with_the_advice():
    rows = [{**row(1e-2, None), "diverged": True, "advice": "lower eta_max (now 10)"},
            {**row(1e-1, None), "diverged": True, "advice": "lower eta_max (now 10)"}]
    with pytest.raises(grids.EverySearchPointDiverged, match=r"every one of the 2 .*lower eta_max"):
        grids.best_row(rows)


def test_init_sensitivity_table_and_its_statement(tmp_path):
    """Constructed runs: batch norm trains at every σ, without it σ = 1e-4 does not."""
    paths = []
    for bn, sigma, seed, acc in [(True, 0.1, 1, 0.50), (True, 0.1, 2, 0.52), (True, 1e-4, 1, 0.49),
                                 (True, 1e-4, 2, 0.51), (False, 0.1, 1, 0.45), (False, 0.1, 2, 0.47),
                                 (False, 1e-4, 1, 0.10), (False, 1e-4, 2, 0.10)]:
        p = tmp_path / f"{'bn' if bn else 'nobn'}_{sigma}" / f"seed{seed}" / "metrics.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"spec": {"batch_norm": bn, "init": sigma}, "seed": seed, "lam": 1e-3,
                                 "test_accuracy": acc, "train_loss": 1.0 if acc > 0.2 else 2.3}))
        paths.append(p)
    t = tables.init_sensitivity(paths)
    by = {(r["batch_norm"], r["sigma"]): r for r in t["rows"]}
    assert by[(True, 1e-4)]["test_accuracy_mean"] == pytest.approx(0.50)
    assert by[(False, 1e-4)]["test_accuracy_mean"] == pytest.approx(0.10)
    assert by[(False, 0.1)]["test_accuracy_std"] == pytest.approx(np.std([0.45, 0.47], ddof=1))
    assert "with batch norm, test accuracy spans 50.0–51.0%" in t["statement"]
    assert "without, test accuracy spans 10.0–46.0%" in t["statement"]
    assert "σ = 1e-04: BN 50.0%, no BN 10.0%" in t["statement"]


def test_the_ablation_text_holds_no_wall_clock_time(tmp_path):
    """Two runs of the same config differ only in timings: their result texts must not."""
    texts = []
    for seconds in (12.0, 97.5):
        paths = []
        for variant, seed, acc in [("no_dropout", 1, 0.55), ("no_dropout", 2, 0.57), ("all_off", 1, 0.50)]:
            p = tmp_path / str(seconds) / variant / f"seed{seed}" / "metrics.json"
            p.parent.mkdir(parents=True)
            p.write_text(json.dumps({"wildcards": {"variant": variant}, "test_accuracy": acc,
                                     "seconds": seconds, "lam": 1e-3}))
            paths.append(p)
        table = tables.ablation_table(paths, tmp_path, "float32")
        assert table["rows"][0]["seconds_mean"] == seconds  # the timing is kept, in its field
        texts.append(table["text"])
    assert texts[0] == texts[1] and "56.00% ± 1.41 over 2 seed(s)" in texts[0]


# ------------------------------------------------------------------ independent replicates
def test_a_replicate_moves_every_training_seed_and_nothing_else():
    base = load_config()
    rep = plan.with_replicate(load_config({"replicate": 2}))
    assert plan.with_replicate(base) is base  # replicate 0: the study as configured
    assert rep["results"] == f"{base['results']}/replicate2"
    seeds = lambda c: (c["search"]["seeds"], c["final"]["seeds"], c["lr_range"]["seed"],  # noqa: E731
                       c["search"]["coarse"]["seed"], c["search"]["per_model"]["mlp50"]["seeds"],
                       [e["seeds"] for e in c["bonus"].values()])
    old, new = seeds(base), seeds(rep)
    flat = lambda x: [v for i in x for v in (flat(i) if isinstance(i, list) else [i])]  # noqa: E731
    assert not set(flat(old)) & set(flat(new))  # no seed shared with the first replicate
    assert [s - 2000 for s in rep["final"]["seeds"]] == base["final"]["seeds"]
    # the data and the gates are the same experiment's, not a replicate's
    assert rep["data"] == base["data"] and rep["gates"] == base["gates"]
    plan.validate(rep)

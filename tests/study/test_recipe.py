"""The bonus recipe chosen by evidence (bonus.recipe): candidates, the recipe table's choice,
the spec a final or ablation run trains, and the ablation's "not beaten beyond the noise" check,
on constructed runs whose right answer is known."""
import json
import math

import pytest

from handbackprop.study import plan, resolve, tables
from conftest import load_config

CANDIDATES = {"configured": {}, "dropout_0.3": {"dropout": 0.3}, "long": {"n_s_epochs": 6}}


def write_recipe_runs(tmp_path, points):
    """metrics.json of each (candidate, seed, val_accuracy[, val_cost]) in the workflow's layout."""
    paths = []
    for cand, seed, acc, *cost in points:
        p = tmp_path / "recipe" / cand / f"seed{seed}" / "metrics.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({
            "lam": 1e-3, "log10_lam": -3, "seed": seed, "diverged": acc is None,
            "val_accuracy": acc, "val_cost": cost[0] if cost else (None if acc is None else 1.0),
            "val_loss": 1.0, "train_accuracy": 0.5, "train_cost": 1.0, "train_loss": 1.0,
            "seconds": 1.0, "wildcards": {"candidate": cand, "seed": str(seed)},
            **({"divergence": {"advice": "lower eta_max"}} if acc is None else {})}))
        paths.append(p)
    return paths


def test_the_best_mean_is_chosen_and_the_noise_band_marked(tmp_path):
    # 'long' has the single best seed (0.62) but mean 0.55; dropout_0.3's mean 0.58 wins.
    paths = write_recipe_runs(tmp_path, [("configured", 1, 0.56), ("configured", 2, 0.57),
                                         ("dropout_0.3", 1, 0.58), ("dropout_0.3", 2, 0.58),
                                         ("long", 1, 0.62), ("long", 2, 0.48)])
    t = tables.recipe_table(paths, CANDIDATES)
    assert t["chosen"] == "dropout_0.3" and t["recipe"] == {"dropout": 0.3}
    rows = {r["candidate"]: r for r in t["rows"]}
    assert rows["configured"]["val_accuracy"] == pytest.approx(0.565)
    assert rows["configured"]["val_accuracy_std"] == pytest.approx(math.sqrt(0.00005))
    # configured: gap 0.015 > its SE 0.005 (dropout's SE is 0): distinguishable.
    assert not rows["configured"]["indistinguishable"]
    # long: gap 0.03, SE 0.07: the seed noise covers it.
    assert rows["long"]["indistinguishable"] and rows["long"]["gap_se"] == pytest.approx(0.07)
    assert t["indistinguishable"] == ["dropout_0.3", "long"]
    assert "<- chosen" in t["text"].splitlines()[1]


def test_ties_go_to_the_lower_cost_and_diverged_candidates_never_win(tmp_path):
    paths = write_recipe_runs(tmp_path, [("configured", 1, 0.5, 1.2), ("dropout_0.3", 1, 0.5, 1.1),
                                         ("long", 1, None)])
    t = tables.recipe_table(paths, CANDIDATES)
    assert t["chosen"] == "dropout_0.3"
    assert [r["diverged"] for r in t["rows"]] == [False, False, True]
    every = write_recipe_runs(tmp_path / "all", [(c, 1, None) for c in CANDIDATES])
    with pytest.raises(ValueError, match="every recipe candidate diverged.*lower eta_max"):
        tables.recipe_table(every, CANDIDATES)


def test_a_candidate_without_runs_is_an_error(tmp_path):
    paths = write_recipe_runs(tmp_path, [("configured", 1, 0.5)])
    with pytest.raises(ValueError, match="without runs: \\['dropout_0.3', 'long'\\]"):
        tables.recipe_table(paths, CANDIDATES)


def test_a_run_trains_the_config_then_the_recipe_then_the_switch(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"recipe": {"dropout": 0.1, "n_s_epochs": 6}}))
    spec = {"hidden": [500], "dropout": 0.0, "n_s_epochs": 4, "flip": True}
    assert resolve.layered(spec) == spec
    assert resolve.layered(spec, [str(recipe)]) == {**spec, "dropout": 0.1, "n_s_epochs": 6}
    # the ablation's switch wins over the recipe it ablates
    assert resolve.layered(spec, str(recipe), {"dropout": 0.0})["dropout"] == 0.0
    assert resolve.layered(spec, [], {"flip": False})["flip"] is False


def test_ablation_variants_follow_the_chosen_recipe():
    cfg = load_config()
    cfg["models"]["bonus"]["dropout"] = 0.0
    assert "no_dropout" not in plan.ablation_variants(cfg)  # nothing to switch off
    v = plan.ablation_variants(cfg, {"dropout": 0.3})
    assert v["no_dropout"] == {"dropout": 0.0}
    assert v["all_off"]["dropout"] == 0.0 and v["all_off"]["optimizer"] == "sgd"
    assert plan.recipe_candidates(cfg)["configured"] == {}
    assert plan.recipe_model(cfg) == cfg["bonus"]["ablation"]["model"]


@pytest.mark.parametrize("over, key", [
    ({"bonus": {"recipe": {"candidates": [{"name": "x", "widht": [10]}]}}}, "bonus.recipe.candidates.x"),
    ({"bonus": {"recipe": {"candidates": [{"name": "configured", "dropout": 0.1}]}}},
     "bonus.recipe.candidates.configured"),
])
def test_bad_candidates_name_the_key(over, key):
    cfg = load_config(over)
    with pytest.raises(plan.ConfigError) as e:
        plan.validate(cfg)
    assert e.value.key == key


def test_the_ablation_check_names_a_variant_that_beats_the_recipe_beyond_the_noise(tmp_path):
    rows = [{"variant": "all", "test_accuracy_mean": 0.55, "test_accuracy_std": 0.004, "seeds": 3},
            {"variant": "no_dropout", "test_accuracy_mean": 0.58, "test_accuracy_std": 0.002, "seeds": 2},
            {"variant": "no_width", "test_accuracy_mean": 0.552, "test_accuracy_std": 0.01, "seeds": 2}]
    beaten = tables._beaten_by(rows)
    assert [b["variant"] for b in beaten] == ["no_dropout"]
    assert beaten[0]["gap"] == pytest.approx(0.03)
    assert beaten[0]["se"] == pytest.approx(math.sqrt(0.004 ** 2 / 3 + 0.002 ** 2 / 2))
    # within the noise: +0.002 against SE sqrt(0.004²/3 + 0.01²/2) = 0.0074
    assert rows[2]["gap_to_all"] == pytest.approx(0.002) and rows[2]["gap_to_all_se"] > 0.002

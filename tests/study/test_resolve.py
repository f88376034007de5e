"""One resolver of a run's settings (config spec → recipe → switches → η), and η's source as a
value of the config."""
import json

import pytest

from conftest import load_config
from handbackprop.study import plan, resolve

RANGE = {"model": "m", "bounds": {"eta_min": 2e-4, "eta_max": 2e-2, "peak_at_edge": False}}


@pytest.mark.parametrize("value, source", [(None, "range_test"), ("range_test", "range_test"),
                                           (0.05, "config"), (1, "config")])
def test_eta_source_is_the_value_of_eta_max(value, source):
    cfg = load_config()
    entry = cfg["models"]["linear"]
    entry.pop("eta_max", None)
    if value is not None:
        entry["eta_max"] = value
    assert plan.eta_source(cfg, "linear") == source


@pytest.mark.parametrize("bad", ["rangetest", -0.1, 0, True, [0.1]])
def test_an_eta_max_neither_a_number_nor_range_test_names_its_key(bad):
    cfg = load_config({"models": {"deep3": {"eta_max": bad}}})
    with pytest.raises(plan.ConfigError, match=r"models\.deep3\.eta_max: must be a positive number or 'range_test'"):
        plan.validate(cfg)


def test_an_explicit_range_test_is_the_same_spec_as_the_default():
    # the same params: writing `eta_max: range_test` for a model reruns none of its jobs
    cfg = load_config()
    cfg["models"]["linear"].pop("eta_max", None)
    absent = plan.model_spec(cfg, "linear")
    cfg["models"]["linear"]["eta_max"] = "range_test"
    assert plan.model_spec(cfg, "linear") == absent and "eta_max" not in absent


def test_layers_apply_in_order_and_eta_comes_last(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"recipe": {"dropout": 0.3, "hidden": [100], "eta_max": 9.0}}))
    spec = {"hidden": [50], "dropout": 0.1, "eta_min": 1e-5, "eta_max": 0.1}
    got, eta = resolve.resolve(spec, "range_test", recipe=[str(recipe)], switches={"dropout": 0.0},
                               range_result=RANGE)
    # recipe over config, switches over recipe, the range test's η over everything
    assert got == {"hidden": [100], "dropout": 0.0, "eta_min": 2e-4, "eta_max": 2e-2}
    assert eta["eta_source"] == "range_test" and eta["range_model"] == "m"
    fixed, eta = resolve.resolve(spec, "config", switches={"dropout": 0.0})
    assert fixed["eta_max"] == 0.1 and eta == {"eta_source": "config", "eta_min": 1e-5, "eta_max": 0.1}


def test_the_resolver_is_its_two_steps_in_order(tmp_path):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"recipe": {"dropout": 0.5}}))
    spec = {"hidden": [50], "dropout": 0.1, "eta_min": 1e-5, "eta_max": 0.1}
    old = resolve.with_eta(resolve.layered(spec, str(recipe), {"hidden": [10]}), "range_test", RANGE)
    assert old == resolve.resolve(spec, "range_test", recipe=str(recipe), switches={"hidden": [10]},
                                  range_result=RANGE)


def test_an_unknown_source_is_refused():
    with pytest.raises(ValueError, match="eta source must be one of"):
        resolve.resolve({"eta_min": 1e-5, "eta_max": 0.1}, "fixed")

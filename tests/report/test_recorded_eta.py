"""The report shows the η each model's runs recorded; it does not decide η from the config."""
import json

import pytest

from handbackprop.report.collect import collect_lr_range


def range_json(tmp_path, model="m"):
    p = tmp_path / f"{model}.json"
    p.write_text(json.dumps({
        "model": model, "bounds": {"eta_min": 1e-4, "eta_max": 1e-2, "rule": "r", "peak_at_edge": False},
        "settings": {}, "spec": {}, "stopped_early": False, "steps_done": 2, "steps_planned": 2,
        "records": [{"step": 0, "eta": 1e-4, "loss_raw": 2.3, "loss_smoothed": 2.3, "val_accuracy": 0.1}]}))
    return p


def run(model, source, lo, hi):
    return {"model": model, "eta_source": source, "eta": {"eta_source": source, "eta_min": lo, "eta_max": hi}}


@pytest.mark.parametrize("source, lo, hi", [("config", 1e-5, 0.05), ("range_test", 1e-4, 1e-2)])
def test_the_row_shows_what_the_runs_recorded(tmp_path, source, lo, hi):
    (row,) = collect_lr_range([range_json(tmp_path)], [run("m", source, lo, hi), run("other", "config", 1, 2)])
    assert (row["eta_source"], row["fixed"]) == (source, source == "config")
    assert (row["eta_min_used"], row["eta_max_used"]) == (lo, hi)


def test_runs_of_one_model_that_disagree_are_an_error_naming_it(tmp_path):
    with pytest.raises(ValueError, match="runs of 'm' record different η"):
        collect_lr_range([range_json(tmp_path)], [run("m", "config", 1e-5, 0.05), run("m", "config", 1e-5, 0.1)])
    with pytest.raises(ValueError, match="runs of 'm' record no η"):
        collect_lr_range([range_json(tmp_path)], [])

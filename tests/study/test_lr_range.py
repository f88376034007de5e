"""The learning-rate range test (handbackprop/study/lr_range.py): the rule that reads the bounds
off a curve whose right answer is known, the log-linear schedule, how a training job takes its η,
the config checks, and a real (tiny) range test through the training loop."""
import copy
import json

import numpy as np
import pytest

from handbackprop.nn.network import build_network
from handbackprop.study import lr_range, plan, resolve
from conftest import load_config


# ------------------------------------------------------------------------- choose_bounds
def peaked(peak_eta=1e-2, n=41):
    """η over 1e-4..1 (index 20 is exactly 1e-2) and an accuracy parabola in log10 η peaking at peak_eta."""
    etas = np.geomspace(1e-4, 1.0, n)
    acc = 0.4 - 0.05 * (np.log10(etas) - np.log10(peak_eta)) ** 2
    return etas, acc


def test_a_curve_with_a_known_peak_gives_that_eta_and_the_documented_fractions():
    etas, acc = peaked()
    b = lr_range.choose_bounds(etas, acc, smooth=5, max_fraction=0.5, min_fraction=0.01)
    assert b["peak_eta"] == pytest.approx(1e-2) and b["peak_index"] == 20
    assert b["eta_max"] == pytest.approx(0.5e-2) and b["eta_min"] == pytest.approx(0.5e-4)
    assert not b["peak_at_edge"] and b["edge"] is None
    assert b["peak_accuracy"] == pytest.approx(np.mean(acc[18:23]))  # the smoothed value at the peak
    other = lr_range.choose_bounds(etas, acc, smooth=5, max_fraction=0.25, min_fraction=0.1)
    assert other["eta_max"] == pytest.approx(0.25e-2) and other["eta_min"] == pytest.approx(0.25e-3)
    assert "0.25 × the η" in other["rule"] and "over 5 records" in other["rule"]


def test_smoothing_ignores_a_single_lucky_record():
    etas, acc = peaked()
    acc = acc.copy()
    acc[30] = acc.max() + 0.05  # one noisy record at η = 0.1, above the true peak
    assert lr_range.choose_bounds(etas, acc, smooth=1)["peak_index"] == 30
    assert lr_range.choose_bounds(etas, acc, smooth=5)["peak_eta"] == pytest.approx(1e-2)


def test_a_curve_that_rises_to_the_end_gives_its_last_point_flagged_at_the_edge():
    etas = np.geomspace(1e-4, 1.0, 30)
    b = lr_range.choose_bounds(etas, np.linspace(0.1, 0.4, 30), smooth=3, max_fraction=1.0)
    assert b["peak_index"] == 29 and b["peak_eta"] == pytest.approx(1.0) and b["eta_max"] == pytest.approx(1.0)
    assert b["peak_at_edge"] is True and b["edge"] == "high"
    falling = lr_range.choose_bounds(etas, np.linspace(0.4, 0.1, 30), smooth=3)
    assert falling["peak_at_edge"] is True and falling["edge"] == "low"


def test_moving_average_is_centred_and_shrinks_at_the_ends():
    np.testing.assert_allclose(lr_range.moving_average([1, 2, 3, 4, 10], 3), [1.5, 2, 3, 17 / 3, 7])
    np.testing.assert_allclose(lr_range.moving_average([1, 2, 3], 1), [1, 2, 3])


@pytest.mark.parametrize("etas, acc", [([1e-3, 1e-3, 1e-2], [0.1, 0.2, 0.3]),  # η not rising
                                       ([1e-3, 1e-2], [0.1, float("nan")]),  # no accuracy
                                       ([1e-3, 1e-2], [0.1])])  # lengths differ
def test_choose_bounds_refuses_a_malformed_curve(etas, acc):
    with pytest.raises(ValueError):
        lr_range.choose_bounds(etas, acc)


# ------------------------------------------------------------------------------ schedule
def test_the_schedule_is_log_spaced_monotone_and_hits_both_ends():
    etas = lr_range.range_schedule(1e-5, 1.0, 901)
    assert etas[0] == pytest.approx(1e-5) and etas[-1] == pytest.approx(1.0)
    assert np.all(np.diff(etas) > 0)
    steps = np.diff(np.log10(etas))
    np.testing.assert_allclose(steps, 5 / 900, rtol=1e-9)  # the same factor every step
    assert etas[450] == pytest.approx(10 ** -2.5)  # halfway in steps is halfway in log η
    with pytest.raises(ValueError):
        lr_range.range_schedule(1e-5, 1.0, 1)


def test_range_steps_count_every_batch_including_a_short_last_one():
    assert plan.range_steps({"epochs": 2}, 45000, 100) == 900
    assert plan.range_steps({"epochs": 3}, 450, 100) == 15  # 5 batches an epoch, the last of 50


# ----------------------------------------------------------------------------- η from the range test (resolve.with_eta)
RANGE = {"model": "mlp50", "bounds": {"eta_min": 2e-4, "eta_max": 2e-2, "peak_at_edge": False}}


def test_with_eta_takes_the_range_tests_bounds():
    spec = {"hidden": [50], "eta_min": 1e-5, "eta_max": 0.1}
    new, info = resolve.with_eta(spec, "range_test", RANGE)
    assert (new["eta_min"], new["eta_max"]) == (2e-4, 2e-2)
    assert spec["eta_max"] == 0.1  # the caller's spec is not changed in place
    assert info == {"eta_source": "range_test", "eta_min": 2e-4, "eta_max": 2e-2,
                    "range_model": "mlp50", "peak_at_edge": False}
    with pytest.raises(ValueError, match="range-test result"):
        resolve.with_eta(spec, "range_test", None)


def test_with_eta_respects_a_fixed_eta_without_reading_the_range_test(tmp_path):
    spec = {"hidden": [500], "eta_min": 1e-5, "eta_max": 0.02}
    new, info = resolve.with_eta(spec, "config", None)
    assert new == spec
    assert info == {"eta_source": "config", "eta_min": 1e-5, "eta_max": 0.02}
    path = tmp_path / "mlp50.json"
    path.write_text(json.dumps(RANGE))
    new, info = resolve.with_eta(spec, "range_test", path)
    assert (new["eta_min"], new["eta_max"]) == (2e-4, 2e-2) and info["range_model"] == "mlp50"
    with pytest.raises(ValueError, match="eta source"):
        resolve.with_eta(spec, "guess", RANGE)


# ------------------------------------------------------------------------ config meaning
def test_eta_source_and_which_models_range_test_a_job_uses():
    cfg = load_config()
    assert plan.eta_source(cfg, "linear") == "range_test"
    assert plan.eta_source(cfg, "bonus") == "config"  # bonus fixes eta_max: 0.02
    cfg["models"]["linear"]["eta_max"] = 0.01
    assert plan.eta_source(cfg, "linear") == "config"
    assert plan.range_model(cfg, "deep9_nobn") == "deep9_nobn"  # its own, though λ is deep9's
    assert plan.range_model(cfg, "ablation") == cfg["bonus"]["ablation"]["model"] == "bonus"
    assert plan.range_model(cfg, "aug_vs_lambda") == "mlp50"
    assert plan.range_model(cfg, "init_sensitivity") == "deep3"
    assert plan.range_models(cfg) == ["linear", "mlp50", "bonus", "deep3", "deep9", "deep9_nobn"]
    with pytest.raises(plan.ConfigError):
        plan.range_model(cfg, "resnet")


def test_per_model_settings_override_the_defaults():
    cfg = load_config({"lr_range": {"per_model": {"bonus": {"epochs": 1, "eta_high": 0.5}}}})
    assert plan.range_settings(cfg, "bonus")["epochs"] == 1
    assert plan.range_settings(cfg, "bonus")["eta_high"] == 0.5
    assert plan.range_settings(cfg, "linear")["epochs"] == cfg["lr_range"]["epochs"]


BAD = {
    "eta_low not below eta_high": ({"eta_low": 2.0}, "lr_range.eta_low"),
    "per-model eta_high below eta_low": ({"per_model": {"linear": {"eta_high": 1e-6}}},
                                         "lr_range.per_model.linear.eta_high"),
    "max_fraction above 1": ({"max_fraction": 1.5}, "lr_range.max_fraction"),
    "per-model min_fraction of 0": ({"per_model": {"mlp50": {"min_fraction": 0.0}}},
                                    "lr_range.per_model.mlp50.min_fraction"),
    "ema_beta of 1": ({"ema_beta": 1.0}, "lr_range.ema_beta"),
    "divergence_factor of 1": ({"divergence_factor": 1.0}, "lr_range.divergence_factor"),
    "unknown per-model model": ({"per_model": {"resnet": {"epochs": 1}}}, "lr_range.per_model"),
    # quick: 20 steps (4 epochs of 5 batches); every 8 steps gives 2 records, fewer than smooth = 3
    "too few records to smooth": ({"record_every": 8}, "lr_range.record_every"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_range_setting_is_refused_naming_the_key(case):
    overlay, key = BAD[case]
    cfg = load_config({"lr_range": overlay})
    with pytest.raises(plan.ConfigError) as err:
        plan.validate(cfg)
    assert err.value.key == key and key in str(err.value)


def test_the_configs_shipped_are_valid():
    plan.validate(load_config())


# ------------------------------------------------------------------- a real range test
def blobs(n, d=20, k=10, seed=0):
    """Separable-ish classes: a random mean per class plus unit noise (float32)."""
    rng = np.random.default_rng(seed)
    means = 1.5 * rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    return (means[y] + rng.normal(size=(n, d))).astype(np.float32), y


SETTINGS = {"epochs": 3, "eta_low": 1e-4, "eta_high": 1000.0, "record_every": 4, "val_rows": 150, "lam": 1e-4,
            "smooth": 3, "max_fraction": 0.5, "min_fraction": 0.01, "divergence_factor": 4.0,
            "ema_beta": 0.9, "seed": 1}


@pytest.mark.parametrize("hidden", [[], [16]])
def test_a_tiny_range_test_records_a_rising_eta_and_stops_once_the_loss_diverges(hidden):
    X, y = blobs(700)
    Xtr, ytr, Xva, yva = X[:500], y[:500], X[500:], y[500:]
    spec = {"hidden": hidden, "batch_size": 25, "optimizer": "sgd", "divergence_factor": 1e6, "eta_min": 1e-5,
            "eta_max": 0.1}
    net = build_network(20, hidden, 10, 0.0, "float32", 1)
    out = lr_range.range_test(net, Xtr, ytr, Xva, yva, spec, SETTINGS, log=lambda *a: None)
    recs = out["records"]
    steps = plan.range_steps(SETTINGS, 500, 25)
    assert out["steps_planned"] == steps == 60
    etas = lr_range.range_schedule(1e-4, 1000.0, steps)
    assert [r["eta"] for r in recs] == pytest.approx([etas[r["step"]] for r in recs], rel=1e-12)
    assert np.all(np.diff([r["eta"] for r in recs]) > 0)
    assert out["n_val_rows"] == 150
    # the classes are learnable: at its best the net is far above chance (0.1)
    assert max(r["val_accuracy"] for r in recs) > 0.5
    # η up to 1000 makes SGD blow up: the run stops early, and the stop step is the last record
    assert out["stopped_early"] and out["steps_done"] < steps
    assert recs[-1]["step"] == out["stop"]["step"] == out["steps_done"] - 1
    assert out["stop"]["loss_smoothed"] > 4.0 * out["stop"]["min_loss_smoothed"]
    b = out["bounds"]
    assert b == lr_range.choose_bounds([r["eta"] for r in recs], [r["val_accuracy"] for r in recs], 3, 0.5, 0.01)
    assert 1e-4 < b["peak_eta"] < out["stop"]["eta"]
    csv_rows = lr_range.curve_csv(out).splitlines()
    assert csv_rows[0].split(",") == list(lr_range.CURVE_COLUMNS) and len(csv_rows) == len(recs) + 1


def test_a_range_test_that_never_diverges_runs_to_its_last_step():
    X, y = blobs(400, seed=3)
    spec = {"hidden": [8], "batch_size": 50, "divergence_factor": 1e6, "eta_min": 1e-5, "eta_max": 0.1}
    settings = {**SETTINGS, "eta_high": 0.05, "record_every": 5}
    out = lr_range.range_test(build_network(20, [8], 10, 0.0, "float32", 1), X[:300], y[:300], X[300:], y[300:],
                              spec, settings, log=lambda *a: None)
    steps = plan.range_steps(settings, 300, 50)  # 3 epochs of 6 batches
    assert not out["stopped_early"] and out["stop"] is None and out["steps_done"] == steps == 18
    assert [r["step"] for r in out["records"]] == [4, 9, 14, 17]  # every 5 steps, and the last
    assert out["records"][-1]["eta"] == pytest.approx(0.05)


def test_the_same_settings_give_the_same_curve():
    X, y = blobs(400, seed=2)
    spec = {"hidden": [8], "batch_size": 50, "divergence_factor": 1e6, "eta_min": 1e-5, "eta_max": 0.1}
    runs = [lr_range.range_test(build_network(20, [8], 10, 0.0, "float32", 1), X[:300], y[:300], X[300:], y[300:],
                                spec, copy.deepcopy(SETTINGS), log=lambda *a: None)["records"] for _ in range(2)]
    assert runs[0] == runs[1]

"""The gates pass correct code, and the planted-bug catalogue shows which gate catches which bug."""
import numpy as np
import pytest

from handbackprop.gates.planted_bugs import BATCHNORM_BUGS, CATALOGUE, run_catalogue
from handbackprop.gates.runner import run_gate

THRESH = {"max_rel": 1e-7, "norm_rel": 1e-10, "cost_rel": 1e-12, "fd_norm_rel": 1e-6, "exact_ratio": 2.0}
SETTINGS = {
    "gradcheck": {"n_images": 8, "lam": 0.05, "seed": 7, "fd_coords": 5, "thresholds": THRESH,
                  "variants": {"linear": {"hidden": []}, "two_layer": {"hidden": [30]},
                               "two_layer_dropout": {"hidden": [30], "dropout": 0.3}}},
    "overfit": {"n_images": 100, "steps": 200, "eta_max": 0.1, "init_tolerance": 0.5,
                "loss_bound": 0.01, "init_scale_tolerance": 1.5, "seed": 7,
                "variants": {"two_layer": {"hidden": [50]}}},
    "trajectory": {"n_images": 100, "steps": 20, "batch_size": 30, "n_s": 5, "eta_min": 1e-5,
                   "eta_max": 0.1, "lam": 0.01, "seed": 7, "tolerance": 1e-10,
                   "float32_tolerance": 1e-4, "heldout": 60,
                   "variants": {"two_layer": {"hidden": [30]},
                                "two_layer_dropout_aug": {"hidden": [30], "dropout": 0.3,
                                                          "flip": True, "max_shift": 3},
                                "linear_f32": {"hidden": [], "dtype": "float32"},
                                "two_layer_dropout_aug_f32": {"hidden": [30], "dropout": 0.3, "flip": True,
                                                              "max_shift": 3, "dtype": "float32"}}},
}

# bug -> (gates that must catch it, gates that cannot). Gates outside both sets may or may not,
# depending on data and budgets (a 100x-too-large step can still memorise 100 images).
TRAINING_LOOP_ONLY = {"gradcheck"}  # gradcheck never runs an update, a schedule or a batch order
EXPECTED = {
    "relu_derivative_wrong": ({"gradcheck", "trajectory"}, set()),
    "l2_grad_missing_factor_2": ({"gradcheck", "trajectory"}, {"overfit"}),  # overfit has lambda = 0
    "l2_grad_added_twice": ({"gradcheck", "trajectory"}, {"overfit"}),
    "bias_grad_not_summed": ({"gradcheck", "trajectory"}, set()),
    "dropout_mask_missing_in_backward": ({"gradcheck", "trajectory"}, {"overfit"}),  # no dropout there
    "loss_summed_not_averaged": ({"gradcheck", "trajectory"}, set()),
    "labels_out_of_step": ({"overfit", "trajectory"}, TRAINING_LOOP_ONLY),
    "learning_rate_not_applied": ({"trajectory"}, TRAINING_LOOP_ONLY),  # biases (SGD.step)
    "weight_step_ignores_eta": ({"trajectory"}, TRAINING_LOOP_ONLY),  # weights (the fused GEMM step)
    "schedule_off_by_one_step": ({"trajectory"}, TRAINING_LOOP_ONLY),
    "schedule_half_cycle_phase": ({"trajectory"}, TRAINING_LOOP_ONLY),
    # gradcheck draws its own point and the trajectory's two sides share their start; but
    # scores ~1e4 make evaluate()'s loss (from clamped probabilities) differ from torch's
    "init_scale_100x": ({"overfit"}, {"gradcheck"}),
    # torch scales the same keep pattern by 1/(1-p) itself; gradcheck shares our masks
    "dropout_not_inverted": ({"trajectory"}, {"gradcheck", "overfit"}),
    # the evaluation checks after the trajectory; overfit trains without dropout, gradcheck never
    # scores held-out rows
    "predict_proba_applies_dropout": ({"trajectory"}, {"gradcheck", "overfit"}),
    "bias_dropped_at_test_time": ({"trajectory"}, {"gradcheck"}),
    "ensemble_averages_log_probs": ({"trajectory"}, {"gradcheck", "overfit"}),
    "ensemble_averages_votes": ({"trajectory"}, {"gradcheck", "overfit"}),
    # the initial-scale figure; the initial cost is still ln 10
    "init_std_is_variance": ({"overfit"}, {"gradcheck", "trajectory"}),
    "augmentation_shares_dropout_stream": ({"trajectory"}, {"gradcheck", "overfit"}),
    "dropout_keep_drawn_in_training_dtype": ({"trajectory"}, {"gradcheck", "overfit"}),
}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 3072))
    y = rng.integers(0, 10, 160)  # 100 training rows, 60 held out
    X = centres[y] + 2 * rng.normal(size=(160, 3072))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


@pytest.fixture(scope="module")
def table(images):
    # The batch-norm bugs need batch-norm variants: tests/gates/test_bug_table_bn.py runs them.
    bugs = [b for b in CATALOGUE if b not in BATCHNORM_BUGS]
    return {row["bug"]: row for row in run_catalogue(*images, SETTINGS, bugs=bugs, log=lambda s: None)}


def test_correct_code_passes_every_gate(images):
    for gate in SETTINGS:
        ev = run_gate(gate, *images, SETTINGS[gate])
        assert ev["passed"], ev["failures"]
    ev = run_gate("gradcheck", *images, SETTINGS["gradcheck"])
    for v in ev["variants"]:
        for name, fig in v["params"].items():
            assert fig["norm_rel"] < 1e-13, (v["variant"], name)  # machine precision, far below 1e-10


def test_catalogue_is_large_and_named():
    assert len(CATALOGUE) >= 8
    assert set(EXPECTED) == {b.name for b in CATALOGUE if b not in BATCHNORM_BUGS}


def test_correct_code_row_passes(table):
    assert table["(none: correct code)"]["caught_by"] == []


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_each_bug_is_caught_by_the_gates_built_for_it(table, bug):
    must, cannot = EXPECTED[bug]
    caught = set(table[bug]["caught_by"])
    assert must <= caught, table[bug]
    assert not cannot & caught, table[bug]
    if not caught:
        assert table[bug]["note"], "an uncaught bug must say why"


def test_every_bug_is_caught(table):
    uncaught = {b for b, row in table.items() if not row["caught_by"]}
    assert uncaught == {"(none: correct code)"}
    assert table["dropout_not_inverted"]["caught_by"] == ["trajectory"]


def test_failure_messages_name_variant_parameter_and_figure(table):
    msg = table["relu_derivative_wrong"]["gradcheck_message"]
    assert "two_layer" in msg and "W1" in msg and "rel" in msg
    msg = table["schedule_off_by_one_step"]["trajectory_message"]
    assert "step" in msg and "torch" in msg


def test_loss_summed_is_caught_by_torch_not_by_finite_differences(table):
    """Finite differences agree with a wrong-but-consistent cost; only the torch cost exposes it."""
    msg = table["loss_summed_not_averaged"]["gradcheck_message"]
    assert "cost" in msg or "norm_rel" in msg or "max_rel" in msg
    assert "fd_norm_rel" not in msg


def test_patches_are_undone(images):
    ev = run_gate("gradcheck", *images, SETTINGS["gradcheck"])
    assert ev["passed"]


def _variant_of(failure: str) -> str:
    return failure.split(":")[0]


def test_float32_only_bug_fails_only_float32_checks(images):
    """Uniforms drawn in float32 leave the documented stream only in float32 runs."""
    bug = {b.name: b for b in CATALOGUE}["dropout_keep_drawn_in_training_dtype"]
    with bug.plant():
        ev = run_gate("trajectory", *images, SETTINGS["trajectory"])
    failing = {_variant_of(f) for f in ev["failures"]}
    assert failing and all(v.endswith("f32") or v == "float32" for v in failing), failing
    assert "two_layer_dropout_aug_f32" in failing


def test_evaluation_messages_name_the_check(table):
    assert "plain forward" in table["predict_proba_applies_dropout"]["trajectory_message"]
    assert "ensemble" in table["ensemble_averages_log_probs"]["trajectory_message"]
    assert "initial std of W1" in table["init_std_is_variance"]["overfit_message"]
    assert "torch" in table["dropout_not_inverted"]["trajectory_message"]


def test_every_planted_bug_actually_ran(table):
    """Each replacement counted its calls: a bug whose replacement never ran was never tested."""
    for name, row in table.items():
        if name != "(none: correct code)":
            assert row["planted"] and row["planted_calls"] > 0, name


def test_a_bug_the_code_never_reaches_is_reported_not_planted(images, monkeypatch):
    """As if a module had done `from .layers import relu_backward`: patching layers.relu_backward
    then changes nothing, and the table must say so rather than report a pass."""
    from handbackprop.gates.planted_bugs import Bug, _patch
    from handbackprop.nn import layers

    ghost = Bug("ghost", "patches a name nothing calls",
                _patch(layers, "relu_backward_unused", lambda dout, cache: dout))
    monkeypatch.setattr(layers, "relu_backward_unused", layers.relu_backward, raising=False)
    rows = run_catalogue(*images, {"gradcheck": SETTINGS["gradcheck"]}, bugs=[ghost], log=lambda s: None)
    assert rows[1]["planted"] is False and rows[1]["planted_calls"] == 0
    assert "not planted" in rows[1]["note"]

"""The gates pass correct code, and the planted-bug catalogue shows which gate catches which bug."""
import numpy as np
import pytest

from handbackprop.gates.planted_bugs import BATCHNORM_BUGS, CATALOGUE, run_catalogue
from handbackprop.gates.runner import run_gate

THRESH = {"max_rel": 1e-7, "norm_rel": 1e-10, "cost_rel": 1e-12, "fd_norm_rel": 1e-6}
SETTINGS = {
    "gradcheck": {"n_images": 8, "lam": 0.05, "seed": 7, "fd_coords": 5, "thresholds": THRESH,
                  "variants": {"linear": {"hidden": []}, "two_layer": {"hidden": [30]},
                               "two_layer_dropout": {"hidden": [30], "dropout": 0.3}}},
    "overfit": {"n_images": 100, "steps": 200, "eta_max": 0.1, "init_tolerance": 0.5,
                "loss_bound": 0.01, "seed": 7, "variants": {"two_layer": {"hidden": [50]}}},
    "trajectory": {"n_images": 100, "steps": 20, "batch_size": 30, "n_s": 5, "eta_min": 1e-5,
                   "eta_max": 0.1, "lam": 0.01, "seed": 7, "tolerance": 1e-10,
                   "variants": {"two_layer": {"hidden": [30]}}},
}

# bug -> (gates that must catch it, gates that cannot). Gates outside both sets may or may not,
# depending on data and budgets (a 100x-too-large step can still memorise 100 images).
TRAINING_LOOP_ONLY = {"gradcheck"}  # gradcheck never runs an update, a schedule or a batch order
EXPECTED = {
    "relu_derivative_wrong": ({"gradcheck", "trajectory"}, set()),
    "l2_grad_missing_factor_2": ({"gradcheck", "trajectory"}, {"overfit"}),  # overfit has lambda = 0
    "l2_grad_added_twice": ({"gradcheck", "trajectory"}, {"overfit"}),
    "bias_grad_not_summed": ({"gradcheck", "trajectory"}, set()),
    "dropout_mask_missing_in_backward": ({"gradcheck"}, {"overfit", "trajectory"}),  # no dropout there
    "loss_summed_not_averaged": ({"gradcheck", "trajectory"}, set()),
    "labels_out_of_step": ({"overfit", "trajectory"}, TRAINING_LOOP_ONLY),
    "learning_rate_not_applied": ({"trajectory"}, TRAINING_LOOP_ONLY),
    "schedule_off_by_one_step": ({"trajectory"}, TRAINING_LOOP_ONLY),
    "schedule_half_cycle_phase": ({"trajectory"}, TRAINING_LOOP_ONLY),
    "init_scale_100x": ({"overfit"}, {"gradcheck", "trajectory"}),  # both draw or share their start
    "dropout_not_inverted": (set(), {"gradcheck", "overfit", "trajectory"}),
}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 3072))
    y = rng.integers(0, 10, 100)
    X = centres[y] + 2 * rng.normal(size=(100, 3072))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


@pytest.fixture(scope="module")
def table(images):
    # The batch-norm bugs need batch-norm variants: tests/test_bug_table_bn.py runs them.
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


def test_every_bug_but_the_documented_one_is_caught(table):
    uncaught = {b for b, row in table.items() if not row["caught_by"]}
    assert uncaught == {"(none: correct code)", "dropout_not_inverted"}


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

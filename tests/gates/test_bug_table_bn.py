"""The gates' batch-norm variants pass correct code at machine precision, and each planted
batch-norm bug is caught by the gate the table says (and not by one that cannot see it)."""
import numpy as np
import pytest

from handbackprop.gates.planted_bugs import BATCHNORM_BUGS, run_catalogue
from handbackprop.gates.runner import run_gate

THRESH = {"max_rel": 1e-7, "norm_rel": 1e-10, "cost_rel": 1e-12, "fd_norm_rel": 1e-6}
NINE = [50, 30, 20, 20, 10, 10, 10, 10]
GRADCHECK = {"n_images": 10, "lam": 0.05, "seed": 7, "fd_coords": 5, "thresholds": THRESH,
             "variants": {"bn3": {"hidden": [30, 20], "batch_norm": True},
                          "bn3_dropout": {"hidden": [30, 20], "batch_norm": True, "dropout": 0.3}}}
TRAJECTORY = {"n_images": 100, "steps": 20, "batch_size": 30, "n_s": 5, "eta_min": 1e-5,
              "eta_max": 0.1, "lam": 0.01, "seed": 7, "tolerance": 1e-10,
              "variants": {"bn3": {"hidden": [30, 20], "batch_norm": True}}}
SETTINGS = {"gradcheck": GRADCHECK, "trajectory": TRAJECTORY}

BACKPROP = ({"gradcheck", "trajectory"}, set())
STATE_ONLY = ({"trajectory"}, {"gradcheck"})  # gradcheck never touches running statistics
EXPECTED = {
    "bn_backward_missing_mean_path": BACKPROP,
    "bn_backward_missing_variance_path": BACKPROP,
    "bn_unbiased_variance_in_normalisation": BACKPROP,
    "bn_eps_outside_sqrt": BACKPROP,
    "bn_gamma_grad_not_summed": BACKPROP,
    "bn_running_momentum_swapped": STATE_ONLY,
    "bn_running_var_biased": STATE_ONLY,
    "bn_eval_uses_batch_statistics": STATE_ONLY,
}


@pytest.fixture(scope="module")
def images():
    """200 rows: the trajectory trains on the first 100 and evaluates the next 100."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 3072))
    y = rng.integers(0, 10, 200)
    X = centres[y] + 2 * rng.normal(size=(200, 3072))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


@pytest.fixture(scope="module")
def table(images):
    rows = run_catalogue(*images, SETTINGS, bugs=BATCHNORM_BUGS, log=lambda s: None)
    return {row["bug"]: row for row in rows}


def test_gradcheck_variants_pass_at_machine_precision(images):
    settings = {**GRADCHECK, "n_images": 20, "variants": {
        "three_layer_bn": {"hidden": [50, 50], "batch_norm": True},
        "nine_layer_bn": {"hidden": NINE, "batch_norm": True},
        "three_layer_bn_dropout": {"hidden": [50, 50], "batch_norm": True, "dropout": 0.3}}}
    ev = run_gate("gradcheck", *images, settings)
    assert ev["passed"], ev["failures"]
    for v in ev["variants"]:
        assert {"gamma1", "beta1", "W1"} <= set(v["params"])
        assert v["cost_rel"] < 1e-14
        for name, fig in v["params"].items():
            assert fig["norm_rel"] < 1e-12, (v["variant"], name)


def test_trajectory_variants_agree_with_batchnorm1d(images):
    settings = {**TRAJECTORY, "variants": {
        "bn3": {"hidden": [50, 50], "batch_norm": True},
        "bn3_nesterov": {"hidden": [50, 50], "batch_norm": True, "optimizer": "nesterov"}}}
    ev = run_gate("trajectory", *images, settings)
    assert ev["passed"], ev["failures"]
    for v in ev["variants"]:
        assert v["max_cost_rel"] < 1e-12
        assert set(v["weight_norm_rel"]) >= {"W1", "gamma1", "beta2", "b3"}
        assert set(v["state_norm_rel"]) == {"mean1", "var1", "mean2", "var2"}
        assert max(v["weight_norm_rel"].values()) < 1e-12
        assert max(v["state_norm_rel"].values()) < 1e-12
        ev = v["evaluation"]  # the schema of every variant: evaluation evidence under `evaluation`
        assert ev["torch_eval"]["prob_norm_rel"] < 1e-12 and ev["n_rows"] == 100
        assert min(v["weight_moved"].values()) > 1e-4  # every array did change: not a vacuous match


def test_overfit_three_layer_bn_memorises_100_images(images):
    settings = {"n_images": 100, "steps": 200, "eta_max": 0.5, "init_tolerance": 0.5,
                "loss_bound": 0.01, "seed": 7,
                "variants": {"three_layer_bn": {"hidden": [50, 50], "batch_norm": True}}}
    ev = run_gate("overfit", *images, settings, log=lambda s: None)
    assert ev["passed"], ev["failures"]
    assert ev["variants"][0]["final_accuracy"] == 1.0


def test_trajectory_without_held_out_rows_is_a_clear_failure(images):
    X, y = images
    ev = run_gate("trajectory", X[:100], y[:100], TRAJECTORY)
    assert not ev["passed"] and "held-out rows" in ev["failures"][0]


def test_catalogue_has_the_batch_norm_bugs():
    assert len(BATCHNORM_BUGS) >= 6
    assert set(EXPECTED) == {b.name for b in BATCHNORM_BUGS}


def test_correct_code_row_passes(table):
    assert table["(none: correct code)"]["caught_by"] == []


@pytest.mark.parametrize("bug", sorted(EXPECTED))
def test_each_batch_norm_bug_is_caught_by_the_gates_built_for_it(table, bug):
    must, cannot = EXPECTED[bug]
    caught = set(table[bug]["caught_by"])
    assert must <= caught, table[bug]
    assert not cannot & caught, table[bug]


def test_failure_messages_say_what_differs(table):
    assert "gamma1" in table["bn_gamma_grad_not_summed"]["gradcheck_message"]
    assert "running statistic" in table["bn_running_momentum_swapped"]["trajectory_message"]
    assert "running statistic var" in table["bn_running_var_biased"]["trajectory_message"]
    msg = table["bn_eval_uses_batch_statistics"]["trajectory_message"]
    assert "evaluation-mode probabilities" in msg and "held-out" in msg
    assert "cost" in table["bn_eps_outside_sqrt"]["gradcheck_message"]  # a 1e-5 effect, seen at 1e-12


def test_batch_norm_bugs_run_only_against_batch_norm_variants(images):
    """A gate with no batch-norm variant cannot execute a batch-norm bug: it is 'not run' for it,
    never reported as passed; the correct-code row still runs it."""
    settings = {"gradcheck": {**GRADCHECK, "variants": {"linear": {"hidden": []},
                                                        **GRADCHECK["variants"]}},
                "overfit": {"n_images": 10, "steps": 5, "eta_max": 0.1, "init_tolerance": 5.0,
                            "loss_bound": 10.0, "seed": 7, "variants": {"linear": {"hidden": []}}}}
    bug = next(b for b in BATCHNORM_BUGS if b.name == "bn_gamma_grad_not_summed")
    rows = run_catalogue(*images, settings, bugs=[bug], log=lambda s: None)
    assert rows[0]["overfit"] == "passed" and rows[0]["caught_by"] == []
    assert rows[1]["overfit"] == "not run" and "never runs" in rows[1]["overfit_message"]
    assert rows[1]["caught_by"] == ["gradcheck"]

"""The stacked gate (gates/stacked.py): correct code passes it at float64 rounding, the planted
stacked-path bug (a run's λ applied to another run) fails it, and the bugs planted in the layer
code the stack shares with the single run reach the stacked path (their replacements run during
stacked training and change its weights), so the single-run gates that catch them prove the
stacked path's use of that code too."""
import numpy as np
import pytest

from handbackprop.gates.planted_bugs import BATCHNORM_BUGS, CATALOGUE, STACKED_BUGS
from handbackprop.gates.stacked import stacked_gate
from handbackprop.nn import stack
from handbackprop.nn.network import Network
from handbackprop.nn.train import TrainConfig

# float64 variants only: a float32 stack rounds differently from a single run (other GEMM
# shapes), and under a planted bug that makes training unstable the difference grows past any
# float32 tolerance, a "catch" of rounding, not of the bug. test_float32_variant checks float32.
SETTINGS = {"lams": [0.0, 0.01, 0.1], "seed": 7, "steps": 20, "batch_size": 30, "n_s": 5,
            "eta_min": 1e-5, "eta_max": 0.1, "tolerance": 1e-12,
            "variants": {"linear": {"hidden": []},
                         "two_layer_dropout_aug": {"hidden": [12], "dropout": 0.3, "flip": True,
                                                   "max_shift": 2},
                         "three_layer_dropout": {"hidden": [12, 6], "dropout": 0.3},
                         "three_layer_bn_dropout": {"hidden": [12, 6], "dropout": 0.3,
                                                    "batch_norm": True}}}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, 3072))
    y = rng.integers(0, 10, 90)
    return centres[y] + 2 * rng.normal(size=(90, 3072)), y


def test_correct_code_passes_at_rounding_level(data):
    ev = stacked_gate(*data, SETTINGS)
    assert ev["passed"], ev["failures"]
    assert {v["variant"] for v in ev["variants"]} == set(SETTINGS["variants"])
    for v in ev["variants"]:
        assert len(v["cost_rel"]) == 3 and v["max_cost_rel"] <= 1e-13 and v["max_weight_rel"] <= 1e-13


def test_float32_variant(data):
    settings = {**SETTINGS, "float32_tolerance": 1e-5,
                "variants": {"two_layer_f32": {"hidden": [12], "dropout": 0.3, "dtype": "float32"}}}
    ev = stacked_gate(*data, settings)
    assert ev["passed"], ev["failures"]
    assert 0 < ev["variants"][0]["max_cost_rel"] <= 1e-5  # float32 rounding, not equality


def test_lambda_of_run_i_applied_to_run_j_is_caught(data):
    (bug,) = [b for b in STACKED_BUGS if b.name == "lam_of_run_i_applied_to_run_j"]
    with bug.plant() as counter:
        ev = stacked_gate(*data, SETTINGS)
    assert counter.calls > 0
    assert not ev["passed"]
    # every variant sees it, and it names the runs whose lambda was swapped
    assert all(not v["passed"] for v in ev["variants"])
    assert any("run 0 (lam=0)" in f for f in ev["failures"])
    assert stacked_gate(*data, SETTINGS)["passed"]  # restored on exit


def test_the_gate_needs_distinct_lambdas(data):
    with pytest.raises(ValueError, match="distinct"):
        stacked_gate(*data, {**SETTINGS, "lams": [0.01, 0.01]})


def test_stacked_bugs_stay_out_of_the_catalogue():
    """The catalogue's gates train single runs only: there the stacked bug would never run."""
    assert not set(map(id, STACKED_BUGS)) & set(map(id, CATALOGUE))
    assert not {b.name for b in STACKED_BUGS} & {b.name for b in CATALOGUE}


def train_stacked(X, y, steps=10, batch_norm=False):
    """Three runs trained as a stack only (no single run): what a planted bug must reach."""
    cfgs = [TrainConfig(lam=lam, batch_size=30, eta_max=0.1, n_s=5, seed=7, max_steps=steps,
                        divergence_factor=1e6, train_eval_size=90, points_per_cycle=1, flip=True,
                        max_shift=2) for lam in SETTINGS["lams"]]
    nets = [Network([3072, 12, 10], dropout=0.3, dtype=np.float64, batch_norm=batch_norm)
            .init_params(np.random.default_rng(7)) for _ in cfgs]
    stack.train_stack(nets, X, y, X[:30], y[:30], cfgs, log=lambda s: None)
    return nets


# Catalogue bugs in the code the single run and the stack share (layers, optimiser, schedule,
# batches, dropout masks, streams). Those the stack runs identically are invisible to the stacked
# gate (both sides wrong alike) and caught by the single-run gates; bias_grad_not_summed is seen by
# the stacked gate too, as the stack's deeper layers do not call layers.affine_backward.
SHARED = ["relu_derivative_wrong", "l2_grad_missing_factor_2", "l2_grad_added_twice",
          "bias_grad_not_summed", "dropout_mask_missing_in_backward", "loss_summed_not_averaged",
          "labels_out_of_step", "learning_rate_not_applied", "weight_step_ignores_eta",
          "schedule_off_by_one_step", "schedule_half_cycle_phase", "dropout_not_inverted",
          "augmentation_shares_dropout_stream"]
CAUGHT_BY_STACKED_GATE = {"bias_grad_not_summed"}


# The batch-norm bugs that act during training (the evaluation-mode one acts in the records only).
SHARED_BN = [b.name for b in BATCHNORM_BUGS if b.name != "bn_eval_uses_batch_statistics"]


@pytest.fixture(scope="module")
def correct_stack(data):
    return {False: train_stacked(*data), True: train_stacked(*data, batch_norm=True)}


@pytest.mark.parametrize("name", SHARED + SHARED_BN)
def test_shared_code_bugs_reach_the_stacked_path(data, correct_stack, name):
    (bug,) = [b for b in CATALOGUE if b.name == name]
    bn = bug in BATCHNORM_BUGS
    with bug.plant() as counter:
        nets = train_stacked(*data, batch_norm=bn)
        calls = counter.calls
        gate_passed = (stacked_gate(*data, SETTINGS)["passed"]
                       if name in CAUGHT_BY_STACKED_GATE else None)
    assert calls > 0, f"{name} never ran in stacked training"
    moved = max(np.abs(n.arrays()[k] - v).max() / np.abs(v).max()
                for n, c in zip(nets, correct_stack[bn]) for k, v in c.arrays().items())
    assert moved > 1e-6, f"{name} ran but left the stacked weights unchanged"
    if name in CAUGHT_BY_STACKED_GATE:
        assert gate_passed is False


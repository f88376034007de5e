"""Planted bugs on the path from a trained network to a reported number that no gate can see
(the gates verify the model code; these live in the study code), each caught by the check built
for it: the audit catches a metric scored on the wrong rows, the selection tests catch a wrong
choice of λ. Like gates/planted_bugs.py, each replacement must actually run."""
from pathlib import Path
from unittest import mock

import pytest
from threadpoolctl import threadpool_limits

import test_plan
from conftest import SPEC, make_split
from handbackprop.audit import runs as audit
from handbackprop.runfiles import write_run
from handbackprop.study import grids, kinds, runs


def _train_one(R, rel):
    with threadpool_limits(limits=1):
        net, result, metrics = runs.run(R / "data" / "search", SPEC, 1e-3, 1, 1, "float32", False,
                                        log=lambda s: None)
    metrics.update(threads=1, code_hash="h", rule="test",
                   **kinds.recorded(Path(rel).parts[2], R / "data" / "search", "m"))
    d = R / rel
    write_run({"history": d / "history.csv", "weights": d / "weights.npz",
               "metrics": d / "metrics.json"}, net, result, metrics)
    return d / "metrics.json"


def test_validation_metrics_scored_on_training_rows_are_caught_by_the_audit(tmp_path):
    """A student's slip: the validation arrays passed to train() are the training ones, so every
    val_* figure (and the choice of λ made from them) comes from rows the model trained on."""
    R = tmp_path / "results"
    make_split(R / "data" / "search", 60, 20, 30, seed=0)
    calls = []
    real_train = runs.train

    def train_scoring_val_on_train_rows(net, X, y, X_val, y_val, cfg, log=print):
        calls.append(1)
        return real_train(net, X, y, X, y, cfg, log=log)

    good = _train_one(R, "search/mlp/coarse/lam_1.00e-03/seed1")
    assert audit.audit(R, [good], gate_paths=[], log=lambda s: None)["passed"]
    with mock.patch.object(runs, "train", train_scoring_val_on_train_rows):
        bad = _train_one(R, "search/mlp/coarse/lam_1.00e-03/seed2")
    assert calls, "the planted replacement never ran"
    result = audit.audit(R, [good, bad], gate_paths=[], log=lambda s: None)
    assert not result["passed"]
    (failure,) = result["metrics"]["failures"]
    assert failure["run"].endswith("seed2") and any(d["field"].startswith("val_")
                                                     for d in failure["differences"])


SELECTION_TESTS = [test_plan.test_best_row_is_the_highest_validation_accuracy,
                   test_plan.test_ties_go_to_the_lower_validation_cost]


@pytest.mark.parametrize("bug, replacement", [
    ("best λ by the lowest accuracy", lambda rows: min(
        (r for r in rows if not r.get("diverged")), key=lambda r: r["val_accuracy"])),
    ("ties to the higher validation cost", lambda rows: max(
        (r for r in rows if not r.get("diverged")), key=lambda r: (r["val_accuracy"], r["val_cost"]))),
])
def test_a_wrong_choice_of_lambda_is_caught_by_the_selection_tests(bug, replacement):
    calls = []

    def counted(rows):
        calls.append(1)
        return replacement(rows)

    caught = []
    with mock.patch.object(grids, "best_row", counted):
        for test in SELECTION_TESTS:
            try:
                test()
            except AssertionError:
                caught.append(test.__name__)
    assert calls, "the planted replacement never ran"
    assert caught, f"{bug}: no selection test failed"

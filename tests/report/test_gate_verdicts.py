"""The report shows the verdicts the gates recorded; it never judges a figure again."""
import pytest

from handbackprop.report.collect import collect_gradcheck, collect_overfit

LIMITS = {"max_rel": 1e-7, "norm_rel": 1e-10, "cost_rel": 1e-12, "fd_norm_rel": 1e-6, "exact_ratio": 2.0}


def gradcheck_json(passed: bool, cost_passed: bool) -> dict:
    """One variant whose figures are all far under the limits, with the given recorded verdicts."""
    fig = {"shape": [4, 3], "max_rel": 1e-16, "norm_rel": 1e-16, "fd_norm_rel": 1e-9, "fd_coords": 3,
           "exact_ours_err": 1e-17, "exact_torch_err": 1e-17, "exact_ratio": 1.0,
           "exact_ratio_passed": passed, "limits": LIMITS, "passed": passed}
    return {"thresholds": LIMITS, "longdouble": {"extended": True},
            "variants": [{"variant": "v", "params": {"W1": fig}, "cost": 2.3, "torch_cost": 2.3,
                          "cost_rel": 0.0, "cost_limit": 1e-12, "cost_passed": cost_passed}]}


@pytest.mark.parametrize("passed", [True, False])
def test_gradcheck_rows_show_the_recorded_verdict(passed):
    gc = collect_gradcheck(gradcheck_json(passed, cost_passed=passed))
    assert [r["ok"] for r in gc["rows"]] == [passed]
    assert [c["ok"] for c in gc["costs"]] == [passed]
    assert gc["exact"]["met"] is passed


def overfit_json(init_passed, final_passed, scale_passed) -> dict:
    return {"variants": [{
        "variant": "lin", "initial_cost": 2.3026, "ln10": 2.302585, "init_tolerance": 0.1,
        "init_passed": init_passed, "final_loss": 1e-3, "loss_bound": 0.1, "final_passed": final_passed,
        "final_accuracy": 1.0, "passed": init_passed and final_passed and scale_passed,
        "init_scale": {"W1": {"documented_std": 0.01, "empirical_std": 0.01, "ratio": 1.0,
                              "allowed_factor": 1.5, "n": 12, "passed": scale_passed},
                       "b1": {"documented_std": 0.0, "max_abs": 0.0, "n": 3, "passed": scale_passed}}}]}


def test_overfit_and_init_scale_rows_show_the_recorded_verdicts():
    # every figure inside its limit, every verdict recorded as failed: the report says failed
    variants, init = collect_overfit(overfit_json(False, False, False))
    assert not variants[0]["init_ok"] and not variants[0]["final_ok"]
    assert [r["ok"] for r in init] == [False, False]
    variants, init = collect_overfit(overfit_json(True, True, True))
    assert variants[0]["init_ok"] and variants[0]["final_ok"] and all(r["ok"] for r in init)


def test_a_gate_json_without_verdicts_names_the_row():
    gc = gradcheck_json(True, True)
    del gc["variants"][0]["params"]["W1"]["passed"]
    with pytest.raises(KeyError, match="gradcheck v W1.*rerun the gate"):
        collect_gradcheck(gc)

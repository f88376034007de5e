"""Each gate records its own verdict per row, beside the figure and the limit it was judged by;
the verdict flips when the figure crosses the limit (the report shows it and judges nothing)."""
import numpy as np
import pytest

from handbackprop.gates.gradcheck import GradcheckThresholds, check_variant
from handbackprop.gates.initialisation import init_scale_figures
from handbackprop.gates.overfit import overfit_variant
from handbackprop.gates.trajectory import trajectory_variant
from handbackprop.nn.network import Network


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(10, 40))
    y = rng.integers(0, 10, 30)
    X = centres[y] + rng.normal(size=(30, 40))  # (30, 40): small enough for many gate calls
    return X, y


def _gradcheck(X, y, **limits):
    net = Network([X.shape[1], 6, 10], dtype=np.float64)
    net.init_params(np.random.default_rng(1))
    return check_variant("v", net, X, y, 1e-3, None, np.random.default_rng(2), fd_coords=3,
                         thresholds=GradcheckThresholds(**limits), exact=False)


def test_gradcheck_row_verdict_flips_at_its_limit(data):
    loose = _gradcheck(*data, max_rel=1.0, norm_rel=1.0, fd_norm_rel=1.0, cost_rel=1.0)
    row = loose["params"]["W1"]
    assert row["passed"] and row["limits"]["norm_rel"] == 1.0
    assert loose["cost_passed"] and loose["cost_limit"] == 1.0
    # A limit just under this row's measured figure fails it, and only the rows over it.
    limit = row["norm_rel"] * 0.999
    tight = _gradcheck(*data, max_rel=1.0, norm_rel=limit, fd_norm_rel=1.0, cost_rel=1.0)
    for pname, fig in tight["params"].items():
        assert fig["passed"] == (fig["norm_rel"] <= limit), pname
        assert fig["limits"]["norm_rel"] == limit
    assert not tight["params"]["W1"]["passed"]
    cost = _gradcheck(*data, cost_rel=loose["cost_rel"] * 0.5 if loose["cost_rel"] else -1.0)
    assert not cost["cost_passed"] and not cost["passed"]


def test_overfit_row_verdicts_flip_at_their_limits(data):
    X, y = data
    kw = dict(seed=0, steps=30, eta_max=0.05, dtype="float64", log=lambda s: None)
    v = overfit_variant("lin", {"hidden": []}, X, y, init_tolerance=10.0, loss_bound=1e3, **kw)
    assert v["init_passed"] and v["passed"] == (v["final_passed"] and v["init_passed"])
    gap = abs(v["initial_cost"] - v["ln10"])
    w = overfit_variant("lin", {"hidden": []}, X, y, init_tolerance=gap * 0.5,
                        loss_bound=v["final_loss"] * 0.999, **kw)
    assert not w["init_passed"] and not w["final_passed"] and not w["passed"]


def test_init_scale_row_verdict_flips_at_its_factor():
    net = Network([200, 50, 10], dtype=np.float64)
    net.init_params(np.random.default_rng(0))
    net.params["W1"] *= 2.0  # twice the documented std
    net.params["b1"][0] = 1e-3  # documented to start at exactly 0
    figs, failures = init_scale_figures("m", net, tolerance=1.5)
    assert not figs["W1"]["passed"] and not figs["b1"]["passed"] and figs["W2"]["passed"]
    assert len(failures) == 2
    figs, _ = init_scale_figures("m", net, tolerance=2.5)
    assert figs["W1"]["passed"] and figs["W1"]["allowed_factor"] == pytest.approx(2.5)


def test_trajectory_row_verdict_flips_at_its_tolerance(data):
    X, y = data
    kw = dict(lam=1e-3, seed=0, steps=6, batch_size=10, n_s=3, eta_min=1e-3, eta_max=0.05)
    spec = {"hidden": [6], "dtype": "float32"}  # float32: figures well above zero
    loose = trajectory_variant("t", spec, X, y, tolerance=1.0, float32_tolerance=1.0, **kw)
    worst = max(loose["max_cost_rel"], *loose["weight_norm_rel"].values())
    assert loose["passed"] and loose["tolerance"] == 1.0 and worst > 0
    tight = trajectory_variant("t", spec, X, y, tolerance=1.0, float32_tolerance=worst * 0.999, **kw)
    assert not tight["passed"] and tight["tolerance"] == worst * 0.999

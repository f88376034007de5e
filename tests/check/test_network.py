"""The three gates generalised to a user's network, both directions."""
from pathlib import Path

import numpy as np

from handbackprop.check.contract import load_module
from handbackprop.check.network import check_network

MLP = load_module(Path(__file__).resolve().parents[2] / "examples" / "mlp.py")


def test_right_network_passes_every_check():
    ev = check_network(MLP.TwoLayerNet)
    assert ev["passed"], ev["failures"]
    assert ev["checks"]["trajectory"]["worst"] < 1e-12
    assert ev["checks"]["overfit"]["final"] < 0.05


def test_a_step_that_skips_biases_fails_only_the_trajectory():
    ev = check_network(MLP.TwoLayerNetStepSkipsBiases)
    failed = {k for k, c in ev["checks"].items() if not c["passed"]}
    assert failed == {"trajectory"}
    assert "b1" in ev["checks"]["trajectory"]["summary"] or "b2" in ev["checks"]["trajectory"]["summary"]


class _BiasNotSummed(MLP.TwoLayerNet):
    @staticmethod
    def loss_and_grads(params, X, y):
        loss, g = MLP.mlp_loss_and_grads(params, X, y)
        return loss, {**g, "b2": g["b2"] / X.shape[0]}  # averaged twice


class _InitTooLarge(MLP.TwoLayerNet):
    def init_params(self, rng):
        p = super().init_params(rng)
        return {**p, "W1": p["W1"] * 50}


def test_wrong_gradient_and_wrong_scale_are_caught():
    ev = check_network(_BiasNotSummed, overfit_steps=5)
    assert not ev["checks"]["gradient"]["passed"] and "db2 is wrong" in ev["checks"]["gradient"]["summary"]
    ev = check_network(_InitTooLarge, overfit_steps=5)
    assert not ev["checks"]["initial scale"]["passed"]
    assert ev["checks"]["initial scale"]["ratios"]["W1"] > 40
    assert np.isfinite(ev["checks"]["initial loss"]["loss"])

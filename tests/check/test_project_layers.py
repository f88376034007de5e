"""One checker for everything: the study's own layers (handbackprop.nn) through the user-facing
checker. Their forwards call NumPy directly (einsum, in-place ops), so each gets a torch_forward
— torch's own layer — as the contract allows."""
import numpy as np
import torch
import torch.nn.functional as F

from handbackprop.check import check_layer
from handbackprop.nn import batchnorm, layers


class StudyBatchNorm:
    @staticmethod
    def forward(s, p):
        out, cache, _ = batchnorm.batchnorm_forward(s.copy(), p["gamma"], p["beta"])
        return out, cache

    @staticmethod
    def backward(dout, cache):
        ds, dgamma, dbeta = batchnorm.batchnorm_backward(dout, cache)
        return ds, {"gamma": dgamma, "beta": dbeta}

    @staticmethod
    def torch_forward(s, p):
        return F.batch_norm(s, None, None, p["gamma"], p["beta"], training=True, eps=batchnorm.EPS)

    @staticmethod
    def example(rng):
        return rng.normal(1, 2, (10, 7)), {"gamma": rng.normal(1, .2, 7), "beta": rng.normal(0, .1, 7)}


class StudyAffineRelu:
    @staticmethod
    def forward(x, p):
        a, c1 = layers.affine_forward(x, p["W"], p["b"])
        out, c2 = layers.relu_forward(a)
        return out, (c1, c2)

    @staticmethod
    def backward(dout, cache):
        c1, c2 = cache
        dx, dW, db = layers.affine_backward(layers.relu_backward(dout, c2), c1)
        return dx, {"W": dW, "b": db}

    @staticmethod
    def torch_forward(x, p):
        return torch.relu(x @ p["W"] + p["b"])

    @staticmethod
    def example(rng):
        return rng.normal(size=(6, 5)), {"W": rng.normal(0, .5, (5, 4)), "b": rng.normal(0, .1, 4)}


def test_the_studys_layers_pass_the_users_checker():
    for layer in (StudyBatchNorm, StudyAffineRelu):
        ev = check_layer(layer)
        assert ev["passed"], ev["failures"]
        assert max(f["norm_rel"] for f in ev["arrays"].values()) < 1e-13
        assert ev["forward_norm_rel"] < 1e-14  # torch's layer computes the same function


def test_a_planted_study_bug_is_caught_by_the_users_checker():
    from handbackprop.gates.planted_bugs import CATALOGUE
    bug = {b.name: b for b in CATALOGUE}["relu_derivative_wrong"]
    with bug.plant():
        ev = check_layer(StudyAffineRelu)
    assert ev["verdict"] == "backward wrong" and any(f.startswith("dx") for f in ev["failures"])

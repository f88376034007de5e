"""Batch normalisation (training mode), as a student writes it — right, wrong, and against a
wrong reference.

    handbackprop check examples/batchnorm.py::BatchNorm                      # passes
    handbackprop check examples/batchnorm.py::BatchNormDroppedVariancePath   # fails, names dx
    handbackprop check examples/batchnorm.py::BatchNormEvalModeReference     # the reference is wrong

The forward is written against the array namespace of its input (array-api-compat), so the
checker runs this very code on torch tensors and autograd differentiates it.
"""
import numpy as np
from array_api_compat import array_namespace

EPS = 1e-5


def bn_forward(x, params, eps=EPS):
    """x (N, D), gamma (D,), beta (D,) -> out (N, D); batch statistics, biased variance."""
    xp = array_namespace(x)
    mu = xp.mean(x, axis=0)  # (D,)
    xc = x - mu  # (N, D)
    var = xp.mean(xc * xc, axis=0)  # (D,) biased, as torch's training mode
    inv_std = 1.0 / xp.sqrt(var + eps)  # (D,)
    x_hat = xc * inv_std  # (N, D)
    out = params["gamma"] * x_hat + params["beta"]  # (N, D)
    return out, (x_hat, params["gamma"], inv_std)


def bn_backward(dout, cache):
    """dout (N, D) -> dx (N, D), {gamma, beta} (D,). Every row moves the batch mean and
    variance, so dx collects three paths: through x_hat directly, through the mean, and
    through the variance."""
    x_hat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)  # (D,)
    dgamma = (dout * x_hat).sum(axis=0)  # (D,)
    g = dout * gamma  # (N, D): the gradient reaching x_hat
    dx = inv_std / n * (n * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0))  # (N, D)
    return dx, {"gamma": dgamma, "beta": dbeta}


def bn_example(rng):
    x = rng.normal(2.0, 3.0, size=(16, 6))  # (N, D): off-centre and scaled, as real activations
    return x, {"gamma": rng.normal(1.0, 0.3, 6), "beta": rng.normal(0.0, 0.3, 6)}


class BatchNorm:
    """The correct layer."""
    forward = staticmethod(bn_forward)
    backward = staticmethod(bn_backward)
    example = staticmethod(bn_example)


class BatchNormDroppedVariancePath:
    """A real student bug: dx forgets that x moves the batch variance (the x_hat * sum(g x_hat)
    term). With an upstream gradient of ones it is not caught: the true dx is then exactly 0,
    and so is this one (g.sum - n g = 0 when dout = 1)."""
    forward = staticmethod(bn_forward)
    example = staticmethod(bn_example)

    @staticmethod
    def backward(dout, cache):
        x_hat, gamma, inv_std = cache
        n = dout.shape[0]
        dbeta = dout.sum(axis=0)  # (D,)
        dgamma = (dout * x_hat).sum(axis=0)  # (D,)
        g = dout * gamma  # (N, D)
        dx = inv_std / n * (n * g - g.sum(axis=0))  # (N, D) BUG: the variance path is missing
        return dx, {"gamma": dgamma, "beta": dbeta}


def bn_eval_mode_frozen(x, params, eps=EPS):
    """The wrong reference of the published report (oStglnd/dd2424, assignment 3): the cost in
    evaluation mode, normalising by statistics held constant — here the batch's own mean and
    variance, frozen at this point. Its *values* equal the training-mode forward's at the
    point, so nothing looks wrong; its *derivative* lacks the mean and variance paths, so it
    differs from the training-mode gradient by ~1e-2. Differentiating it by finite
    differences (as the report did) and by autograd gives the same wrong reference."""
    import torch

    with torch.no_grad():  # frozen: the "running" statistics do not move with x
        mu = x.mean(dim=0)
        var = ((x - mu) ** 2).mean(dim=0)
    return params["gamma"] * (x - mu) / torch.sqrt(var + eps) + params["beta"]


class BatchNormEvalModeReference:
    """The correct layer checked against the wrong reference. The checker still runs the
    user's own training-mode forward for finite differences, which side with the backward:
    its verdict is that the reference, not the backward, is at fault. Without torch_forward
    (class BatchNorm) the checker differentiates the training-mode forward itself and
    cannot make the report's mistake."""
    forward = staticmethod(bn_forward)
    backward = staticmethod(bn_backward)
    example = staticmethod(bn_example)
    torch_forward = staticmethod(bn_eval_mode_frozen)

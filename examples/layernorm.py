"""Layer normalisation over the features of each row (as in transformers).

    handbackprop check examples/layernorm.py::LayerNorm

Like batch norm with the roles of the axes swapped: the statistics are per row (axis 1), so
every feature of a row moves that row's mean and variance; γ and β are per feature, and
their gradients sum over rows (axis 0). Mixing the two axes up is the typical bug, and the
mutation proof checks that the check catches each such swap.
"""
import numpy as np
from array_api_compat import array_namespace

EPS = 1e-5


def ln_forward(x, params, eps=EPS):
    """x (N, D), gamma (D,), beta (D,) -> out (N, D)."""
    xp = array_namespace(x)
    mu = xp.mean(x, axis=1, keepdims=True)  # (N, 1)
    xc = x - mu  # (N, D)
    var = xp.mean(xc * xc, axis=1, keepdims=True)  # (N, 1)
    inv_std = 1.0 / xp.sqrt(var + eps)  # (N, 1)
    x_hat = xc * inv_std  # (N, D)
    return params["gamma"] * x_hat + params["beta"], (x_hat, params["gamma"], inv_std)


def ln_backward(dout, cache):
    """dout (N, D) -> dx (N, D), {gamma, beta} (D,)."""
    x_hat, gamma, inv_std = cache
    d = dout.shape[1]
    g = dout * gamma  # (N, D): the gradient reaching x_hat
    dx = inv_std / d * (d * g - g.sum(axis=1, keepdims=True)
                        - x_hat * (g * x_hat).sum(axis=1, keepdims=True))  # (N, D)
    return dx, {"gamma": (dout * x_hat).sum(axis=0), "beta": dout.sum(axis=0)}


class LayerNorm:
    forward = staticmethod(ln_forward)
    backward = staticmethod(ln_backward)

    @staticmethod
    def example(rng):
        x = rng.normal(1.0, 2.0, size=(5, 8))  # (N, D); N != D so an axis swap changes shapes
        return x, {"gamma": rng.normal(1.0, 0.3, 8), "beta": rng.normal(0.0, 0.3, 8)}


class LayerNormForwardCallsNumpy:
    """Bad input: this forward calls np.mean directly, so it cannot run on torch tensors; the
    checker names the line instead of failing somewhere inside torch."""
    backward = staticmethod(ln_backward)
    example = staticmethod(LayerNorm.example)

    @staticmethod
    def forward(x, params, eps=EPS):
        mu = np.mean(x, axis=1, keepdims=True)  # (N, 1) not array-API: NumPy only
        xc = x - mu
        inv_std = 1.0 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
        x_hat = xc * inv_std
        return params["gamma"] * x_hat + params["beta"], (x_hat, params["gamma"], inv_std)

"""A two-layer ReLU network with softmax cross-entropy and SGD: the gates for a whole network.

    handbackprop check examples/mlp.py::TwoLayerNet           # passes all four checks
    handbackprop check examples/mlp.py::TwoLayerNetStepSkipsBiases   # gradient right, loop wrong

`loss` is written against the array namespace, so the torch replay differentiates it; the
replay steps with torch.optim.SGD, not with the user's `step`, so a wrong step shows.
"""
import numpy as np
from array_api_compat import array_namespace


def mlp_loss(params, X, y):
    """X (N, D), y (N,) ints -> mean cross-entropy of softmax(relu(X W1 + b1) W2 + b2)."""
    xp = array_namespace(X)
    h = xp.maximum(X @ params["W1"] + params["b1"], 0.0)  # (N, H)
    s = h @ params["W2"] + params["b2"]  # (N, K)
    s = s - xp.max(s, axis=1, keepdims=True)  # stable: log-sum-exp of scores <= 0
    logp = s - xp.log(xp.sum(xp.exp(s), axis=1, keepdims=True))  # (N, K)
    n = X.shape[0]
    return -xp.sum(logp[xp.arange(n), y]) / n


def mlp_loss_and_grads(params, X, y):
    n = X.shape[0]
    z = X @ params["W1"] + params["b1"]  # (N, H)
    h = np.maximum(z, 0.0)
    s = h @ params["W2"] + params["b2"]  # (N, K)
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)  # (N, K) softmax
    loss = -np.log(p[np.arange(n), y]).mean()
    ds = p.copy()
    ds[np.arange(n), y] -= 1.0
    ds /= n  # (N, K): d loss / d scores
    dh = ds @ params["W2"].T  # (N, H)
    dz = dh * (z > 0)  # (N, H)
    return loss, {"W1": X.T @ dz, "b1": dz.sum(axis=0), "W2": h.T @ ds, "b2": ds.sum(axis=0)}


class TwoLayerNet:
    n_classes = 4
    lr = 0.5
    # N(0, 1/fan_in); the last layer 10x smaller, so the initial scores are near 0 and the
    # initial loss near ln K
    init_std = {"W1": 1 / np.sqrt(12), "W2": 0.1 / np.sqrt(16)}

    def init_params(self, rng):
        return {"W1": rng.normal(0, 1 / np.sqrt(12), (12, 16)), "b1": np.zeros(16),
                "W2": rng.normal(0, 0.1 / np.sqrt(16), (16, 4)), "b2": np.zeros(4)}

    def data(self, rng):
        return rng.normal(size=(20, 12)), rng.integers(0, 4, 20)  # 20 rows to memorise

    loss = staticmethod(mlp_loss)
    loss_and_grads = staticmethod(mlp_loss_and_grads)

    @staticmethod
    def step(params, grads, lr):
        for k in params:
            params[k] -= lr * grads[k]


class TwoLayerNetStepSkipsBiases(TwoLayerNet):
    """The gradient is right; the update loops over the weights only, so biases never move.
    The gradient check cannot see it; the trajectory against torch.optim.SGD does."""
    @staticmethod
    def step(params, grads, lr):
        for k in ("W1", "W2"):  # BUG: b1, b2 are never updated
            params[k] -= lr * grads[k]

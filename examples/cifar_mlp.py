"""A student's CIFAR-10 network, written outside the package, that the study gates and trains.

    handbackprop check examples/cifar_mlp.py::CifarMLP          # the four network checks
    handbackprop check examples/cifar_mlp.py::CifarMLPReluBackwardBug   # fails: dW1, db1 wrong

In the workflow (config/quick.yaml): a model entry `module: examples/cifar_mlp.py::CifarMLP`
is gated by the rule gate_user_model on the study's own images, then searched and trained by
the study's loop like the built-in models. Besides the network contract
(handbackprop.check.network) a model the DAG trains declares `input_dim` (the data's width,
3072 for CIFAR-10), `decayed` (the parameters λ decays: the study adds λ‖W‖² to the loss and
2λW to their gradients) and `scores(params, X)` (class scores for prediction).
"""
import numpy as np
from array_api_compat import array_namespace

D, H, K = 3072, 60, 10  # CIFAR-10 pixels, hidden units, classes


def scores(params, X):
    """X (N, D) -> class scores (N, K) of relu(X W1 + b1) W2 + b2 (any array namespace)."""
    xp = array_namespace(X)
    h = xp.maximum(X @ params["W1"] + params["b1"], 0.0)  # (N, H)
    return h @ params["W2"] + params["b2"]  # (N, K)


def loss(params, X, y):
    """Mean softmax cross-entropy; written against the array namespace so torch can replay it."""
    xp = array_namespace(X)
    s = scores(params, X)  # (N, K)
    s = s - xp.max(s, axis=1, keepdims=True)  # stable: the largest score is 0
    logp = s - xp.log(xp.sum(xp.exp(s), axis=1, keepdims=True))  # (N, K)
    return -xp.sum(logp[xp.arange(X.shape[0]), y]) / X.shape[0]


def loss_and_grads(params, X, y):
    """The student's hand-derived backward (NumPy only)."""
    n = X.shape[0]
    z = X @ params["W1"] + params["b1"]  # (N, H)
    h = np.maximum(z, 0)
    s = h @ params["W2"] + params["b2"]  # (N, K)
    s = s - s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)  # (N, K) softmax
    value = -np.log(p[np.arange(n), y]).mean()
    ds = p
    ds[np.arange(n), y] -= 1
    ds /= n  # (N, K): d loss / d scores
    dz = (ds @ params["W2"].T) * (z > 0)  # (N, H): through the ReLU
    return value, {"W1": X.T @ dz, "b1": dz.sum(axis=0), "W2": h.T @ ds, "b2": ds.sum(axis=0)}


class CifarMLP:
    n_classes = K
    input_dim = D
    decayed = ("W1", "W2")  # weights only: the biases are not decayed, as in the study
    lr = 0.05  # the gates' overfit and trajectory step (the study trains with its own schedule)
    # N(0, 1/fan_in), the study's own scheme: scores of std ~0.7 at the start, so the initial
    # loss is within ~0.3 of ln 10
    init_std = {"W1": 1 / np.sqrt(D), "W2": 1 / np.sqrt(H)}

    def init_params(self, rng):
        return {"W1": rng.normal(0, 1 / np.sqrt(D), (D, H)), "b1": np.zeros(H),
                "W2": rng.normal(0, 1 / np.sqrt(H), (H, K)), "b2": np.zeros(K)}

    def data(self, rng):
        """20 random rows to memorise (the workflow's gate replaces them with real images)."""
        return rng.normal(size=(20, D)), rng.integers(0, K, 20)

    scores = staticmethod(scores)
    loss = staticmethod(loss)
    loss_and_grads = staticmethod(loss_and_grads)

    @staticmethod
    def step(params, grads, lr):
        for k in params:
            params[k] -= lr * grads[k]


class CifarMLPReluBackwardBug(CifarMLP):
    """The ReLU's backward gates on the post-activation h >= 0, which is true everywhere: the
    gradient flows through dead units, so dW1 and db1 are wrong and the gate fails."""

    @staticmethod
    def loss_and_grads(params, X, y):
        value, grads = loss_and_grads(params, X, y)
        n = X.shape[0]
        z = X @ params["W1"] + params["b1"]  # (N, H)
        s = np.maximum(z, 0) @ params["W2"] + params["b2"]  # (N, K)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(n), y] -= 1
        dz = (p / n @ params["W2"].T) * (np.maximum(z, 0) >= 0)  # BUG: should be z > 0
        return value, {**grads, "W1": X.T @ dz, "b1": dz.sum(axis=0)}

"""A fully connected ReLU network of any depth; no hidden layer = softmax linear classifier.

Parameters are named ``W1, b1, W2, b2, ...`` (layer index from 1), and
gradients use exactly the same keys in a separate dict, everywhere in the
project: ``grads["W1"]`` is d cost / d ``params["W1"]``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import layers


@dataclass
class Network:
    """sizes = [D, H1, ..., K]; dropout p applies to every hidden layer's output."""

    sizes: list[int]
    dropout: float = 0.0
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    params: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.dtype = np.dtype(self.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if len(self.sizes) < 2:
            raise ValueError(f"sizes needs input and output widths, got {self.sizes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def hidden(self) -> list[int]:
        return list(self.sizes[1:-1])

    def weight_names(self) -> list[str]:
        return [f"W{i}" for i in range(1, self.n_layers + 1)]

    # ------------------------------------------------------------------ init
    def init_params(self, rng: np.random.Generator) -> "Network":
        """The study's initialisation.

        Linear classifier: W, b ~ N(0, 0.01^2). Deeper nets: W_l ~ N(0, 1/fan_in)
        (Xavier-like, keeps activations O(1) through ReLU layers), biases 0.
        """
        self.params = {}
        for i, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            if self.n_layers == 1:
                W = rng.normal(0.0, 0.01, size=(d_in, d_out))
                b = rng.normal(0.0, 0.01, size=d_out)
            else:
                W = rng.normal(0.0, 1.0 / np.sqrt(d_in), size=(d_in, d_out))
                b = np.zeros(d_out)
            self.params[f"W{i}"] = W.astype(self.dtype)
            self.params[f"b{i}"] = b.astype(self.dtype)
        return self

    def set_params(self, params: dict[str, np.ndarray]) -> "Network":
        expected = {f"{k}{i}" for i in range(1, self.n_layers + 1) for k in "Wb"}
        if set(params) != expected:
            raise ValueError(f"parameters {sorted(params)} do not match layers {sorted(expected)}")
        self.params = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in params.items()}
        return self

    # ------------------------------------------------------- forward/backward
    def draw_masks(self, rng: np.random.Generator, n: int) -> list[np.ndarray] | None:
        """One inverted-dropout mask per hidden layer for a batch of n, or None."""
        if self.dropout == 0.0 or self.n_layers == 1:
            return None
        return [layers.dropout_mask(rng, (n, h), self.dropout, self.dtype) for h in self.hidden]

    def forward(self, X, masks=None):
        """X (N, D) -> scores (N, K), caches. `masks` switches dropout on (training)."""
        h = X
        caches = []
        for i in range(1, self.n_layers + 1):
            h, affine_cache = layers.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            relu_cache = drop_cache = None
            if i < self.n_layers:
                h, relu_cache = layers.relu_forward(h)
                if masks is not None:
                    h, drop_cache = layers.dropout_forward(h, masks[i - 1])
            caches.append((affine_cache, relu_cache, drop_cache))
        return h, caches

    def backward(self, dscores, caches, lam: float) -> dict[str, np.ndarray]:
        """dscores (N, K) -> grads with the same keys as params, L2 term included."""
        grads = {}
        dh = dscores
        for i in range(self.n_layers, 0, -1):
            affine_cache, relu_cache, drop_cache = caches[i - 1]
            if i < self.n_layers:
                if drop_cache is not None:
                    dh = layers.dropout_backward(dh, drop_cache)
                dh = layers.relu_backward(dh, relu_cache)
            dh, dW, db = layers.affine_backward(dh, affine_cache, need_dx=i > 1)
            dW += layers.l2_grad(self.params[f"W{i}"], lam)
            grads[f"W{i}"] = dW
            grads[f"b{i}"] = db
        return grads

    def cost_and_grads(self, X, y, lam: float, masks=None):
        """Returns (loss, reg, grads): cost = loss + reg."""
        scores, caches = self.forward(X, masks)
        loss, dscores, _ = layers.softmax_cross_entropy(scores, y)
        reg = layers.l2_penalty([self.params[k] for k in self.weight_names()], lam)
        grads = self.backward(dscores, caches, lam)
        return loss, reg, grads

    # ------------------------------------------------------------ evaluation
    def predict_proba(self, X, batch: int = 5000) -> np.ndarray:
        """Softmax probabilities (N, K), in vectorised chunks to bound memory."""
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, X.shape[0], batch):
            xb = np.asarray(X[start:start + batch], dtype=self.dtype)
            scores, _ = self.forward(xb)
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
            out[start:start + batch] = scores
        return out

    def evaluate(self, X, y, lam: float, batch: int = 5000) -> dict[str, float]:
        """loss, reg, cost and accuracy on a whole split."""
        probs = self.predict_proba(X, batch)
        return metrics_from_probs(probs, y, self.regulariser(lam))

    def regulariser(self, lam: float) -> float:
        return layers.l2_penalty([self.params[k] for k in self.weight_names()], lam)


def metrics_from_probs(probs, y, reg: float) -> dict[str, float]:
    """Loss, cost and accuracy from class probabilities (N, K)."""
    y = np.asarray(y)
    p_true = probs[np.arange(len(y)), y].astype(np.float64)
    loss = float(-np.log(np.maximum(p_true, 1e-300)).mean())
    acc = float((probs.argmax(axis=1) == y).mean())
    return {"loss": loss, "reg": reg, "cost": loss + reg, "accuracy": acc}


def build_network(input_dim: int, hidden: list[int], n_classes: int = 10, dropout: float = 0.0,
                  dtype="float32", seed: int = 0) -> Network:
    """A seeded, initialised network: hidden=[] gives the linear classifier."""
    net = Network([input_dim, *hidden, n_classes], dropout=dropout, dtype=np.dtype(dtype))
    return net.init_params(np.random.default_rng(seed))

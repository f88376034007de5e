"""Parameter updates, each the same algorithm as its torch.optim namesake
(the reference-trajectory gate checks them against it step by step)."""
from __future__ import annotations

import numpy as np

from . import blas, layers


class SGD:
    """p <- p - eta * g (one BLAS axpy pass per parameter where available: `blas.axpy`).

    `weight_step` lets the network fold the weights' step into their gradient GEMMs
    (`train.train_step`); `step` then updates only the parameters left in grads."""

    def __init__(self, params: dict[str, np.ndarray]):
        pass

    def step(self, params, grads, eta: float):
        for k, g in grads.items():
            blas.axpy(-eta, g, params[k])

    def weight_step(self, eta: float, lam: float):
        """(alpha, beta) with W <- beta W + alpha xᵀdout equal to W - eta (2 lam W + xᵀdout)."""
        return -eta, 1.0 - eta * layers.l2_scale(lam)


class Nesterov:
    """torch.optim.SGD(momentum=mu, nesterov=True): v <- mu v + g; p <- p - eta (g + mu v)."""

    def __init__(self, params, momentum: float = 0.9):
        self.mu = momentum
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params, grads, eta: float):
        for k, p in params.items():
            v = self.v[k]
            v *= self.mu
            v += grads[k]
            blas.axpy(-eta, grads[k], p)  # p -= eta (g + mu v), as two one-pass updates
            blas.axpy(-eta * self.mu, v, p)

    def weight_step(self, eta: float, lam: float):
        return None  # the velocity needs the gradient itself: no fused step


class Adam:
    """torch.optim.Adam (coupled L2: the cost's 2*lam*W is already in g)."""

    def __init__(self, params, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.s = {k: np.zeros_like(p) for k, p in params.items()}
        self.t = 0

    def step(self, params, grads, eta: float):
        self.t += 1
        bc1 = 1.0 - self.b1 ** self.t
        bc2 = 1.0 - self.b2 ** self.t
        for k, p in params.items():
            g, m, s = grads[k], self.m[k], self.s[k]
            m *= self.b1
            m += (1.0 - self.b1) * g
            s *= self.b2
            s += (1.0 - self.b2) * (g * g)
            denom = np.sqrt(s) / np.sqrt(bc2) + self.eps
            p -= (eta / bc1) * (m / denom)

    def weight_step(self, eta: float, lam: float):
        return None  # the moments need the gradient itself: no fused step


def make_optimizer(name: str, params, momentum: float = 0.9):
    if name == "sgd":
        return SGD(params)
    if name == "nesterov":
        return Nesterov(params, momentum)
    if name == "adam":
        return Adam(params)
    raise ValueError(f"unknown optimizer {name!r} (expected sgd, nesterov or adam)")

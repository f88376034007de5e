"""Parameter updates, each the same algorithm as its torch.optim namesake
(the reference-trajectory gate checks them against it step by step)."""
from __future__ import annotations

import numpy as np


def _scratch_like(params) -> dict[str, np.ndarray]:
    """One reusable buffer per parameter.

    `p -= eta * g` allocates a fresh W-sized temporary every step; for the
    3072x500 layer that is 6-12 MB, and glibc hands such blocks back to the
    kernel and takes them again (page faults, zeroing). Forming the scaled
    step in a buffer kept across steps does the same arithmetic, bit for bit.
    """
    return {k: np.empty_like(p) for k, p in params.items()}


def _buffer(scratch, k, p):
    buf = scratch.get(k)
    if buf is None or buf.shape != p.shape or buf.dtype != p.dtype:
        buf = scratch[k] = np.empty_like(p)  # params not the ones the optimiser was built for
    return buf


class SGD:
    """p <- p - eta * g."""

    def __init__(self, params: dict[str, np.ndarray]):
        self._scratch = _scratch_like(params)

    def step(self, params, grads, eta: float):
        for k, p in params.items():
            step = np.multiply(grads[k], eta, out=_buffer(self._scratch, k, p))  # eta * g
            p -= step


class Nesterov:
    """torch.optim.SGD(momentum=mu, nesterov=True): v <- mu v + g; p <- p - eta (g + mu v)."""

    def __init__(self, params, momentum: float = 0.9):
        self.mu = momentum
        self.v = {k: np.zeros_like(p) for k, p in params.items()}
        self._scratch = _scratch_like(params)

    def step(self, params, grads, eta: float):
        for k, p in params.items():
            v = self.v[k]
            v *= self.mu
            v += grads[k]
            # eta * (g + mu v), in the same order of operations as torch, in one buffer.
            step = np.multiply(v, self.mu, out=_buffer(self._scratch, k, p))
            step += grads[k]
            step *= eta
            p -= step


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


def make_optimizer(name: str, params, momentum: float = 0.9):
    if name == "sgd":
        return SGD(params)
    if name == "nesterov":
        return Nesterov(params, momentum)
    if name == "adam":
        return Adam(params)
    raise ValueError(f"unknown optimizer {name!r} (expected sgd, nesterov or adam)")

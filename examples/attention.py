"""Single-head scaled dot-product self-attention over one sequence.

    handbackprop check examples/attention.py::SelfAttention

x (T, D) -> Q, K, V = x Wq, x Wk, x Wv -> A = softmax(Q Kᵀ / sqrt(d_k)) row-wise -> out = A V.
x feeds all three projections, so dx is the sum of three paths; the softmax backward is the
row-wise A ⊙ (dA - Σ_j dA ⊙ A).
"""
import math

import numpy as np
from array_api_compat import array_namespace


def attn_forward(x, params):
    """x (T, D), Wq, Wk (D, dk), Wv (D, dv) -> out (T, dv)."""
    xp = array_namespace(x)
    Q, K, V = x @ params["Wq"], x @ params["Wk"], x @ params["Wv"]  # (T, dk), (T, dk), (T, dv)
    scale = 1.0 / math.sqrt(Q.shape[1])
    S = (Q @ K.T) * scale  # (T, T)
    S = S - xp.max(S, axis=1, keepdims=True)  # stable softmax: the shift cancels in A
    E = xp.exp(S)
    A = E / xp.sum(E, axis=1, keepdims=True)  # (T, T), rows sum to 1
    return A @ V, (x, Q, K, V, A, scale, params)


def attn_backward(dout, cache):
    """dout (T, dv) -> dx (T, D), {Wq, Wk, Wv}."""
    x, Q, K, V, A, scale, params = cache
    dV = A.T @ dout  # (T, dv)
    dA = dout @ V.T  # (T, T)
    dS = A * (dA - (dA * A).sum(axis=1, keepdims=True))  # (T, T) softmax backward, per row
    dQ = dS @ K * scale  # (T, dk)
    dK = dS.T @ Q * scale  # (T, dk)
    dx = dQ @ params["Wq"].T + dK @ params["Wk"].T + dV @ params["Wv"].T  # (T, D): three paths
    return dx, {"Wq": x.T @ dQ, "Wk": x.T @ dK, "Wv": x.T @ dV}


class SelfAttention:
    forward = staticmethod(attn_forward)
    backward = staticmethod(attn_backward)

    @staticmethod
    def example(rng):
        x = rng.normal(size=(6, 5))  # (T, D)
        return x, {"Wq": rng.normal(0, .5, (5, 4)), "Wk": rng.normal(0, .5, (5, 4)),
                   "Wv": rng.normal(0, .5, (5, 3))}

"""Layers as forward/backward pairs with explicit caches (cs231n style).

Images are rows: a mini-batch X is (N, D) and an affine layer's weight is
(D_in, D_out), so a mini-batch drawn from a row-major array is one
contiguous-enough gather and every product is a single GEMM.

Every `*_forward` returns `(out, cache)`; the matching `*_backward` takes the
upstream gradient and that cache. Callers must reach these functions through
the module (``layers.relu_backward``), never by ``from ... import``: the
planted-bug catalogue swaps them at run time to prove the gates catch bugs.
"""
from __future__ import annotations

import numpy as np

from . import blas


def affine_forward(x, W, b):
    """x (N, D_in), W (D_in, D_out), b (D_out,) -> out (N, D_out)."""
    out = x @ W  # (N, D_out)
    out += b
    return out, (x, W)


def affine_backward(dout, cache, need_dx=True, acc=None):
    """dout (N, D_out) -> dx (N, D_in) or None, dW (D_in, D_out), db (D_out,).

    The first layer's dx (a gradient with respect to the images) is never
    used; skipping it saves one of the step's three large GEMMs.

    `acc` = (C, alpha, beta) writes dW into C (D_in, D_out) as beta*C + alpha*xᵀ dout,
    one GEMM (`blas.gemm_tn_update`), and returns C as dW. The network passes
    (2λW, 1, 1): the gradient with its L2 term, no separate add; or, with plain SGD,
    (W, -η, 1 - 2λη): then "dW" is the updated weight. dx is formed first, from
    the W before any update. A C overlapping x or dout is never written to: the
    same sum is then formed out of place.
    """
    x, W = cache
    dx = dout @ W.T if need_dx else None  # (N, D_in)
    if acc is None:
        dW = x.T @ dout  # (D_in, D_out)
    else:
        C, alpha, beta = acc
        if (isinstance(C, np.ndarray) and C.shape == W.shape and C.flags.writeable
                and not any(np.may_share_memory(C, a) for a in (x, dout))):
            blas.gemm_tn_update(x, dout, C, alpha, beta)
            dW = C
        else:  # not an array of its own to write into: the same sum, out of place
            dW = beta * C + alpha * (x.T @ dout)
    db = dout.sum(axis=0)  # (D_out,): every sample adds to the same bias
    return dx, dW, db


def relu_forward(x):
    """x (N, H) -> max(x, 0) (N, H); the cache is the output itself."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout, cache):
    """Pass the gradient where the unit was active (output > 0)."""
    out = cache
    return dout * (out > 0)


def dropout_mask(rng, shape, p, dtype):
    """Inverted-dropout mask: 0 with probability p, else 1/(1-p).

    Scaling at train time keeps the expected activation unchanged, so the
    network is used as-is at test time. Drawn from an explicit Generator so a
    run, and a gradient check, can be reproduced exactly.
    """
    keep = rng.random(shape) >= p  # (N, H) bool
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropout_forward(x, mask):
    """x (N, H), mask (N, H) from `dropout_mask` -> x * mask."""
    return x * mask, mask


def dropout_backward(dout, cache):
    mask = cache
    return dout * mask


def softmax_cross_entropy(scores, y):
    """Mean cross-entropy of softmax(scores) against integer labels.

    scores (N, K), y (N,) int -> (loss, dscores (N, K), probs (N, K)).
    Stable: shifting each row by its maximum leaves softmax unchanged and
    keeps exp() from overflowing; log-probabilities come from log-sum-exp
    rather than log(softmax), which would underflow to log(0).
    """
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, K)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)  # (N, 1)
    rows = np.arange(n)
    # Only the true class's log-probability enters the loss: no (N, K) log_probs.
    # Few NumPy calls on purpose: after the step's GEMMs each one runs cache-cold
    # (bench/README.md), so the loss is two sums and dscores one scaled copy.
    loss = (float(np.log(sum_exp).sum()) - float(shifted[rows, y].sum())) / n
    probs = np.divide(exp, sum_exp, out=exp)  # exp is not needed again
    dscores = probs * (1.0 / n)  # (N, K): the mean's 1/N folded into the copy
    dscores[rows, y] -= 1.0 / n
    return loss, dscores, probs


def l2_penalty(weights, lam):
    """lam * sum ||W||^2 over the given weight matrices (biases excluded)."""
    return float(lam * sum(np.vdot(W, W) for W in weights))


def l2_scale(lam):
    """d/dW of lam * ||W||^2 is l2_scale(lam) * W. One function for the gradient and for
    the SGD step that folds it into its GEMM (`Network.backward`'s weight_step), so a wrong
    factor shows in both."""
    return 2.0 * lam


def l2_grad(W, lam):
    """d/dW of lam * ||W||^2."""
    return l2_scale(lam) * W

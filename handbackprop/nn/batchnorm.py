"""Batch normalisation as forward/backward pairs, with torch.nn.BatchNorm1d's conventions.

For one hidden layer, s = xW (N, H) -> ŝ = (s - μ_B) / sqrt(σ²_B + ε) -> γ ⊙ ŝ + β.
The conventions are exactly torch.nn.BatchNorm1d's, so torch's own module is the reference:

- training: μ_B and σ²_B are the batch mean and the *biased* batch variance
  (mean of squared deviations, divisor N) of each feature;
- running averages, updated by every training forward, with torch's momentum
  (the weight of the *new* batch, default 0.1):
  running_mean <- (1 - momentum) * running_mean + momentum * μ_B,
  running_var  <- (1 - momentum) * running_var  + momentum * σ²_B * N / (N - 1)
  (the *unbiased* variance goes into the average); they start at 0 and 1;
- evaluation: ŝ = (s - running_mean) / sqrt(running_var + ε);
- ε = 1e-5, added to the variance inside the square root;
- a training batch needs N >= 2 (torch refuses N = 1 too: one row has no variance).

A layer followed by batch norm has no bias b: the mean subtraction cancels it
exactly, so its gradient is identically zero (torch users write
Linear(bias=False) before BatchNorm1d for the same reason); β takes its role.

Reach these functions through the module (``batchnorm.batchnorm_backward``):
the planted-bug catalogue swaps them at run time.
"""
from __future__ import annotations

import numpy as np

EPS = 1e-5
MOMENTUM = 0.1


def linear_forward(x, W):
    """x (N, D_in), W (D_in, D_out) -> x W (N, D_out); the cache is the one
    `layers.affine_backward` takes (its db is then unused)."""
    return x @ W, (x, W)


def batchnorm_forward(s, gamma, beta, eps=EPS):
    """Training mode: batch statistics.

    s (N, H), gamma (H,), beta (H,) -> out (N, H), cache, (mu (H,), var (H,) biased).
    """
    n = s.shape[0]
    if n < 2:
        raise ValueError(f"batch norm in training mode needs a batch of at least 2 rows, got {n}")
    mu = s.sum(axis=0) / n  # (H,)
    s_hat = s - mu  # (N, H), centred; normalised in place below
    var = np.einsum("nh,nh->h", s_hat, s_hat) / n  # (H,) biased, as torch normalises
    inv_std = 1.0 / np.sqrt(var + eps)  # (H,)
    s_hat *= inv_std
    out = s_hat * gamma  # (N, H)
    out += beta
    return out, (s_hat, gamma, inv_std), (mu, var)


def batchnorm_backward(dout, cache):
    """dout (N, H) -> ds (N, H), dgamma (H,), dbeta (H,).

    With g = γ ⊙ dout (the gradient reaching ŝ), every row of s moves μ_B and
    σ²_B, which moves every ŝ of its column; collecting the three paths gives
        ds = inv_std / N * (N g - Σ_n g - ŝ Σ_n (g ⊙ ŝ)),
    and Σ_n g = γ dbeta, Σ_n g ⊙ ŝ = γ dgamma, so no extra reductions are needed.
    """
    s_hat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)  # (H,)
    dgamma = np.einsum("nh,nh->h", dout, s_hat)  # (H,) without an (N, H) temporary
    # The same formula as inv_std * γ * (dout - Σdout/N - ŝ Σ(dout ŝ)/N), in place
    # on one (N, H) array: every NumPy call here runs cache-cold after the GEMMs.
    ds = s_hat * (dgamma / -n)  # (N, H)
    ds += dout
    ds -= dbeta / n
    ds *= gamma * inv_std
    return ds, dgamma, dbeta


def batchnorm_eval_forward(s, gamma, beta, running_mean, running_var, eps=EPS):
    """Evaluation mode: s (N, H) normalised by the running statistics (H,) -> (N, H)."""
    scale = gamma / np.sqrt(running_var + eps)  # (H,)
    return (s - running_mean) * scale + beta


def update_running_stats(running_mean, running_var, mu, var, n, momentum=MOMENTUM):
    """In place, torch's rule: the new batch weighs `momentum`; var is the biased
    batch variance of n rows, made unbiased (x n / (n - 1)) before averaging."""
    running_mean *= 1.0 - momentum
    running_mean += momentum * mu
    running_var *= 1.0 - momentum
    running_var += (momentum * n / (n - 1)) * var

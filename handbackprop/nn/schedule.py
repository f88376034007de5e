"""Cyclical learning rate, triangular policy (Smith 2015)."""
from __future__ import annotations

import numpy as np


def default_step_size(n_train: int, batch_size: int) -> int:
    """n_s = 2 * floor(n / n_batch): a half-cycle spans two epochs."""
    return 2 * (n_train // batch_size)


def cyclic_lr(step, eta_min: float, eta_max: float, n_s: int):
    """eta at `step` (int or int array): rises linearly from eta_min to eta_max
    over n_s steps, falls back over the next n_s, and repeats every 2*n_s."""
    t = np.asarray(step) % (2 * n_s)
    frac = np.where(t <= n_s, t / n_s, (2 * n_s - t) / n_s)
    eta = eta_min + frac * (eta_max - eta_min)
    return float(eta) if np.ndim(eta) == 0 else eta

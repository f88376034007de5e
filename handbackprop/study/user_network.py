"""The adapter the study trains and scores a user's model through (see study/user_model.py).

`UserNetwork` has the methods of nn.network.Network that the study's loop (nn/train.py), the
run metrics (runs.run_metrics), the ensembles and the audit (tables.network_of) call, so a user
model writes the same run files as the built-in ones.

λ is the study's, not the user's: the user's loss_and_grads returns the data loss and its
gradient; the adapter adds λ‖W‖² to the cost and 2λW to the gradient of each `decayed`
parameter, and the study's optimiser (the config's `optimizer`, plain SGD by default) steps —
the same update the trajectory gate proved the user's own `step` equals.
"""
from __future__ import annotations

import numpy as np

from ..nn import layers
from ..nn.network import log_softmax_in_chunks, metrics_from_log_probs
from .plan import N_CLASSES
from .user_model import load


class UserNetwork:
    """The methods of nn.network.Network that the study calls, over a user's network.

    params: {name: array} in the training dtype; the user's code runs on them as they are
    (float32 in training, like the study's own layers)."""

    def __init__(self, user, params: dict, dtype, name: str = "user model"):
        self.user, self.name = user, name
        self.dtype = np.dtype(dtype)
        self.params = {k: np.array(v, dtype=self.dtype) for k, v in params.items()}
        self.state: dict = {}  # no running statistics: weights.npz holds the parameters alone
        unknown = set(user.decayed) - set(self.params)
        if unknown:
            raise ValueError(f"{name}: decayed names {sorted(unknown)}, but the parameters are "
                             f"{sorted(self.params)}")

    def draw_masks(self, rng, n):
        return None  # no dropout: the module is the whole network

    def regulariser(self, lam: float) -> float:
        return layers.l2_penalty([self.params[k] for k in self.user.decayed], lam)

    def cost_and_grads(self, X, y, lam: float, masks=None, update_stats=True, weight_step=None):
        """(loss, reg, grads) like Network.cost_and_grads. `weight_step` (the study's fused SGD
        update) is declined: every gradient is returned and the optimiser steps them all."""
        loss, grads = self.user.loss_and_grads(self.params, X, y)
        if set(grads) != set(self.params):
            raise ValueError(f"{self.name}.loss_and_grads returned gradients {sorted(grads)}, "
                             f"the parameters are {sorted(self.params)}")
        grads = {k: np.asarray(g, dtype=self.dtype) for k, g in grads.items()}
        scale = layers.l2_scale(lam)
        for k in self.user.decayed:
            grads[k] = grads[k] + scale * self.params[k]  # d(λ‖W‖²)/dW = 2λW; a copy, not the user's
        return float(loss), self.regulariser(lam), grads

    def predict_log_proba(self, X, batch: int = 5000) -> np.ndarray:
        """Log-softmax (N, K) in float64 from the user's `scores`, in chunks."""
        return log_softmax_in_chunks(lambda xb: self.user.scores(self.params, xb), X, self.dtype,
                                     N_CLASSES, batch)

    def evaluate(self, X, y, lam: float, batch: int = 5000) -> dict[str, float]:
        return metrics_from_log_probs(self.predict_log_proba(X, batch), y, self.regulariser(lam))

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.params)


def build(spec: dict, input_dim: int, dtype, seed: int) -> UserNetwork:
    """The user's network, initialised by its own init_params from the run's seed."""
    net = load(spec["module"])
    if int(net.input_dim) != int(input_dim):
        raise ValueError(f"{spec['module']}: input_dim is {net.input_dim}, the data has "
                         f"{input_dim} columns")
    return UserNetwork(net, net.init_params(np.random.default_rng(seed)), dtype, spec["module"])


def from_arrays(spec: dict, arrays: dict, dtype) -> UserNetwork:
    """A trained user network from its weights file (the ensembles and the audit)."""
    return UserNetwork(load(spec["module"]), arrays, dtype, spec["module"])

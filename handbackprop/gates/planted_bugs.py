"""A catalogue of realistic backprop and training-loop bugs, planted by patching
the verified modules at run time, to measure which gate catches which.

Production code has no switch for any of these: each bug replaces a function
of `handbackprop.nn` inside a context manager and restores it on exit.

A replacement that never runs proves nothing: if the code reached the original
some other way (say, a new `from .layers import relu_backward`), the gates would
"pass" a bug that was never there. So every replacement counts its calls, and a
bug whose replacement ran zero times is reported as "not planted", which fails
the bug-table rule.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable
from unittest import mock

import numpy as np

from ..nn import batchnorm, layers, network, optim, schedule, train
from .runner import run_gate


@dataclass(frozen=True)
class Bug:
    name: str
    description: str
    plant: Callable[[], contextlib.AbstractContextManager]
    # "batch_norm": the planted code runs only in batch-norm networks, so the gates run only
    # their batch-norm variants for it (the others provably execute none of it).
    scope: str = ""


class PlantCounter:
    """How many times the planted replacement(s) of one bug ran."""

    def __init__(self):
        self.calls = 0


def _counted(replacement, counter: PlantCounter):
    @functools.wraps(replacement)
    def wrapper(*args, **kwargs):
        counter.calls += 1
        return replacement(*args, **kwargs)
    return wrapper


def _patch(target, attr, replacement):
    """plant() -> context manager that swaps target.attr for a counting replacement and
    yields the PlantCounter (a method replacement still gets `self`: a plain function
    set on a class binds like any method)."""
    @contextlib.contextmanager
    def plant():
        counter = PlantCounter()
        with mock.patch.object(target, attr, _counted(replacement, counter)):
            yield counter
    return plant


_orig_affine_backward = layers.affine_backward
_orig_softmax_ce = layers.softmax_cross_entropy
_orig_cyclic_lr = schedule.cyclic_lr
_orig_init = network.Network.init_params
_orig_streams = train.random_streams


def _bias_not_summed(dout, cache, need_dx=True, acc=None):
    dx, dW, _ = _orig_affine_backward(dout, cache, need_dx, acc)
    return dx, dW, dout[0].copy()


def _loss_summed(scores, y):
    loss, dscores, probs = _orig_softmax_ce(scores, y)
    n = scores.shape[0]
    return loss * n, dscores * n, probs


def _labels_out_of_step(X, y, idx, dtype):
    return np.asarray(X[idx], dtype=dtype), y[np.roll(idx, 1)]


def _sgd_without_eta(self, params, grads, eta):
    for k, g in grads.items():
        params[k] -= g


def _weight_step_without_eta(self, eta, lam):
    return -1.0, 1.0 - layers.l2_scale(lam)  # the fused weight step of the raw gradient


def _schedule_off_by_one(step, eta_min, eta_max, n_s):
    return _orig_cyclic_lr(np.asarray(step) + 1, eta_min, eta_max, n_s)


def _schedule_half_cycle(step, eta_min, eta_max, n_s):
    return _orig_cyclic_lr(np.asarray(step) + n_s, eta_min, eta_max, n_s)


def _init_too_large(self, rng):
    _orig_init(self, rng)
    for k in self.weight_names():
        self.params[k] *= 100
    return self


def _dropout_not_inverted(rng, shape, p, dtype):
    return (rng.random(shape) >= p).astype(dtype)


def _predict_proba_with_dropout(self, X, batch=5000):
    """Scores through forward() with freshly drawn dropout masks, as during training."""
    rng = np.random.default_rng(0)
    out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
    for start in range(0, X.shape[0], batch):
        xb = np.asarray(X[start:start + batch], dtype=self.dtype)
        scores, _ = self.forward(xb, self.draw_masks(rng, xb.shape[0]))
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        out[start:start + batch] = scores / scores.sum(axis=1, keepdims=True)
    return out


def _predict_proba_without_bias(self, X, batch=5000):
    """A hand-written inference loop (no caches needed) that forgets the biases."""
    h = np.asarray(X, dtype=self.dtype)
    for i in range(1, self.n_layers + 1):
        h = h @ self.params[f"W{i}"]
        if i < self.n_layers:
            h = np.maximum(h, 0)
    h = h - h.max(axis=1, keepdims=True)
    e = np.exp(h)
    return e / e.sum(axis=1, keepdims=True)


def _ensemble_of_log_probs(nets, X, y, lam):
    """Averages log-probabilities (a geometric mean, renormalised) instead of probabilities."""
    logp = np.mean([np.log(np.maximum(n.predict_proba(X).astype(np.float64), 1e-300)) for n in nets],
                   axis=0)
    probs = np.exp(logp - logp.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    reg = nets[0].regulariser(lam) if len(nets) == 1 else float("nan")
    return network.metrics_from_probs(probs, y, reg), probs.argmax(axis=1)


def _ensemble_of_votes(nets, X, y, lam):
    """Averages each network's one-hot vote (argmax) instead of its probabilities."""
    votes = np.zeros((X.shape[0], nets[0].sizes[-1]))
    for n in nets:
        votes[np.arange(X.shape[0]), n.predict_proba(X).argmax(axis=1)] += 1.0 / len(nets)
    reg = nets[0].regulariser(lam) if len(nets) == 1 else float("nan")
    return network.metrics_from_probs(votes, y, reg), votes.argmax(axis=1)


def _init_std_is_variance(self, rng):
    """N(0, 1/fan_in) read as a standard deviation of 1/fan_in (55x too small at 3072 inputs)."""
    _orig_init(self, rng)
    if self.n_layers > 1:
        for i, k in enumerate(self.weight_names()):
            self.params[k] *= self.dtype.type(1.0 / np.sqrt(self.sizes[i]))
    return self


def _one_stream_for_dropout_and_augmentation(seed):
    shuffle, dropout, _ = _orig_streams(seed)
    return [shuffle, dropout, dropout]


def _keep_drawn_in_training_dtype(rng, shape, p, dtype):
    """Draws the uniforms in the training dtype to save memory: in float32 that consumes a
    different part of the stream than the documented float64 draw, so float32 runs use other
    masks than their seed says (and than a float64 run of the same seed)."""
    keep = rng.random(shape, dtype=dtype) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


# ------------------------------------------------------------------ batch norm
_orig_bn_forward = batchnorm.batchnorm_forward
_orig_bn_backward = batchnorm.batchnorm_backward


def _bn_backward_without_mean_path(dout, cache):
    """Treats μ_B as a constant: keeps the σ² path, drops the -Σg/N term."""
    s_hat, gamma, inv_std = cache
    _, dgamma, dbeta = _orig_bn_backward(dout, cache)
    g = dout * gamma  # (N, H)
    return inv_std * (g - s_hat * (g * s_hat).mean(axis=0)), dgamma, dbeta


def _bn_backward_without_variance_path(dout, cache):
    """Treats σ²_B as a constant: keeps the μ path, drops the -ŝ Σ(g ŝ)/N term."""
    s_hat, gamma, inv_std = cache
    _, dgamma, dbeta = _orig_bn_backward(dout, cache)
    g = dout * gamma  # (N, H)
    return inv_std * (g - g.mean(axis=0)), dgamma, dbeta


def _bn_forward_unbiased(s, gamma, beta, eps=batchnorm.EPS):
    """np.var(s, axis=0, ddof=1) in the normalisation; the backward still assumes ddof=0."""
    n = s.shape[0]
    mu = s.mean(axis=0)
    var = s.var(axis=0, ddof=1)
    inv_std = 1.0 / np.sqrt(var + eps)
    s_hat = (s - mu) * inv_std
    return s_hat * gamma + beta, (s_hat, gamma, inv_std), (mu, var * (n - 1) / n)


def _bn_forward_eps_outside_sqrt(s, gamma, beta, eps=batchnorm.EPS):
    """1 / (sqrt(σ²) + ε) instead of 1 / sqrt(σ² + ε): off by ~ε/σ, a 1e-5 effect."""
    mu = s.mean(axis=0)
    var = s.var(axis=0)
    inv_std = 1.0 / (np.sqrt(var) + eps)
    s_hat = (s - mu) * inv_std
    return s_hat * gamma + beta, (s_hat, gamma, inv_std), (mu, var)


def _bn_gamma_grad_not_summed(dout, cache):
    ds, dgamma, dbeta = _orig_bn_backward(dout, cache)
    s_hat = cache[0]
    return ds, (dout * s_hat)[0].copy(), dbeta


def _running_stats_momentum_swapped(running_mean, running_var, mu, var, n,
                                    momentum=batchnorm.MOMENTUM):
    """Keras's convention read into torch's number: the old average keeps weight 0.1."""
    running_mean *= momentum
    running_mean += (1.0 - momentum) * mu
    running_var *= momentum
    running_var += (1.0 - momentum) * n / (n - 1) * var


def _running_var_biased(running_mean, running_var, mu, var, n, momentum=batchnorm.MOMENTUM):
    """The biased batch variance into the running average (torch uses the unbiased one)."""
    running_mean *= 1.0 - momentum
    running_mean += momentum * mu
    running_var *= 1.0 - momentum
    running_var += momentum * var


def _eval_with_batch_statistics(s, gamma, beta, running_mean, running_var, eps=batchnorm.EPS):
    """Evaluation normalises each evaluated chunk by its own statistics."""
    return _orig_bn_forward(s, gamma, beta, eps)[0]


BATCHNORM_BUGS = [
    Bug("bn_backward_missing_mean_path", "batch-norm backward treats the batch mean as a constant",
        _patch(batchnorm, "batchnorm_backward", _bn_backward_without_mean_path), "batch_norm"),
    Bug("bn_backward_missing_variance_path",
        "batch-norm backward treats the batch variance as a constant",
        _patch(batchnorm, "batchnorm_backward", _bn_backward_without_variance_path), "batch_norm"),
    Bug("bn_unbiased_variance_in_normalisation",
        "batch-norm forward normalises by the unbiased variance (ddof=1)",
        _patch(batchnorm, "batchnorm_forward", _bn_forward_unbiased), "batch_norm"),
    Bug("bn_eps_outside_sqrt", "batch-norm forward divides by sqrt(var) + eps, not sqrt(var + eps)",
        _patch(batchnorm, "batchnorm_forward", _bn_forward_eps_outside_sqrt), "batch_norm"),
    Bug("bn_gamma_grad_not_summed", "gamma gradient from the first sample only, not summed over the batch",
        _patch(batchnorm, "batchnorm_backward", _bn_gamma_grad_not_summed), "batch_norm"),
    Bug("bn_running_momentum_swapped",
        "running averages keep weight momentum on the old value (Keras convention), not 1 - momentum",
        _patch(batchnorm, "update_running_stats", _running_stats_momentum_swapped), "batch_norm"),
    Bug("bn_running_var_biased", "running variance averages the biased batch variance",
        _patch(batchnorm, "update_running_stats", _running_var_biased), "batch_norm"),
    Bug("bn_eval_uses_batch_statistics",
        "evaluation mode normalises by batch statistics instead of the running averages",
        _patch(batchnorm, "batchnorm_eval_forward", _eval_with_batch_statistics), "batch_norm"),
]

CATALOGUE = [
    Bug("relu_derivative_wrong", "ReLU backward passes the gradient everywhere (derivative 1)",
        _patch(layers, "relu_backward", lambda dout, cache: dout)),
    Bug("l2_grad_missing_factor_2", "L2 gradient lam*W instead of 2*lam*W",
        _patch(layers, "l2_scale", lambda lam: lam)),
    Bug("l2_grad_added_twice", "L2 gradient added twice (4*lam*W)",
        _patch(layers, "l2_scale", lambda lam: 4.0 * lam)),
    Bug("bias_grad_not_summed", "bias gradient from the first sample only, not summed over the batch",
        _patch(layers, "affine_backward", _bias_not_summed)),
    Bug("dropout_mask_missing_in_backward", "dropout backward ignores the mask",
        _patch(layers, "dropout_backward", lambda dout, cache: dout)),
    Bug("loss_summed_not_averaged", "cross-entropy summed over the batch in forward and backward",
        _patch(layers, "softmax_cross_entropy", _loss_summed)),
    Bug("labels_out_of_step", "mini-batch labels gathered one position out of step with images",
        _patch(train, "take_batch", _labels_out_of_step)),
    Bug("learning_rate_not_applied", "SGD update ignores eta (step of the raw gradient)",
        _patch(optim.SGD, "step", _sgd_without_eta)),
    Bug("weight_step_ignores_eta", "SGD step folded into the weight GEMM ignores eta "
        "(weights step by the raw gradient)",
        _patch(optim.SGD, "weight_step", _weight_step_without_eta)),
    Bug("schedule_off_by_one_step", "cyclical learning rate evaluated one step ahead",
        _patch(schedule, "cyclic_lr", _schedule_off_by_one)),
    Bug("schedule_half_cycle_phase", "schedule starts at eta_max (phase off by half a cycle)",
        _patch(schedule, "cyclic_lr", _schedule_half_cycle)),
    Bug("init_scale_100x", "weights initialised 100x too large",
        _patch(network.Network, "init_params", _init_too_large)),
    Bug("dropout_not_inverted", "dropout mask not rescaled by 1/(1-p)",
        _patch(layers, "dropout_mask", _dropout_not_inverted)),
    Bug("predict_proba_applies_dropout", "test-time probabilities computed with dropout masks on",
        _patch(network.Network, "predict_proba", _predict_proba_with_dropout)),
    Bug("bias_dropped_at_test_time", "hand-written inference loop forgets the biases",
        _patch(network.Network, "predict_proba", _predict_proba_without_bias)),
    Bug("ensemble_averages_log_probs", "ensemble averages log-probabilities, not probabilities",
        _patch(train, "ensemble_metrics", _ensemble_of_log_probs)),
    Bug("ensemble_averages_votes", "ensemble averages one-hot argmax votes, not probabilities",
        _patch(train, "ensemble_metrics", _ensemble_of_votes)),
    Bug("init_std_is_variance", "weights drawn with std 1/fan_in instead of 1/sqrt(fan_in) "
        "(55x too small on the first layer)",
        _patch(network.Network, "init_params", _init_std_is_variance)),
    Bug("augmentation_shares_dropout_stream", "augmentation drawn from the dropout generator",
        _patch(train, "random_streams", _one_stream_for_dropout_and_augmentation)),
    Bug("dropout_keep_drawn_in_training_dtype", "dropout uniforms drawn in the training dtype "
        "(float32 runs leave the documented random stream)",
        _patch(layers, "dropout_mask", _keep_drawn_in_training_dtype)),
    *BATCHNORM_BUGS,
]

# Why a bug can slip past every gate; shown beside it in the table. dropout_not_inverted
# used to be here (forward and backward agree on the unscaled mask); the trajectory gate's
# dropout variants now catch it, since torch applies its own 1/(1-p) to the same keep pattern.
UNCAUGHT_REASON: dict[str, str] = {}


NOT_RUN = "not run"


def scoped_settings(bug: Bug | None, settings: dict) -> dict:
    """The gate's settings with only the variants that execute the bug's code (all of them
    unless the bug is scoped); None when no variant does."""
    if bug is None or not bug.scope:
        return settings
    variants = {k: v for k, v in settings["variants"].items() if v.get(bug.scope)}
    return {**settings, "variants": variants} if variants else None


def run_catalogue(X, y, settings: dict, bugs=CATALOGUE, log=print) -> list[dict]:
    """Rows {bug, description, caught_by, <gate>: 'caught'/'passed'/'not run', first failure}.

    The first row is the correct code, which must pass every gate. A batch-norm bug is run
    against batch-norm variants only; a gate with none is 'not run' for it.
    """
    rows = []
    for bug in [None, *bugs]:
        ctx = bug.plant() if bug else contextlib.nullcontext()
        row = {"bug": bug.name if bug else "(none: correct code)",
               "description": bug.description if bug else "the code as shipped",
               "scope": bug.scope if bug else ""}
        with ctx as counter:
            for gate in settings:
                gate_settings = scoped_settings(bug, settings[gate])
                if gate_settings is None:
                    row[gate] = NOT_RUN
                    row[f"{gate}_message"] = (f"no {bug.scope} variant in this gate's settings: "
                                              "the planted code never runs")
                    continue
                ev = run_gate(gate, X, y, gate_settings, log=lambda s: None)
                row[gate] = "passed" if ev["passed"] else "caught"
                row[f"{gate}_message"] = ev["failures"][0] if ev["failures"] else ""
        row["planted_calls"] = counter.calls if bug else None
        row["planted"] = bug is None or (isinstance(counter, PlantCounter) and counter.calls > 0)
        row["caught_by"] = [g for g in settings if row[g] == "caught"]
        row["note"] = UNCAUGHT_REASON.get(row["bug"], "") if not row["caught_by"] else ""
        if not row["planted"]:
            row["note"] = ("not planted: its replacement never ran, so the gates never saw this "
                           "bug (is the function reached through its module?)")
        log(f"{row['bug']}: caught by {', '.join(row['caught_by']) or 'no gate'}"
            + ("" if row["planted"] else " -- NOT PLANTED"))
        rows.append(row)
    return rows


# ------------------------------------------------------------------ the stacked path (nn/stack.py)
# Kept out of CATALOGUE: the catalogue's gates (runner.py) train single runs, which never reach
# the stacked path, so there this bug would be "not planted". gates/stacked.py's stacked_gate is
# the check that catches it (tests/gates/test_stacked.py).
from ..nn import stack  # noqa: E402  (an addition after the catalogue, not among its imports)

_orig_per_run_lams = stack.per_run_lams


def _lam_of_run_i_applied_to_run_j(lams):
    """Each run in the stack trains with its neighbour's λ (a roll of the per-run vector)."""
    return np.roll(_orig_per_run_lams(lams), 1)


STACKED_BUGS = [
    Bug("lam_of_run_i_applied_to_run_j",
        "stacked training applies run i's lambda to run j (the per-run lambda vector rolled by one)",
        _patch(stack, "per_run_lams", _lam_of_run_i_applied_to_run_j)),
]

# What the planted-bug table runs (workflow/scripts/bug_table.py): every bug, against every gate
# the study trains behind, the stacked one included.
TABLE_BUGS = [*CATALOGUE, *STACKED_BUGS]

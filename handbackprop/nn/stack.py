"""k training runs that differ only in λ, trained together as one stack of networks (issue 24.1).

The runs of one search stage of one model at one seed share the architecture, the training
spec, the initial weights (`build_network(seed)`), the mini-batches, the dropout keep patterns
and the augmentation (all drawn from the streams of that seed: `train.random_streams`). Only λ
differs, so the k first layers are one matrix, the runs' W1 side by side:

    W1 (D, k·m1)   column block j = run j's W1;   X_batch (B, D) · W1 = (B, k·m1): one GEMM,

and the deeper layers a stack (k, m_{i-1}, m_i) multiplied batch-wise (np.matmul).

Why only same-seed runs are stacked (not a gather of per-run batches): with one seed the batch,
its augmentation and its dropout masks are the same for all k runs, so the first layer, the
step's dominant cost (3072 × k·m of 3072·m + m·m' + ...), really is one GEMM with one shared
left operand; and the random streams are the single run's own (`train.random_streams(seed)`),
so each stacked run is by construction the run `train.train` would train, not a re-derivation
of it. Runs of different seeds have different batches: their first layers would be k separate
GEMMs (or a batched (k, B, D)·(k, D, m) that moves k times the images), which saves nothing
but call overhead. A search stage has several λ per seed; the caller groups by seed.

What is stacked: plain SGD (the study's optimiser), any depth (linear, one or more hidden
layers), batch norm (per-run γ, β, batch statistics and running averages: the batch-norm
functions reduce over the batch axis, so on the side-by-side layout (B, k·m) every run's columns
are normalised by their own statistics), dropout, flip/shift augmentation, the cyclical learning
rate, per-run λ (the L2 term and the weight decay of each run's own slice), per-run divergence
detection (a diverged run is recorded as its `TrainingDiverged` and leaves the stack; the others
go on, their arithmetic untouched: every run's maths is confined to its own slice), per-run
records (the history rows of `train.train`, scored by each run's own `Network.evaluate`). Not
stacked: Nesterov/Adam (per-run velocities would work the same way; the search uses SGD),
snapshots, the `eta_at`/`on_step` hooks: `train_stack` refuses them.

Maths reuse: every step goes through the single-run layer functions where their shapes allow
(`layers.affine_forward` for every layer, `layers.affine_backward` for the first, relu/dropout
forward and backward, `layers.softmax_cross_entropy` per run, `layers.l2_grad`/`l2_scale` via
`optim.SGD.weight_step`, `SGD.step`, `train.take_batch`, `schedule.cyclic_lr`,
`Network.draw_masks`), so the planted bugs of those functions reach the stacked path. The
deeper layers' backward cannot use `layers.affine_backward`: it transposes with `.T`, which on a
(k, m, m') stack reverses all three axes; its batched form is written out in
`StackedNetwork.backward` (three lines, checked against k single steps by the stacked gate,
gates/stacked.py).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time

import numpy as np

from . import augment, batchnorm, layers, memory, optim, schedule, train
from .network import Network
from .train import TrainConfig, TrainingDiverged, TrainResult


def per_run_lams(lams) -> np.ndarray:
    """λ of each run in the stack, (k,) float64, in stack order. One function through which
    every per-run λ passes (L2 gradient, weight decay, reported regulariser), so the planted bug
    "λ of run i applied to run j" (gates/planted_bugs.STACKED_BUGS) replaces exactly this."""
    return np.asarray(lams, dtype=np.float64).reshape(-1)


class StackedNetwork:
    """k networks of one architecture as stacked parameters:

    W1 (D, k·m1), b1 (k·m1,)          the first layer, runs side by side (one GEMM)
    W<i> (k, m_{i-1}, m_i), b<i> (k, 1, m_i)   deeper layers, one slice per run (i >= 2)
    gamma<i>, beta<i>, state mean<i>, var<i> (k·m_i,)   batch norm, side by side (no b<i> then)

    For a linear classifier m1 = K (the only layer is the first)."""

    def __init__(self, nets: list[Network]):
        if not nets:
            raise ValueError("a stack needs at least one network")
        first = nets[0]
        for n in nets:
            if n.sizes != first.sizes or n.dropout != first.dropout or n.dtype != first.dtype:
                raise ValueError("stacked networks must share sizes, dropout and dtype")
            if (n.batch_norm, n.bn_momentum, n.bn_eps) != (first.batch_norm, first.bn_momentum,
                                                            first.bn_eps):
                raise ValueError("stacked networks must share batch norm and its settings")
        self.sizes, self.dropout, self.dtype = list(first.sizes), first.dropout, first.dtype
        self.batch_norm, self.bn_momentum, self.bn_eps = (first.batch_norm, first.bn_momentum,
                                                          first.bn_eps)
        self.template = first  # draws the dropout masks: the single run's own method
        self.k = len(nets)
        self.params: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        for key in first.param_names() + first.state_names():
            arrays = [(n.params if key in n.params else n.state)[key] for n in nets]
            target = self.params if key in first.params else self.state
            if self._flat(key):  # W1 (D, k·m1); b1, γ_i, β_i, mean_i, var_i (k·m_i,)
                target[key] = np.ascontiguousarray(np.concatenate(arrays, axis=-1))
            elif key.startswith("W"):
                target[key] = np.stack(arrays)  # (k, m_{i-1}, m_i)
            else:
                target[key] = np.stack(arrays)[:, None, :]  # b_i (k, 1, m_i)

    def _flat(self, key: str) -> bool:
        """Runs side by side along the last axis: the first layer's W and b, and every batch-norm
        array (γ, β and the running statistics act per column of the (B, k·m) layout, where
        `batchnorm`'s functions, reducing over axis 0, already treat every run separately)."""
        return key in ("W1", "b1") or key.startswith(("gamma", "beta", "mean", "var"))

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def _width(self, key: str) -> int:
        """m of the layer this flat key belongs to (its per-run block width)."""
        return self.sizes[int(re.sub(r"\D", "", key))]

    def _run_slice(self, key: str, arr: np.ndarray, j: int) -> np.ndarray:
        if self._flat(key):
            m = self._width(key)
            # a copy always: a contiguous block (a 1-d b1, or W1 of a stack of one) would
            # otherwise come back as a view, and the network would alias the stack's live array
            return np.array(arr[..., j * m:(j + 1) * m], order="C", copy=True)
        return arr[j].copy() if key.startswith("W") else arr[j, 0].copy()

    def run_params(self, j: int) -> dict[str, np.ndarray]:
        """Run j's parameters as the single network's dict (contiguous copies)."""
        return {key: self._run_slice(key, v, j) for key, v in self.params.items()}

    def run_state(self, j: int) -> dict[str, np.ndarray]:
        """Run j's running statistics (batch norm; {} otherwise)."""
        return {key: self._run_slice(key, v, j) for key, v in self.state.items()}

    def keep(self, positions: list[int]) -> None:
        """Keep only the runs at these stack positions (a diverged run leaves the stack)."""
        pos = np.asarray(positions, dtype=int)
        for target in (self.params, self.state):
            for key, arr in target.items():
                if self._flat(key):
                    m = self._width(key)
                    lead = arr.shape[:-1]
                    target[key] = np.ascontiguousarray(
                        arr.reshape(*lead, self.k, m)[..., pos, :].reshape(*lead, len(pos) * m))
                else:
                    target[key] = np.ascontiguousarray(arr[pos])
        self.k = len(pos)

    # ------------------------------------------------------------- forward/backward
    def forward(self, X, masks=None):
        """X (B, D) -> scores (k, B, K), caches. masks: the single run's per-hidden-layer
        (B, m_i) dropout masks, shared by all runs (same seed) and broadcast over k."""
        if self.batch_norm:
            return self.forward_bn(X, masks)
        B, k, m1 = X.shape[0], self.k, self.sizes[1]
        h, c1 = layers.affine_forward(X, self.params["W1"], self.params["b1"])  # (B, k·m1)
        # (B, k·m1) -> (k, B, m1): one copy of a small array, so every later matmul and
        # elementwise pass runs on contiguous per-run slices
        h = np.ascontiguousarray(h.reshape(B, k, m1).transpose(1, 0, 2))  # (k, B, m1)
        caches = []
        affine_cache = c1
        for i in range(1, self.n_layers + 1):
            if i > 1:  # x (k, B, m_{i-1}) @ W (k, m_{i-1}, m_i) + b (k, 1, m_i): batched matmul
                h, affine_cache = layers.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            relu_cache = drop_cache = None
            if i < self.n_layers:
                h, relu_cache = layers.relu_forward(h)  # (k, B, m_i)
                if masks is not None:
                    h, drop_cache = layers.dropout_forward(h, masks[i - 1])  # mask (B, m_i) broadcast
            caches.append((affine_cache, relu_cache, drop_cache))
        return h, caches  # h: scores (k, B, K)

    def backward(self, dscores, caches, lam: np.ndarray, eta: float, opt: optim.SGD) -> dict:
        """dscores (k, B, K) -> grads of the deeper layers' W (L2 term included) and of every
        bias, for `opt.step`; the first layer's W1 is stepped in place, per run:
        W1_j <- (1 - 2λ_j η) W1_j - η Xᵀ dH_j, the single run's fused step (`SGD.weight_step`)."""
        if self.batch_norm:
            return self.backward_bn(dscores, caches, lam, eta, opt)
        grads = {}
        dh = dscores
        # (k, 1, 1): run j's λ on slice j, in the weights' dtype as the single run's Python-float λ
        # acts (a float64 array would lift the float32 L2 term to float64 and round it again)
        lam3 = lam.astype(self.dtype)[:, None, None]
        for i in range(self.n_layers, 0, -1):
            affine_cache, relu_cache, drop_cache = caches[i - 1]
            if i < self.n_layers:
                if drop_cache is not None:
                    dh = layers.dropout_backward(dh, drop_cache)
                dh = layers.relu_backward(dh, relu_cache)  # (k, B, m_i)
            if i == 1:
                break
            grads[f"b{i}"] = dh.sum(axis=1, keepdims=True)  # (k, 1, m_i)
            dh = self._deeper_backward(i, dh, affine_cache, lam3, grads)  # (k, B, m_{i-1})
        B, k, m1 = dh.shape[1], self.k, self.sizes[1]
        dflat = np.ascontiguousarray(dh.transpose(1, 0, 2)).reshape(B, k * m1)  # (B, k·m1)
        grads["b1"] = self._first_layer_step(dflat, affine_cache, lam, eta, opt)
        return grads

    def _deeper_backward(self, i: int, dh, affine_cache, lam3, grads):
        """Layer i >= 2 on the stack: dh (k, B, m_i) -> dx (k, B, m_{i-1}); W{i}'s gradient, its
        L2 term included, into grads. layers.affine_backward cannot take a stack: its `.T`
        reverses all three axes of (k, m, m'); so its three products are written out batched."""
        x, W = affine_cache  # (k, B, m_{i-1}), (k, m_{i-1}, m_i): W not yet stepped
        dW = np.matmul(x.transpose(0, 2, 1), dh)  # (k, m_{i-1}, m_i)
        dW += layers.l2_grad(W, lam3)  # the single net's l2 + xᵀdh for a small W
        grads[f"W{i}"] = dW
        return np.matmul(dh, W.transpose(0, 2, 1))  # (k, B, m_{i-1})

    def _first_layer_step(self, dflat, affine_cache, lam, eta, opt):
        """W1 <- per run (1 - 2λ_j η) W1_j - η Xᵀ dflat_j, in place; returns db1 (k·m1,)."""
        B, k, m1 = dflat.shape[0], self.k, self.sizes[1]
        alpha, beta = opt.weight_step(eta, lam)  # -η, (k,) 1 - 2λ_j η
        W1 = self.params["W1"]
        # The GEMM's β is one scalar; the per-run decay scales each run's column block first
        # (a view: W1 stays the same contiguous array), then the GEMM adds -η Xᵀ dH with β = 1.
        W1.reshape(W1.shape[0], k, m1)[...] *= np.asarray(beta, dtype=W1.dtype)[None, :, None]
        _, dW1, db1 = layers.affine_backward(dflat, affine_cache, need_dx=False,
                                             acc=(W1, alpha, 1.0))
        if dW1 is not W1:  # formed out of place: the step would be lost
            raise RuntimeError("W1 shares memory with the batch or its gradient")
        return db1

    # ------------------------------------------------------------------- batch norm
    # Hidden activations live as (B, k·m): batchnorm's functions reduce over axis 0, so on this
    # layout each column, hence each run, gets its own batch statistics, γ, β and running
    # averages, through the single run's functions unchanged. Deeper products view it as
    # (k, B, m) (a transposed view; np.matmul takes the strides).
    def forward_bn(self, X, masks):
        """`Network.forward_bn` of the stack, training mode: X (B, D) -> scores (k, B, K)."""
        B, k, L = X.shape[0], self.k, self.n_layers
        h = X
        caches = []
        for i in range(1, L):
            m = self.sizes[i]
            if i == 1:
                s, affine_cache = batchnorm.linear_forward(X, self.params["W1"])  # (B, k·m1)
            else:
                x3 = h.reshape(B, k, self.sizes[i - 1]).transpose(1, 0, 2)  # (k, B, m_{i-1})
                s3, affine_cache = batchnorm.linear_forward(x3, self.params[f"W{i}"])  # (k, B, m)
                s = np.ascontiguousarray(s3.transpose(1, 0, 2)).reshape(B, k * m)  # (B, k·m)
            h, bn_cache, (mu, var) = batchnorm.batchnorm_forward(
                s, self.params[f"gamma{i}"], self.params[f"beta{i}"], self.bn_eps)
            batchnorm.update_running_stats(self.state[f"mean{i}"], self.state[f"var{i}"], mu, var,
                                           B, self.bn_momentum)
            h, relu_cache = layers.relu_forward(h)  # (B, k·m)
            drop_cache = None
            if masks is not None:  # the run's (B, m) mask on each run's block of columns
                h3, drop_cache = layers.dropout_forward(h.reshape(B, k, m), masks[i - 1][:, None, :])
                h = h3.reshape(B, k * m)
            caches.append((affine_cache, bn_cache, relu_cache, drop_cache))
        x3 = h.reshape(B, k, self.sizes[L - 1]).transpose(1, 0, 2)  # (k, B, m_{L-1})
        scores, affine_cache = layers.affine_forward(x3, self.params[f"W{L}"], self.params[f"b{L}"])
        caches.append((affine_cache, None, None, None))
        return scores, caches  # (k, B, K)

    def backward_bn(self, dscores, caches, lam, eta, opt) -> dict:
        """`backward` for batch-norm stacks: grads of deeper W, γ, β and b_L; W1 stepped in place."""
        B, k, L = dscores.shape[1], self.k, self.n_layers
        lam3 = lam.astype(self.dtype)[:, None, None]
        grads = {}
        dx = self._deeper_backward(L, dscores, caches[L - 1][0], lam3, grads)
        grads[f"b{L}"] = dscores.sum(axis=1, keepdims=True)  # (k, 1, K)
        dh = np.ascontiguousarray(dx.transpose(1, 0, 2)).reshape(B, -1)  # (B, k·m_{L-1})
        for i in range(L - 1, 0, -1):
            affine_cache, bn_cache, relu_cache, drop_cache = caches[i - 1]
            m = self.sizes[i]
            if drop_cache is not None:
                dh = layers.dropout_backward(dh.reshape(B, k, m), drop_cache).reshape(B, k * m)
            dh = layers.relu_backward(dh, relu_cache)
            ds, grads[f"gamma{i}"], grads[f"beta{i}"] = batchnorm.batchnorm_backward(dh, bn_cache)
            if i == 1:
                self._first_layer_step(np.ascontiguousarray(ds), affine_cache, lam, eta, opt)
                break  # no bias before batch norm: db1 is not a parameter
            ds3 = ds.reshape(B, k, m).transpose(1, 0, 2)  # (k, B, m_i)
            dx = self._deeper_backward(i, ds3, affine_cache, lam3, grads)
            dh = np.ascontiguousarray(dx.transpose(1, 0, 2)).reshape(B, -1)  # (B, k·m_{i-1})
        return grads

    def regularisers(self, lam: np.ndarray) -> np.ndarray:
        """λ_j Σ_i ||W_i^(j)||² per run (k,), before the step. Not layers.l2_penalty per run: it
        would copy each run's non-contiguous column block of W1. One einsum pass over W1 gives
        every column's sum of squares in W1's dtype (as the single run's vdot); asking einsum for
        float64 instead cast W1 on the way and took 11x as long (917 against 81 µs, k=8 linear)."""
        k = self.k
        W1 = self.params["W1"]
        sq = np.einsum("ij,ij->j", W1, W1).reshape(k, -1).sum(axis=1, dtype=np.float64)  # (k,)
        for i in range(2, self.n_layers + 1):
            W = self.params[f"W{i}"]  # (k, m_{i-1}, m_i)
            sq = sq + np.einsum("kab,kab->k", W, W).astype(np.float64)
        return lam * sq


def stacked_step(snet: StackedNetwork, opt: optim.SGD, xb, yb, lams, eta: float, masks=None):
    """One mini-batch step of all k runs: forward, per-run loss, backward, update.
    Returns (losses (k,), regs (k,)) of the batch before the update, as `train.train_step`."""
    lam = per_run_lams(lams)  # (k,)
    scores, caches = snet.forward(xb, masks)  # (k, B, K)
    losses = np.empty(snet.k)
    dscores = np.empty_like(scores)
    for j in range(snet.k):  # the single run's loss, run by run: (B, K) each, cheap
        losses[j], dscores[j], _ = layers.softmax_cross_entropy(scores[j], yb)
    regs = snet.regularisers(lam)
    grads = snet.backward(dscores, caches, lam, eta, opt)
    opt.step(snet.params, grads, eta)
    return losses, regs


STACKED_FIELDS_SHARED = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "lam")


def train_stack(nets: list[Network], X_train, y_train, X_val, y_val, cfgs: list[TrainConfig],
                log=print) -> list[TrainResult | TrainingDiverged]:
    """Train k networks in place as one stack; run j follows cfgs[j], which may differ from the
    others in λ only. Returns per run its TrainResult (as `train.train` returns it) or the
    TrainingDiverged `train.train` would have raised. A diverged run's network holds its
    weights after the step that diverged, as a single run's does.

    result.seconds is the run's share of the stack's loop (loop seconds / k);
    result.eval_seconds its own record-point evaluations."""
    k = len(nets)
    if k == 0 or len(cfgs) != k:
        raise ValueError(f"{k} networks but {len(cfgs)} configs")
    cfg = cfgs[0]
    for c in cfgs:
        diff = [f for f in STACKED_FIELDS_SHARED if getattr(c, f) != getattr(cfg, f)]
        if diff:
            raise ValueError(f"stacked runs may differ in lam only, not in {diff}")
    if cfg.optimizer != "sgd":
        raise ValueError(f"only plain SGD is stacked, not {cfg.optimizer!r}")
    if cfg.snapshot_cycles:
        raise ValueError("snapshots are not stacked (final runs train one by one)")
    memory.reuse_freed_memory()
    n = X_train.shape[0]
    n_s = cfg.n_s or schedule.default_step_size(n, cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else 2 * n_s * cfg.cycles
    record_at = train.record_steps(total, n_s, cfg.points_per_cycle)
    _, drop_rng, aug_rng = train.random_streams(cfg.seed)
    batches = train.shuffle_stream(cfg.seed, n, cfg.batch_size)
    eval_rows = slice(0, min(n, cfg.train_eval_size))
    X_eval, y_eval = X_train[eval_rows], y_train[eval_rows]
    augmenting = cfg.flip or cfg.max_shift > 0

    snet = StackedNetwork(nets)
    opt = optim.make_optimizer("sgd", snet.params)
    alive = list(range(k))  # run index at each stack position
    results: list = [TrainResult(n_s=n_s) for _ in range(k)]
    start_costs = None
    t0 = time.perf_counter()

    def write_back():
        for pos, j in enumerate(alive):
            nets[j].params, nets[j].state = snet.run_params(pos), snet.run_state(pos)

    def record(step):
        write_back()
        eta = schedule.cyclic_lr(step, cfg.eta_min, cfg.eta_max, n_s)
        parts = []
        for j in alive:  # each run scored by its own network: the single run's evaluation code
            t_rec = time.perf_counter()
            tr = nets[j].evaluate(X_eval, y_eval, cfgs[j].lam)
            va = nets[j].evaluate(X_val, y_val, cfgs[j].lam) if X_val is not None else {}
            row = {"step": step, "epoch": step * cfg.batch_size / n, "eta": eta}
            row.update({f"train_{key}": v for key, v in tr.items()})
            row.update({f"val_{key}": v for key, v in va.items()})
            results[j].history.append(row)
            results[j].eval_seconds += time.perf_counter() - t_rec
            parts.append(f"{tr['cost']:.4f}")
        log(f"step {step:>6}/{total} eta {eta:.3e} cost per run {' '.join(parts)} "
            f"elapsed {time.perf_counter() - t0:.1f}s ({len(alive)} runs in the stack)")

    for step in range(total):
        if step in record_at:
            record(step)
        idx = next(batches)
        xb, yb = train.take_batch(X_train, y_train, idx, snet.dtype)
        if augmenting:
            xb = augment.augment_batch(aug_rng, xb, cfg.flip, cfg.max_shift)
        masks = snet.template.draw_masks(drop_rng, xb.shape[0])
        eta = schedule.cyclic_lr(step, cfg.eta_min, cfg.eta_max, n_s)
        losses, regs = stacked_step(snet, opt, xb, yb, [cfgs[j].lam for j in alive], eta, masks)
        costs = losses + regs  # (k,) of the batch before this step's update
        if start_costs is None:
            start_costs = {j: float(c) for j, c in zip(alive, costs)}
        out = []
        for pos, j in enumerate(alive):
            c = float(costs[pos])
            if not math.isfinite(c) or c > cfg.divergence_factor * max(start_costs[j], 1.0):
                out.append(pos)
                results[j] = TrainingDiverged(step, c, start_costs[j], eta, cfgs[j].lam,
                                              cfg.eta_max, cfg.optimizer)
                log(f"run {j} (lam={cfgs[j].lam:.4g}) DIVERGED at step {step}; leaves the stack")
            else:
                results[j].step_costs.append(c)
        if out:
            for pos in out:  # the diverged weights, as a single run leaves them
                nets[alive[pos]].params = snet.run_params(pos)
                nets[alive[pos]].state = snet.run_state(pos)
            keep = [pos for pos in range(len(alive)) if pos not in out]
            alive = [alive[pos] for pos in keep]
            if not alive:
                break
            snet.keep(keep)
    if alive:
        record(total)
    seconds = time.perf_counter() - t0  # as train(): the steps and every record point
    for j in alive:
        r = results[j]
        r.steps = total
        r.seconds = seconds / k
        last = r.history[-1]
        r.final = {key: v for key, v in last.items() if key.startswith(("train_", "val_"))}
    return results

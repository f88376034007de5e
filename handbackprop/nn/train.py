"""Mini-batch training with a cyclical learning rate, L2, optional dropout and augmentation.

Randomness comes from three independent streams spawned from one seed, so
that switching augmentation on does not change the mini-batch order, and the
torch reference can replay the order from the recipe in `shuffle_stream`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from . import augment, memory, optim, schedule
from .network import Network, metrics_from_log_probs


# An SGD step multiplies each weight matrix by (1 - 2*lam*eta) before the loss gradient acts.
# At 2*lam*eta >= 1 that factor is <= 0, so the L2 term alone flips the weights' sign every
# step (and grows them once it passes 2): then lambda is part of the cause, not a cure.
L2_OSCILLATION_FACTOR = 1.0


class TrainingDiverged(RuntimeError):
    """The cost became NaN/inf or rose far above its starting value.

    Fields: ``step``, ``cost`` (the mini-batch cost that tripped the check),
    ``start_cost``, ``eta`` (at that step), ``lam``, ``eta_max``, ``optimizer``,
    ``l2_factor`` (2 * lam * eta) and ``cause``: "l2" when the L2 step factor is
    at least L2_OSCILLATION_FACTOR (lower lambda or eta_max), "step_size"
    otherwise (lower eta_max). Adam normalises its steps, so for it the L2
    factor says nothing and the cause is always "step_size".
    """

    def __init__(self, step: int, cost: float, start_cost: float, eta: float, lam: float,
                 eta_max: float | None = None, optimizer: str = "sgd"):
        self.step, self.cost, self.start_cost = int(step), float(cost), float(start_cost)
        self.eta, self.lam = float(eta), float(lam)
        self.eta_max = self.eta if eta_max is None else float(eta_max)
        self.optimizer = optimizer
        self.l2_factor = 2.0 * self.lam * self.eta
        self.cause = ("l2" if optimizer != "adam" and self.l2_factor >= L2_OSCILLATION_FACTOR
                      else "step_size")
        super().__init__(f"training diverged at step {self.step}: mini-batch cost {self.cost:.4g} "
                         f"(started at {self.start_cost:.4g}) with lambda={self.lam:.4g}, "
                         f"eta={self.eta:.4g}; {self.advice}")

    @property
    def advice(self) -> str:
        """What to change, for this cause."""
        if self.cause == "l2":
            return (f"the L2 step factor 2*lambda*eta = {self.l2_factor:.3g} is >= "
                    f"{L2_OSCILLATION_FACTOR:g}, so the weight decay itself overshoots and the "
                    f"weights oscillate: lower lambda (below 1/(2*eta_max) = "
                    f"{1 / (2 * self.eta_max):.3g}) or eta_max (below 1/(2*lambda) = "
                    f"{1 / (2 * self.lam):.3g})")
        return (f"the L2 step factor 2*lambda*eta = {self.l2_factor:.3g} is small, so the "
                f"gradient step of the loss is too large: lower eta_max (now {self.eta_max:.4g}; "
                f"it diverged at eta={self.eta:.4g})")

    def to_dict(self) -> dict:
        """The fields as a JSON-safe dict (a non-finite cost becomes None, see cost_finite)."""
        finite = math.isfinite(self.cost)
        return {"step": self.step, "cost": self.cost if finite else None, "cost_finite": finite,
                "start_cost": self.start_cost, "eta": self.eta, "lam": self.lam,
                "eta_max": self.eta_max, "optimizer": self.optimizer,
                "l2_factor": self.l2_factor, "cause": self.cause, "advice": self.advice,
                "message": str(self)}

    def __reduce__(self):
        # The default would call TrainingDiverged(message); rebuild from the fields instead.
        return (type(self), (self.step, self.cost, self.start_cost, self.eta, self.lam,
                             self.eta_max, self.optimizer))


@dataclass
class TrainConfig:
    lam: float
    cycles: int = 2
    batch_size: int = 100
    eta_min: float = 1e-5
    eta_max: float = 1e-1
    n_s: int | None = None  # None: 2 * floor(n_train / batch_size)
    points_per_cycle: int = 10
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.9
    flip: bool = False
    max_shift: int = 0
    divergence_factor: float = 10.0
    train_eval_size: int = 10000  # training-set rows scored at each record point
    max_steps: int | None = None  # stop early (gates); None: 2 * n_s * cycles
    # Keep a copy of the weights at each cycle end (the schedule's eta_min minimum): the members
    # of a snapshot ensemble, at no extra training cost.
    snapshot_cycles: bool = False

    def to_dict(self):
        return asdict(self)


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    step_costs: list[float] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    seconds: float = 0.0  # the whole loop: steps and record-point evaluations
    # Of `seconds`, the time spent scoring at record points (history rows), so a run can say what
    # its metrics cost beside its steps (issue 15: at most 10 % of a run).
    eval_seconds: float = 0.0
    steps: int = 0
    n_s: int = 0
    snapshots: list[dict] = field(default_factory=list)  # net.arrays() after cycle 1, 2, ... (copies)


def random_streams(seed: int):
    """(shuffle, dropout, augmentation) generators, independent of each other."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def shuffle_stream(seed: int, n: int, batch_size: int):
    """Yields mini-batch index arrays forever: a fresh permutation each epoch,
    consecutive slices of it as batches (the last one may be smaller)."""
    rng = random_streams(seed)[0]
    while True:
        perm = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield perm[start:start + batch_size]


def take_batch(X, y, idx, dtype):
    """Rows idx of X as dtype (B, D), one gather; and their labels (B,)."""
    return np.asarray(X[idx], dtype=dtype), y[idx]


def train_step(net: Network, opt, xb, yb, lam: float, eta: float, masks=None):
    """One mini-batch step: forward, backward, update. Returns (loss, reg) of the batch before
    the update. With plain SGD each weight's update is its gradient GEMM itself
    (`SGD.weight_step`): W <- (1 - 2λη) W - η xᵀdh, one pass over W instead of three (the L2
    gradient, the GEMM, the update); the optimiser then steps the remaining parameters."""
    weight_step = opt.weight_step(eta, lam)
    loss, reg, grads = net.cost_and_grads(xb, yb, lam, masks, weight_step=weight_step)
    opt.step(net.params, grads, eta)
    return loss, reg


def record_steps(total_steps: int, n_s: int, points_per_cycle: int) -> set[int]:
    """Steps after which metrics are recorded: evenly spaced per cycle, plus the first and last."""
    every = max(1, (2 * n_s) // points_per_cycle)
    return set(range(0, total_steps + 1, every)) | {0, total_steps}


def train(net: Network, X_train, y_train, X_val, y_val, cfg: TrainConfig, log=print,
          eta_at=None, on_step=None) -> TrainResult:
    """Train `net` in place. Two hooks for the learning-rate range test (study/lr_range.py), so it
    runs this very loop rather than a copy: `eta_at(step)` replaces the cyclical schedule, and
    `on_step(step, loss, cost, eta)` is called after every update (it may raise to end the run)."""
    memory.reuse_freed_memory()  # no page faults for the step's gradient-sized temporaries
    n = X_train.shape[0]
    n_s = cfg.n_s or schedule.default_step_size(n, cfg.batch_size)
    total = cfg.max_steps if cfg.max_steps is not None else 2 * n_s * cfg.cycles
    record_at = record_steps(total, n_s, cfg.points_per_cycle)
    _, drop_rng, aug_rng = random_streams(cfg.seed)
    batches = shuffle_stream(cfg.seed, n, cfg.batch_size)
    opt = optim.make_optimizer(cfg.optimizer, net.params, cfg.momentum)
    eval_rows = slice(0, min(n, cfg.train_eval_size))
    X_eval, y_eval = X_train[eval_rows], y_train[eval_rows]
    augmenting = cfg.flip or cfg.max_shift > 0

    result = TrainResult(n_s=n_s)
    start_cost = None

    def eta_of(step):
        if eta_at is not None:
            return float(eta_at(step))
        return schedule.cyclic_lr(step, cfg.eta_min, cfg.eta_max, n_s)
    t0 = time.perf_counter()

    def record(step):
        t_rec = time.perf_counter()
        tr = net.evaluate(X_eval, y_eval, cfg.lam)
        va = net.evaluate(X_val, y_val, cfg.lam) if X_val is not None else {}
        eta = eta_of(step)
        row = {"step": step, "epoch": step * cfg.batch_size / n, "eta": eta}
        row.update({f"train_{k}": v for k, v in tr.items()})
        row.update({f"val_{k}": v for k, v in va.items()})
        result.history.append(row)
        elapsed = time.perf_counter() - t0
        left = elapsed / step * (total - step) if step else float("nan")
        log(f"step {step:>6}/{total} eta {eta:.3e} cost {tr['cost']:.4f} "
            f"train_acc {tr['accuracy']:.4f} val_acc {va.get('accuracy', float('nan')):.4f} "
            f"elapsed {elapsed:.1f}s left {left:.1f}s")
        result.eval_seconds += time.perf_counter() - t_rec

    for step in range(total):
        if step in record_at:
            record(step)
        idx = next(batches)
        xb, yb = take_batch(X_train, y_train, idx, net.dtype)
        if augmenting:
            xb = augment.augment_batch(aug_rng, xb, cfg.flip, cfg.max_shift)
        masks = net.draw_masks(drop_rng, xb.shape[0])
        eta = eta_of(step)
        loss, reg = train_step(net, opt, xb, yb, cfg.lam, eta, masks)
        cost = loss + reg  # of the batch before this step's update
        if start_cost is None:
            start_cost = cost
        if not math.isfinite(cost) or cost > cfg.divergence_factor * max(start_cost, 1.0):
            # the weights are discarded: the step that just ran from this cost is not undone
            raise TrainingDiverged(step, cost, start_cost, eta, cfg.lam, cfg.eta_max, cfg.optimizer)
        result.step_costs.append(cost)
        if on_step is not None:
            on_step(step, loss, cost, eta)
        if cfg.snapshot_cycles and (step + 1) % (2 * n_s) == 0:
            # parameters and, with batch norm, the running statistics the network evaluates with
            result.snapshots.append({k: v.copy() for k, v in net.arrays().items()})
    record(total)
    result.steps = total
    result.seconds = time.perf_counter() - t0
    last = result.history[-1]
    result.final = {k: v for k, v in last.items() if k.startswith(("train_", "val_"))}
    return result


def ensemble_metrics(nets: list[Network], X, y, lam: float) -> tuple[dict, np.ndarray]:
    """Metrics of the average softmax over one or more networks, and their predictions.

    The average is taken of probabilities, in log space (log mean_k p_k = logsumexp_k log p_k
    - log K), so a member that rules a class out does not underflow the ensemble's loss."""
    log_probs = np.stack([n.predict_log_proba(X) for n in nets])  # (M, N, K)
    top = log_probs.max(axis=0)
    mean_log = top + np.log(np.exp(log_probs - top).mean(axis=0))  # (N, K)
    reg = nets[0].regulariser(lam) if len(nets) == 1 else float("nan")
    return metrics_from_log_probs(mean_log, y, reg), mean_log.argmax(axis=1)

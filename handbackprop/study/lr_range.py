"""The learning-rate range test (Smith 2015, section 3.3): one short run with η rising from
`eta_low` to `eta_high`, recording the mini-batch loss and the validation accuracy against η;
the cyclical schedule's bounds are read off that curve by `choose_bounds`.

η rises log-linearly (evenly spaced in log10 η, one value per update step): the interesting
region spans several decades (1e-5 to 1), and a linear ramp would spend almost every step
above 0.1. The run is the verified training loop itself (nn/train.py, through its `eta_at` and
`on_step` hooks), with the model's own architecture, dropout, augmentation, optimiser and batch
size, at a fixed λ (`lr_range.lam`).
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import time

from pathlib import Path

import numpy as np

from ..data.splits import load_split
from ..nn.network import build_network
from ..nn.train import TrainingDiverged, train
from .plan import range_steps
from .runs import train_config

CURVE_COLUMNS = ("step", "epoch", "eta", "loss_raw", "loss_smoothed", "val_accuracy", "val_loss")


def range_schedule(eta_low: float, eta_high: float, steps: int) -> np.ndarray:
    """η of every update step (steps,): eta_low at the first, eta_high at the last, evenly
    spaced in log η in between."""
    if steps < 2:
        raise ValueError(f"a range test needs at least 2 steps, got {steps}")
    return np.geomspace(float(eta_low), float(eta_high), int(steps))


def moving_average(x, window: int) -> np.ndarray:
    """Centred moving average over `window` points (shrinking at the ends, so the output has
    the input's length and stays aligned with its η)."""
    x = np.asarray(x, dtype=float)
    half_lo, half_hi = (window - 1) // 2, window // 2
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = x[max(0, i - half_lo):i + half_hi + 1].mean()
    return out


def rule_text(smooth: int, max_fraction: float, min_fraction: float) -> str:
    return (f"η_max = {max_fraction:g} × the η at which the validation accuracy, smoothed by a "
            f"centred moving average over {smooth} records, peaks; η_min = {min_fraction:g} × η_max")


def choose_bounds(etas, val_acc, smooth: int = 5, max_fraction: float = 0.5,
                  min_fraction: float = 0.01) -> dict:
    """The schedule's bounds from a range-test curve (η rising, validation accuracy at each).

    Smooth the accuracy (centred moving average over `smooth` records), take the η of its
    peak (the first, if tied); η_max = max_fraction × that η (below the peak: the long runs
    spend many steps near η_max, where the short test was still improving), η_min =
    min_fraction × η_max. `peak_at_edge` says the peak is the curve's first or last record:
    the range did not bracket it, so the bound is a limit of the test, not of the model.
    """
    etas, acc = np.asarray(etas, dtype=float), np.asarray(val_acc, dtype=float)
    if etas.shape != acc.shape or etas.size == 0:
        raise ValueError(f"etas {etas.shape} and val_acc {acc.shape} must be equal, non-empty")
    if np.any(np.diff(etas) <= 0):
        raise ValueError("the range test's η must rise at every record")
    if not np.all(np.isfinite(acc)):
        raise ValueError("validation accuracy must be finite at every record")
    smoothed = moving_average(acc, int(smooth))
    i = int(np.argmax(smoothed))
    eta_max = max_fraction * float(etas[i])
    edge = "low" if i == 0 else "high" if i == etas.size - 1 else None
    return {"eta_max": eta_max, "eta_min": min_fraction * eta_max,
            "peak_eta": float(etas[i]), "peak_index": i,
            "peak_accuracy": float(smoothed[i]), "peak_accuracy_raw": float(acc[i]),
            "peak_at_edge": edge is not None, "edge": edge,
            "smooth": int(smooth), "max_fraction": float(max_fraction),
            "min_fraction": float(min_fraction), "smoothed_val_accuracy": smoothed.tolist(),
            "rule": rule_text(int(smooth), max_fraction, min_fraction)}


class _Diverged(Exception):
    """Raised by the step hook to end the range test once its smoothed loss has diverged."""


def range_test(net, X_train, y_train, X_val, y_val, spec: dict, settings: dict, log=print) -> dict:
    """Run one range test on arrays; returns the curve, where it stopped, and the bounds.

    Every `record_every` steps (and at the last one) a record holds the step's η, its
    mini-batch loss (raw, and a bias-corrected EMA with β = `ema_beta`) and the accuracy and
    loss of the network just updated on the first `val_rows` validation rows. The run stops
    once the smoothed loss exceeds `divergence_factor` × its minimum so far (that step is
    recorded too), or when the training loop's own divergence check trips.
    """
    s = settings
    n = X_train.shape[0]
    steps = range_steps(s, n, spec["batch_size"])
    etas = range_schedule(s["eta_low"], s["eta_high"], steps)
    # The cyclical schedule is replaced; records are the hook's, so the loop's own are two cheap ones.
    cfg = dataclasses.replace(
        train_config(spec, float(s["lam"]), 1, int(s["seed"]), n),
        eta_min=float(etas[0]), eta_max=float(etas[-1]), n_s=steps, points_per_cycle=1,
        max_steps=steps, train_eval_size=int(spec["batch_size"]))
    Xv = np.asarray(X_val[:int(s["val_rows"])], dtype=net.dtype)  # (V, D), read once
    yv = np.asarray(y_val[:int(s["val_rows"])])
    records, state = [], {"ema": 0.0, "k": 0, "min": math.inf, "stop": None}
    beta, every = float(s["ema_beta"]), int(s["record_every"])

    def record(step, eta, loss, smoothed):
        va = net.evaluate(Xv, yv, float(s["lam"]))
        records.append({"step": int(step), "epoch": (step + 1) * spec["batch_size"] / n, "eta": float(eta),
                        "loss_raw": float(loss), "loss_smoothed": float(smoothed),
                        "val_accuracy": float(va["accuracy"]), "val_loss": float(va["loss"])})
        log(f"step {step:>6}/{steps} eta {eta:.3e} loss {loss:.4f} smoothed {smoothed:.4f} "
            f"val_acc {va['accuracy']:.4f}")

    def on_step(step, loss, cost, eta):
        state["k"] += 1
        state["ema"] = beta * state["ema"] + (1 - beta) * loss
        smoothed = state["ema"] / (1 - beta ** state["k"])
        state["min"] = min(state["min"], smoothed)
        diverged = not math.isfinite(smoothed) or smoothed > s["divergence_factor"] * state["min"]
        if (step + 1) % every == 0 or step == steps - 1 or diverged:
            record(step, eta, loss, smoothed)
        if diverged:
            state["stop"] = {"step": int(step), "eta": float(eta), "loss_smoothed": float(smoothed),
                             "min_loss_smoothed": float(state["min"]),
                             "reason": f"smoothed loss {smoothed:.4g} > {s['divergence_factor']:g} × "
                                       f"its minimum {state['min']:.4g}"}
            raise _Diverged

    t0 = time.perf_counter()
    # (the loop evaluates once more after its last step, at step `steps`: it keeps the last η)
    try:
        train(net, X_train, y_train, None, None, cfg, log=lambda *a: None, eta_at=lambda i: etas[min(i, steps - 1)],
              on_step=on_step)
    except _Diverged:
        log(f"stopped at step {state['stop']['step']}: {state['stop']['reason']}")
    except TrainingDiverged as err:  # a single mini-batch loss blew up before the smoothed one did
        state["stop"] = {"step": err.step, "eta": err.eta, "loss_smoothed": None,
                         "min_loss_smoothed": float(state["min"]),
                         "reason": f"the training loop's divergence check: mini-batch cost {err.cost:.4g} "
                                   f"(started at {err.start_cost:.4g})"}
        log(f"stopped at step {err.step}: {state['stop']['reason']}")
    seconds = time.perf_counter() - t0
    if not records:
        raise RuntimeError("the range test stopped before its first record; lower lr_range.eta_low "
                           "or lr_range.record_every")
    bounds = choose_bounds([r["eta"] for r in records], [r["val_accuracy"] for r in records],
                           s["smooth"], s["max_fraction"], s["min_fraction"])
    return {"settings": dict(s), "spec": spec, "n_train": int(n), "n_val_rows": int(yv.size),
            "steps_planned": int(steps), "steps_done": (state["stop"]["step"] + 1) if state["stop"] else int(steps),
            "stopped_early": state["stop"] is not None, "stop": state["stop"],
            "schedule": "log-linear", "records": records, "bounds": bounds, "seconds": seconds}


def run(split_dir, spec: dict, settings: dict, dtype: str, model: str = "", log=print) -> dict:
    """The range test of one model on a preprocessed split (the search split in the workflow)."""
    data = load_split(split_dir)
    X = data["X_train"]
    net = build_network(X.shape[1], list(spec["hidden"]), 10, spec.get("dropout", 0.0), dtype,
                        int(settings["seed"]), batch_norm=spec.get("batch_norm", False), init=spec.get("init"))
    log(f"range test {model or spec['hidden']}: eta {settings['eta_low']:g} -> {settings['eta_high']:g} over "
        f"{settings['epochs']} epoch(s), lam={settings['lam']:g}, n_train={X.shape[0]} dtype={dtype}")
    out = range_test(net, X, data["y_train"], data["X_val"], data["y_val"], spec, settings, log=log)
    b = out["bounds"]
    log(f"peak eta {b['peak_eta']:.4g} (smoothed val acc {b['peak_accuracy']:.4f}"
        f"{', at the edge of the range' if b['peak_at_edge'] else ''}): eta_max {b['eta_max']:.4g}, "
        f"eta_min {b['eta_min']:.4g}")
    # what the bounds were chosen on, recorded like every table's choice
    chose_on = {"split": Path(split_dir).name, "part": "val", "field": "val_accuracy",
                "rows": int(min(settings["val_rows"], len(data["y_val"])))}
    return {"model": model, "dtype": dtype, **out, "chose_on": chose_on}


def curve_csv(result: dict) -> str:
    """The curve as CSV text, one row per record."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in result["records"]:
        w.writerow({k: repr(r[k]) if isinstance(r[k], float) else r[k] for k in CURVE_COLUMNS})
    return buf.getvalue()

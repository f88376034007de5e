"""Metrics provenance: a run's saved weights, rescored, must give the figures its metrics.json reports.

A bug between a trained network and a reported number (the wrong rows scored, a metric taken
from a subset, a stale file) passes every gate: the gates verify the maths, not the bookkeeping.
So the audit reloads each run's ``weights.npz``, rebuilds the network from the run's recorded
``spec`` and ``dtype`` (the same code the ensembles use, ``study.tables.networks_from``) and
scores it again on the split the run names:

- ``train_*`` on ALL training rows (the run's history scores a subset; its end scores all),
- ``val_*`` on the validation rows, ``test_*`` on the test rows when the run recorded them.

Same code, same dtype, same BLAS thread count (the run's recorded ``threads``) and the same
row order give bit-identical floats, so the comparison is exact: any difference is a finding.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from ..study.tables import networks_from

PARTS = ("train", "val", "test")  # metrics.json prefixes, each scored on its own rows


def recorded_fields(metrics: dict) -> dict[str, float]:
    """Every train_*, val_* and test_* number of a run (its confusion matrix is not a figure here)."""
    return {k: v for k, v in metrics.items()
            if k.split("_", 1)[0] in PARTS and "_" in k and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def rescore(run_dir, metrics: dict, split: dict) -> dict[str, float]:
    """{field: value} recomputed from the run's weights for every part the run recorded.

    split: load_split()'s dict of the split the run was trained on.
    """
    (net,) = networks_from([Path(run_dir) / "weights.npz"], metrics["spec"], metrics["dtype"])
    wanted = {k.split("_", 1)[0] for k in recorded_fields(metrics)}
    out = {}
    # The run's own thread count: BLAS may split a reduction differently with more threads.
    with threadpool_limits(limits=int(metrics.get("threads") or 1)):
        for part in PARTS:
            if part in wanted:
                scores = net.evaluate(split[f"X_{part}"], split[f"y_{part}"], metrics["lam"])
                out.update({f"{part}_{k}": v for k, v in scores.items()})
    return out


def same(a, b) -> bool:
    """Exact float equality; NaN equals NaN (a quantity undefined in both)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(metrics: dict, recomputed: dict) -> list[dict]:
    """The recorded figures that the rescored weights do not reproduce (empty: all match)."""
    out = []
    for field, value in sorted(recorded_fields(metrics).items()):
        got = recomputed.get(field)
        if got is None or not same(float(value), float(got)):
            out.append({"field": field, "recorded": value, "rescored": got})
    return out


def split_mismatch(metrics: dict, split: dict, split_name: str) -> str | None:
    """Why the run cannot have been trained on this split, or None."""
    for key, part in (("n_train", "y_train"), ("n_val", "y_val")):
        n = int(np.asarray(split[part]).shape[0])
        if key in metrics and int(metrics[key]) != n:
            return f"{key} = {metrics[key]}, but the {split_name} split has {n} {part[2:]} rows"
    return None

"""The files of a training run and of a table of runs, written atomically (see atomic.py).

A run folder holds ``history.csv``, ``weights.npz`` and ``metrics.json``,
written in that order: the presence of metrics.json means the run is complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json


def read_json(path):
    return json.loads(Path(path).read_text())


def read_runs(paths) -> list[dict]:
    """metrics.json of each run, in the order given."""
    return [read_json(p) for p in paths]


def save_history(path, history: list[dict]):
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)


def save_weights(path, params: dict):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **params)


def load_weights(path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def write_run(outputs: dict, net, result, metrics: dict):
    """history.csv and weights.npz first, metrics.json last: its presence means the run is complete."""
    save_history(outputs["history"], result.history)
    if "weights" in outputs:
        save_weights(outputs["weights"], net.arrays())  # parameters and running statistics
    write_json(outputs["metrics"], metrics)


def write_table(table: dict, json_path, csv_path):
    """A table of runs as CSV (its rows) and JSON (everything), the JSON last."""
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(table["rows"]).to_csv(tmp, index=False)
    write_json(json_path, table)

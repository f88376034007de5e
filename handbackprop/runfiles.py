"""The files of a training run and of a table of runs, written atomically (see atomic.py).

A run folder holds ``history.csv``, ``weights.npz`` (and, for final runs, ``snapshots.npz``:
the weights at each cycle end) and ``metrics.json``, written in that order: the presence of
metrics.json means the run is complete.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json


def read_json(path, key: str | None = None):
    """A JSON file's content (or its `key`); a truncated or hand-broken file, or a missing key,
    raises ValueError naming the file, not a bare JSONDecodeError/KeyError."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno}); "
                         "delete it and rerun to rebuild it") from None
    if key is None:
        return data
    if not isinstance(data, dict) or key not in data:
        raise ValueError(f"{path}: has no {key!r}; delete it and rerun to rebuild it")
    return data[key]


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


def save_snapshots(path, snapshots: list[dict]):
    """The weights at each cycle end in one file, keys ``cycle1/W1``, ``cycle1/b1``, ..."""
    if not snapshots:
        raise ValueError(f"no cycle-end snapshots to write to {path}: was the run trained with "
                         f"snapshot_cycles=True?")
    save_weights(path, {f"cycle{c}/{k}": v for c, params in enumerate(snapshots, start=1)
                        for k, v in params.items()})


def load_snapshots(path) -> list[dict]:
    """[params after cycle 1, params after cycle 2, ...] from a snapshots.npz."""
    by_cycle: dict[int, dict] = {}
    for key, v in load_weights(path).items():
        cycle, name = key.split("/", 1)
        by_cycle.setdefault(int(cycle.removeprefix("cycle")), {})[name] = v
    if sorted(by_cycle) != list(range(1, len(by_cycle) + 1)):
        raise ValueError(f"{path}: cycles {sorted(by_cycle)} are not 1..{len(by_cycle)}")
    return [by_cycle[c] for c in sorted(by_cycle)]


def write_run(outputs: dict, net, result, metrics: dict):
    """history.csv and the weights first, metrics.json last: its presence means the run is complete."""
    save_history(outputs["history"], result.history)
    if "weights" in outputs:
        save_weights(outputs["weights"], net.arrays())  # parameters and running statistics
    if "snapshots" in outputs:
        save_snapshots(outputs["snapshots"], result.snapshots)
    write_json(outputs["metrics"], metrics)


def write_table(table: dict, json_path, csv_path):
    """A table of runs as CSV (its rows) and JSON (everything), the JSON last."""
    with atomic_path(csv_path) as tmp:
        pd.DataFrame(table["rows"]).to_csv(tmp, index=False)
    write_json(json_path, table)

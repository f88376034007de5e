"""Two results folders compared file by file, as the same code and data should make them:
JSON equal after dropping wall-clock keys and the working directory, CSV equal without its timing
columns, arrays equal by name, dtype, shape and bytes, anything else byte for byte.

Shared by the SLURM test (a cluster run against a local one) and the consistency scenarios (a
recovered run against a clean one)."""
from __future__ import annotations

import csv
import difflib
import io
import json
from pathlib import Path

import numpy as np

from handbackprop.atomic import LOCK_NAME

# Keys and columns that legitimately differ between two runs of the same code and data.
TIMING_KEYS = frozenset({"seconds", "elapsed_s", "seconds_mean", "eval_seconds", "step_seconds",
                         "eval_fraction"})
TIMING_COLUMNS = frozenset({"seconds"})


def canonical_json(obj, workdirs: tuple[str, ...], ignore=TIMING_KEYS):
    if isinstance(obj, dict):
        return {k: canonical_json(v, workdirs, ignore) for k, v in obj.items() if k not in ignore}
    if isinstance(obj, list):
        return [canonical_json(v, workdirs, ignore) for v in obj]
    if isinstance(obj, str):
        for w in workdirs:
            obj = obj.replace(w, "<WORKDIR>")
        return obj
    return obj


def json_text(path: Path, workdirs, ignore=TIMING_KEYS) -> str:
    """`workdirs`: the working directories whose paths may appear in it (a copied run holds its
    original's), each replaced by a placeholder."""
    obj = canonical_json(json.loads(path.read_text()), tuple(str(w.resolve()) for w in workdirs), ignore)
    # repr-exact floats: equal text means bit-identical float64 values
    return json.dumps(obj, sort_keys=True, indent=1, allow_nan=True)


def csv_text(path: Path, ignore=TIMING_COLUMNS) -> str:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, name in enumerate(rows[0]) if name not in ignore] if rows else []
    return "\n".join(",".join(r[i] for i in keep) for r in rows)


def arrays(path: Path) -> dict:
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.ndarray):
        return {"": loaded}
    with loaded:  # an .npz's zip members carry their write time: compare the arrays
        return {k: loaded[k] for k in loaded.files}


def outputs(root: Path, skip_dirs=frozenset({"logs", "benchmarks"}), skip_suffixes=()) -> dict[str, Path]:
    """Every file below `root` by relative path, but for `skip_dirs` at the top, files ending in
    `skip_suffixes` and the results folder's lock (it names its current holder)."""
    return {str(p.relative_to(root)): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in skip_dirs
            and p.name != LOCK_NAME and not p.name.endswith(tuple(skip_suffixes))}


def difference(rel: str, a: Path, wa: Path, b: Path, wb: Path, ignore_keys=TIMING_KEYS,
               ignore_columns=TIMING_COLUMNS, names=("a", "b")) -> str | None:
    """None when file `a` (of working directory `wa`) and `b` (of `wb`) hold the same results,
    else what differs."""
    if rel.endswith(".json"):
        ta, tb = json_text(a, (wa, wb), ignore_keys), json_text(b, (wb, wa), ignore_keys)
        if ta != tb:
            diff = difflib.unified_diff(ta.splitlines(), tb.splitlines(), *names, lineterm="", n=1)
            return "\n".join(list(diff)[:30])
    elif rel.endswith(".csv"):
        if csv_text(a, ignore_columns) != csv_text(b, ignore_columns):
            return "CSV content differs"
    elif rel.endswith((".npy", ".npz")):
        xa, xb = arrays(a), arrays(b)
        if xa.keys() != xb.keys():
            return f"arrays {sorted(xa)} != {sorted(xb)}"
        for k in xa:
            u, v = xa[k], xb[k]
            if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                n = int(np.sum(u != v)) if u.shape == v.shape else -1
                return f"array {k!r}: {u.dtype}{u.shape} vs {v.dtype}{v.shape}, {n} values differ"
    elif a.read_bytes() != b.read_bytes():  # .md tables, .md5, the synthetic tarballs
        return "bytes differ"
    return None

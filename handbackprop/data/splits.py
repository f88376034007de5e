"""Load a preprocessed dataset folder (the output of handbackprop.data.preprocess)."""
import json
from pathlib import Path

import numpy as np

__all__ = ["SPLIT_FILES", "ARRAY_NAMES", "load_split"]

ARRAY_NAMES = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
# Everything preprocess writes; stats.json last because it marks the folder complete.
SPLIT_FILES = tuple(f"{name}.npy" for name in ARRAY_NAMES) + ("norm.npz", "stats.json")


def load_split(directory, dtype=np.float32, mmap=True):
    """Return X_train, y_train, X_val, y_val, X_test, y_test and label_names from ``directory``.

    X arrays are memory-mapped read-only when ``mmap`` and ``dtype`` is float32
    (the stored type), so many jobs share one page-cached copy; otherwise they
    are loaded and cast once to ``dtype``. Labels are int64. Raises
    FileNotFoundError naming any missing file.
    """
    directory = Path(directory)
    missing = [name for name in SPLIT_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory}: missing preprocessed file(s) {', '.join(missing)} "
            "(run the preprocess step first)")
    dtype = np.dtype(dtype)
    mmap_mode = "r" if mmap and dtype == np.float32 else None
    out = {}
    for name in ARRAY_NAMES:
        path = directory / f"{name}.npy"
        if name.startswith("X_"):
            arr = np.load(path, mmap_mode=mmap_mode)  # (N, 3072)
            out[name] = arr if arr.dtype == dtype else arr.astype(dtype)
        else:
            out[name] = np.load(path, mmap_mode="r" if mmap else None)  # (N,) int64
    stats = json.loads((directory / "stats.json").read_text(encoding="utf-8"))
    out["label_names"] = list(stats["label_names"])
    return out

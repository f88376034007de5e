"""Load a preprocessed dataset folder (the output of handbackprop.data.preprocess)."""
import json
from pathlib import Path

import numpy as np

__all__ = ["SPLIT_FILES", "ARRAY_NAMES", "TEST_ARRAYS", "load_split", "split_files", "Split",
           "TestWithheld"]

ARRAY_NAMES = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
TEST_ARRAYS = ("X_test", "y_test")
# Everything preprocess writes; stats.json last because it marks the folder complete.
SPLIT_FILES = tuple(f"{name}.npy" for name in ARRAY_NAMES) + ("norm.npz", "stats.json")


def split_files(with_test: bool = True) -> tuple[str, ...]:
    """The files of a split folder: the search split has no test arrays."""
    return tuple(f for f in SPLIT_FILES if with_test or f[:-4] not in TEST_ARRAYS)


class TestWithheld(KeyError):
    """Code that chooses tried to read test rows from a split that has none."""


class Split(dict):
    """load_split's arrays; asking a split without test rows for them names the rule broken."""

    def __missing__(self, key):
        if key in TEST_ARRAYS:
            raise TestWithheld(f"{key}: this split has no test rows (the search split withholds "
                               "them: a search, a recipe or a range test chooses on validation "
                               "rows only)")
        raise KeyError(key)


def load_split(directory, dtype=np.float32, mmap=True):
    """Return X_train, y_train, X_val, y_val, X_test, y_test and label_names from ``directory``
(no X_test, y_test for a split that withholds them: asking raises TestWithheld).

    X arrays are memory-mapped read-only when ``mmap`` and ``dtype`` is float32
    (the stored type), so many jobs share one page-cached copy; otherwise they
    are loaded and cast once to ``dtype``. Labels are int64. Raises
    FileNotFoundError naming any missing file.
    """
    directory = Path(directory)
    stats_path = directory / "stats.json"
    # The split says whether it withholds its test rows; a lost test file is still missing.
    with_test = not (stats_path.is_file() and json.loads(stats_path.read_text()).get("test_withheld"))
    missing = [name for name in split_files(with_test) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{directory}: missing preprocessed file(s) {', '.join(missing)} "
            "(run the preprocess step first)")
    dtype = np.dtype(dtype)
    mmap_mode = "r" if mmap and dtype == np.float32 else None
    out = Split()
    for name in ARRAY_NAMES if with_test else tuple(n for n in ARRAY_NAMES if n not in TEST_ARRAYS):
        path = directory / f"{name}.npy"
        if name.startswith("X_"):
            arr = np.load(path, mmap_mode=mmap_mode)  # (N, 3072)
            out[name] = arr if arr.dtype == dtype else arr.astype(dtype)
        else:
            out[name] = np.load(path, mmap_mode="r" if mmap else None)  # (N,) int64
    stats = json.loads((directory / "stats.json").read_text(encoding="utf-8"))
    out["label_names"] = list(stats["label_names"])
    return out

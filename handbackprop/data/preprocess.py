"""Turn the CIFAR-10 tarball into normalised, memory-mappable train/val/test arrays.

The training images are split into train and validation with a seeded
permutation, and normalised with the per-feature mean and std of the TRAINING
split only, so no statistic ever sees validation or test pixels. Outputs are
uncompressed .npy files (many jobs can memory-map them), each written
atomically, and ``stats.json`` is written last: its presence means the folder
is complete.
"""
import time
from pathlib import Path

import numpy as np

from handbackprop.atomic import atomic_path, save_npy, write_json
from handbackprop.data.cifar_format import read_cifar_tarball

__all__ = ["preprocess", "split_indices", "feature_stats", "PIXEL_ORDER"]

PIXEL_ORDER = ("each row holds 3072 values: the 32x32 red plane, then green, then blue, "
               "each plane row-major (CIFAR channel-major order)")
_CHUNK_ROWS = 4096  # bounds float64 temporaries to ~100 MB whatever the dataset size


def split_indices(n, n_val, seed):
    """Seeded train/validation split of ``n`` rows: (train_idx, val_idx), each sorted int64.

    The validation set is the first ``n_val`` entries of
    ``np.random.default_rng(seed).permutation(n)``; sorting keeps each split
    in the original batch order so reading it stays sequential.
    """
    n_val = int(n_val)
    if n_val < 1 or n_val >= n:
        raise ValueError(
            f"n_val must be between 1 and {n - 1} (the number of training images minus one); "
            f"got {n_val} with {n} training images")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def feature_stats(X, idx):
    """Per-feature mean and std (ddof 0) in float64 over rows ``idx`` of uint8 ``X``.

    Two passes over row chunks: numerically stable like np.std, without
    materialising a float64 copy of the whole split. std == 0 is replaced by 1
    so constant pixels normalise to 0 instead of NaN.
    """
    n, d = len(idx), X.shape[1]
    total = np.zeros(d)
    for start in range(0, n, _CHUNK_ROWS):
        total += X[idx[start:start + _CHUNK_ROWS]].sum(axis=0, dtype=np.float64)
    mean = total / n                                                  # (3072,)
    sq = np.zeros(d)
    for start in range(0, n, _CHUNK_ROWS):
        diff = X[idx[start:start + _CHUNK_ROWS]].astype(np.float64) - mean
        sq += np.einsum("ij,ij->j", diff, diff)
    std = np.sqrt(sq / n)                                             # (3072,)
    std[std == 0] = 1.0
    return mean, std


def _save_normalised(path, X, idx, mean, std):
    """Write ((X[idx] - mean) / std) as float32 .npy to ``path`` atomically, chunk by chunk."""
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32,
                                        shape=(len(idx), X.shape[1]))  # (n, 3072)
        for start in range(0, len(idx), _CHUNK_ROWS):
            rows = idx[start:start + _CHUNK_ROWS]
            out[start:start + len(rows)] = (X[rows] - mean) / std
        out.flush()
        del out  # close the mapping before the rename


def _summary(v):
    """Min / mean / max of a statistics vector, for stats.json."""
    return {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}


def _class_counts(y, n_classes):
    """Images per class as a plain list of ints."""
    return np.bincount(y, minlength=n_classes).tolist()


def preprocess(tarball, out_dir, n_val, seed, source, md5, log=print, with_test=True):
    """Read ``tarball``, split, normalise and write the dataset into ``out_dir``.

    Writes X_train.npy, y_train.npy, X_val.npy, y_val.npy, X_test.npy,
    y_test.npy (X float32 (N, 3072) C-order, y int64), norm.npz (mean, std
    float64 (3072,)) and finally stats.json. ``source`` and ``md5`` are
    provenance recorded in stats.json. Returns the stats dict.

    ``with_test=False`` (the search split) writes no test arrays at all: every job that chooses
    (λ searches, the recipe search, the range tests) reads this split, and a selection cannot
    look at figures that do not exist.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats_path = out_dir / "stats.json"
    # Drop the completion marker first so a run that dies midway cannot look complete.
    stats_path.unlink(missing_ok=True)

    log(f"reading {tarball}")
    data = read_cifar_tarball(tarball)
    X, y = data["X_train"], data["y_train"]                           # (N, 3072) uint8, (N,)
    n_classes = len(data["label_names"])
    train_idx, val_idx = split_indices(len(y), n_val, seed)
    log(f"{len(y)} training images -> {len(train_idx)} train + {len(val_idx)} validation "
        f"(seed {seed}); {len(data['y_test'])} test")

    mean, std = feature_stats(X, train_idx)
    log(f"normalisation from train split only: mean in [{mean.min():.2f}, {mean.max():.2f}], "
        f"std in [{std.min():.2f}, {std.max():.2f}]")

    all_test = np.arange(len(data["y_test"]) if with_test else 0)
    parts = [("train", X, train_idx), ("val", X, val_idx)]
    parts += [("test", data["X_test"], all_test)] if with_test else []
    for name, Xs, idx in parts:
        _save_normalised(out_dir / f"X_{name}.npy", Xs, idx, mean, std)
    save_npy(out_dir / "y_train.npy", y[train_idx].astype(np.int64))
    save_npy(out_dir / "y_val.npy", y[val_idx].astype(np.int64))
    if with_test:
        save_npy(out_dir / "y_test.npy", data["y_test"].astype(np.int64))
    else:  # test arrays a former version wrote here must not outlive the change
        for name in ("X_test.npy", "y_test.npy"):
            (out_dir / name).unlink(missing_ok=True)
    with atomic_path(out_dir / "norm.npz") as tmp:
        with open(tmp, "wb") as fh:  # a handle, because np.savez appends .npz to names
            np.savez(fh, mean=mean, std=std)

    stats = {
        "source": source,
        "md5": md5,
        "n_train": int(len(train_idx)),
        "n_val": int(len(val_idx)),
        "n_test": int(len(all_test)),
        "class_counts": {
            "train": _class_counts(y[train_idx], n_classes),
            "val": _class_counts(y[val_idx], n_classes),
            "test": _class_counts(data["y_test"], n_classes) if with_test else [],
        },
        "test_withheld": not with_test,
        "label_names": data["label_names"],
        "batch_counts": data["batch_counts"],
        "n_features": int(X.shape[1]),
        "dtype": "float32",
        "label_dtype": "int64",
        "seed": seed,
        "pixel_order": PIXEL_ORDER,
        "normalisation": ("(x - mean) / std per feature; mean and std (ddof 0, float64) "
                          "from the train split only; std == 0 replaced by 1"),
        "mean_summary": _summary(mean),
        "std_summary": _summary(std),
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    write_json(stats_path, stats)
    log(f"wrote {out_dir} in {stats['elapsed_s']:.1f} s")
    return stats

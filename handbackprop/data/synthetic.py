"""Write a small synthetic CIFAR-10-format tarball for fast, offline end-to-end runs.

The archive has exactly the official layout (``cifar-10-batches-py/data_batch_1..5``,
``test_batch``, ``batches.meta``; pickled dicts with bytes keys; uint8 rows of
3072 channel-major pixels), so every downstream step runs unchanged on it.

Images are learnable but not trivially so: each class has a fixed smooth
periodic colour template; each image is that template shifted by a few pixels,
with random contrast, brightness and per-pixel noise. Translation mixes the
template's phases, so a linear model cannot match it exactly while an MLP does
better.
"""
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from handbackprop.atomic import atomic_path, write_text

__all__ = ["CLASSES", "make_synthetic_tarball", "synthetic_images"]

CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]
SIDE = 32
MAX_SHIFT = 8        # pixels of random translation in each direction
NOISE_SD = 60.0      # per-pixel Gaussian noise, in uint8 units
N_WAVES = 5          # cosine components per template channel
ROOT = "cifar-10-batches-py/"


def _templates(rng):
    """Smooth periodic colour templates, one per class: (10, 3, 32, 32) float64 around 128."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE                    # (32, 32) each
    # A component shared by all classes, so classes overlap and are not separable by colour alone.
    shared = _wave_field(rng, yy, xx)                           # (3, 32, 32)
    out = np.empty((len(CLASSES), 3, SIDE, SIDE))
    for c in range(len(CLASSES)):
        own = _wave_field(rng, yy, xx)
        field = shared + 0.6 * own
        field /= field.std()
        colour = rng.uniform(-8.0, 8.0, size=(3, 1, 1))      # class tint
        out[c] = 128.0 + colour + 40.0 * field
    return out


def _wave_field(rng, yy, xx):
    """Sum of low-frequency cosines per channel; integer frequencies keep it periodic for np.roll."""
    field = np.zeros((3,) + yy.shape)
    for ch in range(3):
        for _ in range(N_WAVES):
            fy, fx = rng.integers(0, 4, size=2)
            if fy == 0 and fx == 0:
                fx = 1
            phase = rng.uniform(0, 2 * np.pi)
            field[ch] += rng.normal() * np.cos(2 * np.pi * (fy * yy + fx * xx) + phase)
    return field


def synthetic_images(templates, labels, rng):
    """Render one image per label: (N, 3072) uint8, channel-major rows like CIFAR."""
    n = len(labels)
    out = np.empty((n, 3, SIDE, SIDE), dtype=np.uint8)
    shifts = rng.integers(-MAX_SHIFT, MAX_SHIFT + 1, size=(n, 2))
    contrast = rng.uniform(0.6, 1.4, size=n)
    brightness = rng.normal(0.0, 20.0, size=n)
    for i, c in enumerate(labels):
        img = np.roll(templates[c], shift=tuple(shifts[i]), axis=(1, 2))  # (3, 32, 32)
        img = 128.0 + contrast[i] * (img - 128.0) + brightness[i]
        img = img + rng.normal(0.0, NOISE_SD, size=img.shape)
        out[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out.reshape(n, 3 * SIDE * SIDE)


def _balanced_labels(per_class, rng):
    """``per_class`` labels of each class in a seeded random order: (10 * per_class,) int64."""
    labels = np.repeat(np.arange(len(CLASSES), dtype=np.int64), per_class)
    return labels[rng.permutation(len(labels))]


def _batch_blob(batch_label, data, labels, filenames):
    """Pickle one batch dict exactly as the official files hold it (bytes keys, protocol 2)."""
    payload = {
        b"batch_label": batch_label.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(data, dtype=np.uint8),
        b"filenames": filenames,
    }
    return pickle.dumps(payload, protocol=2)


def _add_member(tar, name, blob):
    """Add ``blob`` under ``name`` with fixed metadata so the archive is byte-reproducible."""
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(blob))


def _names(labels, split):
    """Per-image file names in the official style, e.g. b"cat_train_00012.png"."""
    return [f"{CLASSES[c]}_{split}_{i:05d}.png".encode() for i, c in enumerate(labels)]


def make_synthetic_tarball(out_path, per_class_train=100, per_class_test=20, seed=0):
    """Write a deterministic CIFAR-10-format tarball and ``<out_path>.md5``; return the md5 hex.

    Training images (10 * per_class_train) are split over five batches as in the
    official release; the test batch holds 10 * per_class_test images. Both
    files are written atomically.
    """
    if per_class_train < 1 or per_class_test < 1:
        raise ValueError("per_class_train and per_class_test must be >= 1")
    out_path = Path(out_path)
    rng = np.random.default_rng(seed)
    templates = _templates(rng)
    y_train = _balanced_labels(per_class_train, rng)
    y_test = _balanced_labels(per_class_test, rng)
    X_train = synthetic_images(templates, y_train, rng)           # (N, 3072)
    X_test = synthetic_images(templates, y_test, rng)             # (M, 3072)
    names_train, names_test = _names(y_train, "train"), _names(y_test, "test")

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        meta = {b"num_cases_per_batch": int(np.ceil(len(y_train) / 5)),
                b"label_names": [c.encode() for c in CLASSES],
                b"num_vis": 3 * SIDE * SIDE}
        _add_member(tar, ROOT + "batches.meta", pickle.dumps(meta, protocol=2))
        for i, idx in enumerate(np.array_split(np.arange(len(y_train)), 5), start=1):
            blob = _batch_blob(f"training batch {i} of 5", X_train[idx], y_train[idx],
                               [names_train[j] for j in idx])
            _add_member(tar, ROOT + f"data_batch_{i}", blob)
        _add_member(tar, ROOT + "test_batch",
                    _batch_blob("testing batch 1 of 1", X_test, y_test, names_test))

    # Empty filename and mtime=0 keep the gzip header, and so the md5, reproducible;
    # level 6 because level 9 spends seconds gaining almost nothing on noisy pixels.
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=6) as zf:
        zf.write(raw.getvalue())
    blob = gz.getvalue()
    digest = hashlib.md5(blob).hexdigest()
    with atomic_path(out_path) as tmp:
        tmp.write_bytes(blob)
    write_text(out_path.with_name(out_path.name + ".md5"), f"{digest}  {out_path.name}\n")
    return digest

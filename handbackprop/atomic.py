"""Atomic file output: a result either appears complete under its final name or not at all.

Snakemake (and humans) treat "file exists" as "step finished", so a crash halfway
through a write must never leave a plausible-looking partial file behind. Every
writer here goes to a hidden temp file in the destination directory (same
filesystem, so the final ``os.replace`` is an atomic rename) and only renames it
into place once the write has fully succeeded.
"""
import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_json", "write_text", "save_npy"]


@contextmanager
def atomic_path(dest):
    """Yield a temporary path next to ``dest``; rename it over ``dest`` if the block succeeds.

    The temp name is ``.{name}.tmp-{pid}`` in the same directory, so concurrent
    processes do not collide and the rename never crosses filesystems. If the
    block raises (including KeyboardInterrupt), the temp file is removed and
    ``dest`` is left untouched. The parent directory is created if needed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        # BaseException so that Ctrl-C / SystemExit also clean up after themselves.
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def _json_default(obj):
    """Convert the non-JSON types a numerical project produces (numpy values, paths)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _fsync_close(fh):
    """Flush and fsync an open file so the rename never publishes data still in page cache only."""
    fh.flush()
    os.fsync(fh.fileno())


def write_text(path, s):
    """Atomically write the string ``s`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(s)
            _fsync_close(fh)


def write_json(path, obj):
    """Atomically write ``obj`` as JSON (indent 2, sorted keys, numpy values converted)."""
    # Serialise before touching the disk so an unserialisable object leaves nothing behind.
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_text(path, text)


def save_npy(path, arr):
    """Atomically save ``arr`` in uncompressed .npy format to exactly ``path``."""
    with atomic_path(path) as tmp:
        # A file handle, because np.save(name) appends ".npy" to the temp name.
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(arr), allow_pickle=False)
            _fsync_close(fh)

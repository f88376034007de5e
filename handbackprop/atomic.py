"""Atomic file output: a result either appears complete under its final name or not at all.

Snakemake (and humans) treat "file exists" as "step finished", so a crash halfway
through a write must never leave a plausible-looking partial file behind. Every
writer here goes to a hidden temp file in the destination directory (same
filesystem, so the final ``os.replace`` is an atomic rename) and only renames it
into place once the write has fully succeeded.

A process killed with SIGKILL cannot remove its temp file, so one can survive
beside the target (up to a whole download). Temp names carry the writer's pid;
a temp whose process no longer exists is stale, and is removed when a job next
starts writing that target (or by a sweep of a whole results tree).
"""
import fcntl
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["atomic_path", "write_json", "write_text", "save_npy", "remove_stale_temps",
           "sweep_stale_temps", "pid_alive", "ResultsInUse", "lock_results"]

_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>[0-9]+)$")


def _temp_name(dest: Path, pid: int) -> str:
    """The hidden temp file name atomic_path uses for ``dest`` in process ``pid``."""
    return f".{dest.name}.tmp-{pid}"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (zombies and other users' count)."""
    if pid <= 0:
        return True  # not a real writer's pid: never treat the file as ours to delete
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _remove_if_stale(path: Path, pid: int) -> bool:
    """Delete ``path`` if process ``pid`` is gone; True if this call removed it."""
    if pid_alive(pid):
        return False
    try:
        path.unlink()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        # Another job cleaned it first, or it is not ours to remove: nothing to do.
        return False
    return True


def remove_stale_temps(dest) -> list[Path]:
    """Remove the temp files of ``dest`` left by processes that no longer exist; return them.

    Only names atomic_path makes for this very target (``.{name}.tmp-{pid}``)
    are considered, and a temp whose pid is alive is kept: it may be a write in
    progress. The pid is only meaningful on the machine that wrote the file; on
    a shared filesystem this is still safe because Snakemake runs one job per
    output at a time, so a writer of this target on another node would be a
    job that no longer runs.
    """
    dest = Path(dest)
    try:
        entries = list(os.scandir(dest.parent))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m and m["name"] == dest.name and _remove_if_stale(Path(entry.path), int(m["pid"])):
            removed.append(Path(entry.path))
    return sorted(removed)


def sweep_stale_temps(root) -> list[Path]:
    """Remove every stale atomic_path temp file under directory ``root``; return them.

    For a cleanup step: targets that are never written again (a config change
    after a killed job) would otherwise keep their temps forever.
    """
    removed = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            m = _TEMP_RE.match(name)
            if m and _remove_if_stale(Path(dirpath) / name, int(m["pid"])):
                removed.append(Path(dirpath) / name)
    return sorted(removed)


@contextmanager
def atomic_path(dest):
    """Yield a temporary path next to ``dest``; rename it over ``dest`` if the block succeeds.

    The temp name is ``.{name}.tmp-{pid}`` in the same directory, so concurrent
    processes do not collide and the rename never crosses filesystems. If the
    block raises (including KeyboardInterrupt), the temp file is removed and
    ``dest`` is left untouched. The parent directory is created if needed, and
    temp files of ``dest`` left by killed processes are removed first.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    tmp = dest.with_name(_temp_name(dest, os.getpid()))
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


class ResultsInUse(RuntimeError):
    """Another workflow process is writing the same results folder."""


LOCK_NAME = ".handbackprop.lock"


def lock_results(root):
    """Hold an exclusive lock on results folder ``root`` for this process's lifetime (the
    returned file object must be kept open); raise ResultsInUse naming the holder.

    Snakemake's own lock lives in the working directory's ``.snakemake``, so two checkouts whose
    `results:` point at the same folder would both write into it; this lock belongs to the
    folder. flock is released by the kernel when the process dies, so a killed run never leaves
    a lock to clear by hand.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ResultsInUse(
            f"results folder {root} is in use by {holder}; wait for it to finish, or give this "
            f"run its own `results:` folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} (working directory {os.getcwd()})\n")
    handle.flush()
    return handle

"""Fault-injection helpers shared by tests: crafted pickles and tarballs, dead process ids.

Kept apart from the tests so that later changes keep being tried against the same faults.
"""
import gzip
import io
import pickle
import subprocess
import sys
import tarfile

import numpy as np

from handbackprop.data.cifar_format import ROW_WIDTH


# --------------------------------------------------------------------------- tarballs
def tar_members(path):
    """All members of a .tar.gz as {name: bytes}, in archive order."""
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def write_tarball(path, members):
    """Write {name: bytes} as a .tar.gz at ``path``; return ``path``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    path.write_bytes(gzip.compress(raw.getvalue(), compresslevel=1))  # speed over size
    return path


def with_member(src, dst, member, blob):
    """Copy tarball ``src`` to ``dst`` with ``member``'s bytes replaced by ``blob``."""
    members = tar_members(src)
    members[member] = blob
    return write_tarball(dst, members)


# --------------------------------------------------------------------------- allocating pickles
class _Call:
    """Pickles as ``func(*args)``: the REDUCE a crafted pickle would contain."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def direct_ndarray_batch(n):
    """A CIFAR batch dict whose arrays come from calling ``numpy.ndarray(shape, dtype)`` directly.

    Under 300 bytes pickled, yet it asks for n * 3072 image bytes and n labels:
    the unpickler allocates them unless it refuses the call.
    """
    return pickle.dumps({b"data": _Call(np.ndarray, (n, ROW_WIDTH), np.dtype(np.uint8)),
                         b"labels": _Call(np.ndarray, (n,), np.dtype(np.uint8))}, protocol=2)


def _reconstruct():
    """numpy's multiarray._reconstruct, wherever this numpy keeps it."""
    ndarray_reduce = np.zeros(1).__reduce__()
    return ndarray_reduce[0]


def big_reconstruct(n):
    """``_reconstruct(ndarray, (n, 3072), 'b')``: an allocation of n * 3072 bytes before any state."""
    return pickle.dumps(_Call(_reconstruct(), np.ndarray, (n, ROW_WIDTH), b"b"), protocol=2)


class _ArrayState:
    """Pickles as numpy does an array (``_reconstruct`` then BUILD) with a state of our choosing."""

    def __init__(self, shape, dtype, raw):
        self.state = (1, shape, np.dtype(dtype), False, raw)

    def __reduce__(self):
        return _reconstruct(), (np.ndarray, (0,), b"b"), self.state


def array_state(shape, dtype, raw):
    """Pickle of an array whose state claims ``shape`` and ``dtype`` but carries ``raw``."""
    return pickle.dumps(_ArrayState(shape, dtype, raw), protocol=2)


def object_array_claim(n):
    """An object array claiming n elements with one in the pickle.

    numpy allocates 8 * n bytes for the claimed shape before it reads the list.
    """
    return array_state((n,), object, [0])


def empty_void_scalar(itemsize):
    """``scalar(dtype('V<itemsize>'))`` with no data: numpy zero-fills itemsize bytes."""
    scalar = np.float64(1).__reduce__()[0]
    return pickle.dumps(_Call(scalar, np.dtype(f"V{itemsize}")), protocol=2)


# --------------------------------------------------------------------------- processes
def dead_pid():
    """The id of a process that has exited and been reaped (so it is free, unless reused)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def killed_writer(dest, payload=b"partial"):
    """Kill -9 a process in the middle of an atomic write of ``dest``; return its pid.

    The child writes ``payload`` to its temp file, says so, and waits to be killed,
    so its temp file is left exactly as a SIGKILLed job leaves it.
    """
    import os
    import signal
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    code = ("import sys, time\n"
            "from handbackprop.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(sys.argv[2].encode())\n"
            "    print('ready', flush=True)\n"
            "    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(dest), payload.decode()],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    return proc.pid

"""Tests for handbackprop.data.cifar_format: the restricted unpickler and tarball validation."""
import codecs
import importlib.util
import os
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from handbackprop.data.cifar_format import (
    BATCH_MEMBERS, META_MEMBER, TEST_MEMBER, CifarFormatError, UnsafePickleError,
    read_cifar_tarball, safe_loads)
from handbackprop.data.synthetic import CLASSES

from faults import tar_members as _members, write_tarball as _write_tarball

SHARED_BUILDER = (Path(__file__).resolve().parents[2].parent
                  / "shared" / "datasets" / "build_cifar10_tarball.py")


def _tampered(src, dst, member, edit=None, drop=False):
    """Copy tarball ``src`` to ``dst``, editing the unpickled dict of ``member`` or dropping it."""
    members = _members(src)
    if drop:
        del members[member]
    else:
        payload = pickle.loads(members[member], encoding="bytes")
        edit(payload)
        members[member] = pickle.dumps(payload, protocol=2)
    return _write_tarball(dst, members)


class _RunsShell:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _RunsEval:
    """Unpickling this would eval code that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"__import__('pathlib').Path({str(self.marker)!r}).touch()",))


# Protocol 2 spells builtins as "__builtin__", so match the name's tail only.
@pytest.mark.parametrize("evil_cls, global_name", [(_RunsShell, "system'"),
                                                    (_RunsEval, "eval'")])
def test_code_executing_pickle_is_refused(synthetic_tarball, tmp_path, evil_cls, global_name):
    marker = tmp_path / "pwned"
    evil = evil_cls(marker)
    bad = _tampered(synthetic_tarball[0], tmp_path / "bad.tar.gz", BATCH_MEMBERS[0],
                    edit=lambda d: d.__setitem__(b"filenames", evil))
    with pytest.raises(UnsafePickleError) as err:
        read_cifar_tarball(bad)
    msg = str(err.value)
    assert "refusing to unpickle global" in msg and global_name in msg
    assert "data_batch_1" in msg
    assert not marker.exists()


def test_codecs_encode_only_for_latin1():
    class Rot13:
        def __reduce__(self):
            return (codecs.encode, ("abc", "rot13"))

    assert safe_loads(pickle.dumps({b"k": b"\xff\x00"}, protocol=2)) == {b"k": b"\xff\x00"}
    with pytest.raises(UnsafePickleError):
        safe_loads(pickle.dumps(Rot13(), protocol=2))
    # bytes(int) would let a tiny pickle allocate an arbitrarily large buffer.
    with pytest.raises(UnsafePickleError):
        safe_loads(b"c__builtin__\nbytes\n(J\x00\x00\x00\x40tR.")


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_numpy_arrays_and_scalars_round_trip(protocol):
    obj = {b"data": np.arange(12, dtype=np.uint8).reshape(2, 6), "x": np.int64(7),
           "labels": [1, 2]}
    out = safe_loads(pickle.dumps(obj, protocol=protocol))
    np.testing.assert_array_equal(out[b"data"], obj[b"data"])
    assert out["x"] == 7 and out["labels"] == [1, 2]


def test_synthetic_tarball_is_accepted(synthetic_tarball):
    d = read_cifar_tarball(synthetic_tarball[0])
    assert d["X_train"].shape == (200, 3072) and d["X_train"].dtype == np.uint8
    assert d["y_train"].dtype == np.int64 and d["y_train"].shape == (200,)
    assert d["X_test"].shape == (50, 3072) and d["y_test"].shape == (50,)
    assert d["label_names"] == CLASSES
    assert d["batch_counts"] == [40] * 5
    assert np.bincount(d["y_train"], minlength=10).tolist() == [20] * 10


def test_str_keys_are_accepted(synthetic_tarball, tmp_path):
    def to_str_keys(d):
        for k in list(d):
            d[k.decode()] = d.pop(k)

    path = _tampered(synthetic_tarball[0], tmp_path / "s.tar.gz", TEST_MEMBER, edit=to_str_keys)
    assert read_cifar_tarball(path)["X_test"].shape == (50, 3072)


def _set(key, value_fn):
    """An edit that replaces payload[key] by value_fn(payload)."""
    return lambda d: d.__setitem__(key, value_fn(d))


@pytest.mark.parametrize("member, edit, expected", [
    (BATCH_MEMBERS[2], _set(b"labels", lambda d: [10] + d[b"labels"][1:]), "out of range"),
    (BATCH_MEMBERS[0], _set(b"labels", lambda d: [-1] + d[b"labels"][1:]), "out of range"),
    (BATCH_MEMBERS[1], _set(b"data", lambda d: d[b"data"][:, :3000]), "(n, 3072)"),
    (TEST_MEMBER, _set(b"data", lambda d: d[b"data"].astype(np.float32)), "uint8"),
    (BATCH_MEMBERS[3], _set(b"labels", lambda d: d[b"labels"][:-1]), "labels for"),
    (BATCH_MEMBERS[4], _set(b"data", lambda d: d[b"data"][:0]), "n = 0"),
    (META_MEMBER, _set(b"label_names", lambda d: d[b"label_names"][:9]), "10 label names"),
    (BATCH_MEMBERS[0], lambda d: d.pop(b"data"), "missing key 'data'"),
])
def test_malformed_batches_are_rejected(synthetic_tarball, tmp_path, member, edit, expected):
    bad = _tampered(synthetic_tarball[0], tmp_path / "bad.tar.gz", member, edit=edit)
    with pytest.raises(CifarFormatError) as err:
        read_cifar_tarball(bad)
    assert member in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("member", [BATCH_MEMBERS[4], TEST_MEMBER, META_MEMBER])
def test_missing_member_is_named(synthetic_tarball, tmp_path, member):
    bad = _tampered(synthetic_tarball[0], tmp_path / "bad.tar.gz", member, drop=True)
    with pytest.raises(CifarFormatError, match="missing member") as err:
        read_cifar_tarball(bad)
    assert member in str(err.value)


def test_not_a_tarball(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"definitely not gzip")
    with pytest.raises(CifarFormatError, match="not a readable gzip tar"):
        read_cifar_tarball(junk)


@pytest.mark.realdata
def test_shared_builder_output_is_accepted(tmp_path):
    """The offline builder in ../shared writes the official layout; our reader must accept it."""
    if not SHARED_BUILDER.is_file():
        pytest.skip(f"{SHARED_BUILDER} not present")
    if importlib.util.find_spec("PIL") is None:
        pytest.skip("Pillow not installed")
    out = tmp_path / "cifar-10-python.tar.gz"
    subprocess.run([sys.executable, str(SHARED_BUILDER), str(out),
                    "--per-class-train", "5", "--per-class-test", "2"],
                   check=True, capture_output=True, timeout=120)
    d = read_cifar_tarball(out)
    assert d["X_train"].shape == (50, 3072) and d["X_test"].shape == (20, 3072)
    assert d["label_names"] == CLASSES
    assert sum(d["batch_counts"]) == 50 and len(d["batch_counts"]) == 5
    assert np.bincount(d["y_train"], minlength=10).tolist() == [5] * 10


# --------------------------------------------------------------------------- bounded allocation
# A crafted member may ask for arrays far larger than itself; the unpickler must refuse
# before allocating. 200,000 images is the 620 MB; tracemalloc sees numpy's buffers.
BIG = 200_000


def _peak_bytes(fn):
    """Peak bytes traced while fn() runs (numpy registers its array buffers with tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    except Exception:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_direct_ndarray_call_member_is_refused(synthetic_tarball, tmp_path):
    import faults

    blob = faults.direct_ndarray_batch(BIG)
    assert len(blob) < 300  # tiny member, 614 MB asked for
    bad = faults.with_member(synthetic_tarball[0], tmp_path / "bad.tar.gz", BATCH_MEMBERS[0], blob)
    with pytest.raises(UnsafePickleError) as err:
        read_cifar_tarball(bad)
    msg = str(err.value)
    assert "numpy.ndarray(...) directly" in msg and BATCH_MEMBERS[0] in msg
    assert _peak_bytes(lambda: safe_loads(blob)) < 1e6


@pytest.mark.parametrize("craft, expected", [
    ("big_reconstruct", "refusing _reconstruct"),
    ("object_array_claim", "expected a list of 200000 items"),
    ("empty_void_scalar", "refusing numpy scalar of dtype |V200000 (200000 bytes) from no data"),
])
def test_other_allocating_pickles_are_refused(craft, expected):
    import faults

    blob = getattr(faults, craft)(BIG)
    with pytest.raises(UnsafePickleError, match=re.escape(expected)) as err:
        safe_loads(blob, context="member_x")
    assert "member_x" in str(err.value)
    assert _peak_bytes(lambda: safe_loads(blob)) < 1e6


def test_array_data_must_match_its_shape():
    """Raw bytes shorter than the claimed shape are refused with both sizes named."""
    import faults

    assert safe_loads(faults.array_state((2, 3), np.uint8, bytes(range(6))))[1, 2] == 5
    blob = faults.array_state((2, 3), np.uint8, b"\x00" * 5)
    with pytest.raises(UnsafePickleError, match=r"\(6 bytes\): its pickled data is 5 bytes"):
        safe_loads(blob)


def test_unknown_opcode_is_a_clear_unpickling_error():
    with pytest.raises(pickle.UnpicklingError, match="corrupt pickle in member_x"):
        safe_loads(b"\x80\x02\x11.", context="member_x")


def test_object_arrays_still_round_trip():
    obj = np.array([b"a.png", b"b.png", None], dtype=object)
    np.testing.assert_array_equal(safe_loads(pickle.dumps(obj, protocol=2)), obj)

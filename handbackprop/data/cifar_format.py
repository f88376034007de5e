"""Read the CIFAR-10 "python version" tarball safely and validate its contents.

The official batches are pickles, and unpickling runs whatever callables the
pickle names. A restricted unpickler admits only the globals a CIFAR batch
actually contains (numpy array reconstruction, and ``_codecs.encode`` that
protocol-2 pickles use for bytes), so a tampered tarball fails loudly instead
of executing code. Members are read straight from the .tar.gz, never extracted.

Allow-listed callables can still allocate: ``numpy.ndarray((N, 3072), uint8)``
is a 286-byte pickle that asks for N * 3072 zero bytes. So arrays are admitted
only the way numpy itself pickles them -- ``_reconstruct(ndarray, (0,), 'b')``
followed by ``__setstate__`` whose raw data is in the pickle -- and every
array, and every scalar, must hold exactly as many bytes (or list items) as
the pickle supplies. No pickle can then make us allocate more than a small
multiple of its own size.
"""
import codecs
import importlib
import io
import math
import pickle
import tarfile
import zlib

import numpy as np

__all__ = ["CifarFormatError", "UnsafePickleError", "RestrictedUnpickler",
           "safe_load", "safe_loads", "read_cifar_tarball", "BATCH_MEMBERS", "META_MEMBER", "TEST_MEMBER"]

ROOT = "cifar-10-batches-py/"
BATCH_MEMBERS = tuple(f"{ROOT}data_batch_{i}" for i in range(1, 6))
TEST_MEMBER = ROOT + "test_batch"
META_MEMBER = ROOT + "batches.meta"
N_CLASSES = 10
ROW_WIDTH = 3 * 32 * 32  # R, G, B planes of 32x32, channel-major


class CifarFormatError(ValueError):
    """The tarball does not hold valid CIFAR-10 data; the message names member and problem."""


class UnsafePickleError(CifarFormatError, pickle.UnpicklingError):
    """A pickle referenced a global outside the CIFAR allow-list."""


def _multiarray():
    """numpy's multiarray module: numpy._core in numpy>=2, numpy.core before."""
    try:
        return importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy < 2
        return importlib.import_module("numpy.core.multiarray")


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """Stand-in for ``_codecs.encode`` that only does what protocol-2 bytes need.

    Python 3 pickles bytes at protocol 2 as ``_codecs.encode(text, 'latin1')``;
    any other codec (zlib, base64, ...) is refused rather than trusted.
    """
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1", errors)


def _bytes_like(factory):
    """Wrap ``bytes``/``bytearray`` so a pickle cannot ask for a huge zero-filled buffer."""
    def make(*args):
        if args and isinstance(args[0], int):
            raise UnsafePickleError(f"refusing {factory.__name__}(int) in a pickle")
        return factory(*args)
    return make


class _NdarrayType:
    """What the global ``numpy.ndarray`` resolves to: a token ``_reconstruct`` accepts.

    Handing the pickle the real class would let it call ``ndarray(shape, dtype)``
    and allocate an array of any size; this token refuses to be called.
    """

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(
            "refusing to call numpy.ndarray(...) directly (it allocates any shape the pickle "
            "asks for); CIFAR batches build arrays only through _reconstruct")

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayType()


def _reconstruct_guard(ma):
    """``_reconstruct`` as numpy's own pickles call it: ndarray, shape (0,), dtype 'b', nothing else."""
    def _reconstruct(subtype, shape, dtype, *rest):
        if subtype is not _NDARRAY or rest or shape != (0,) or dtype not in (b"b", "b"):
            raise UnsafePickleError(
                f"refusing _reconstruct{(subtype, shape, dtype, *rest)!r}: numpy pickles "
                f"call it as _reconstruct(numpy.ndarray, (0,), b'b') and fill the array "
                f"from its pickled state")
        return ma._reconstruct(np.ndarray, (0,), b"b")  # an empty array: allocates nothing
    return _reconstruct


def _scalar_guard(ma):
    """``scalar(dtype, raw)`` only with raw bytes of exactly the dtype's size (object: any value)."""
    def scalar(dtype, raw=None):
        if not isinstance(dtype, np.dtype):
            raise UnsafePickleError(f"refusing numpy scalar of non-dtype {dtype!r}")
        if dtype != np.dtype(object) and not (isinstance(raw, bytes) and len(raw) == dtype.itemsize):
            # scalar(dtype) without data zero-fills dtype.itemsize bytes, which a pickle sets freely.
            got = f"{len(raw)} bytes" if isinstance(raw, bytes) else "no data" if raw is None \
                else type(raw).__name__
            raise UnsafePickleError(
                f"refusing numpy scalar of dtype {dtype} ({dtype.itemsize} bytes) from {got}")
        return ma.scalar(dtype, raw)
    return scalar


def _check_array_state(state):
    """Refuse an ndarray ``__setstate__`` whose array would be larger than the data it carries.

    numpy checks raw bytes against the shape itself, but for object arrays it
    allocates 8 bytes per element of the claimed shape before looking at the
    list; so check both kinds here, before numpy sees the state.
    """
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise UnsafePickleError(f"refusing array state of type {type(state).__name__} "
                                f"(expected (version, shape, dtype, is_fortran, data))")
    if len(state) == 5 and state[0] != 1:
        raise UnsafePickleError(f"refusing array state version {state[0]!r} (expected 1)")
    shape, dtype, _fortran, raw = state[-4:]
    if not (isinstance(shape, tuple)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise UnsafePickleError(f"refusing array shape {shape!r}: expected a tuple of sizes >= 0")
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError(f"refusing array dtype {dtype!r}: not a numpy dtype")
    count = math.prod(shape)  # Python ints: no overflow for absurd shapes
    if dtype.hasobject:
        # Object arrays pickle their elements as a list; structured dtypes with object
        # fields would allocate itemsize per element with nothing in the pickle backing it.
        if dtype != np.dtype(object):
            raise UnsafePickleError(f"refusing structured array dtype {dtype} holding objects")
        if not isinstance(raw, list) or len(raw) != count:
            got = f"a list of {len(raw)}" if isinstance(raw, list) else type(raw).__name__
            raise UnsafePickleError(
                f"refusing object array of shape {shape}: its data is {got}, "
                f"expected a list of {count} items")
        return
    if not isinstance(raw, bytes) or len(raw) != count * dtype.itemsize:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
        raise UnsafePickleError(
            f"refusing array of shape {shape} and dtype {dtype} ({count * dtype.itemsize} "
            f"bytes): its pickled data is {got}")


def _allowed_globals():
    """Map (module, name) pairs a CIFAR pickle may reference to the objects to use."""
    ma = _multiarray()
    allowed = {
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Old pickles (the official Python 2 files) name numpy.core; numpy 2 writes numpy._core.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _reconstruct_guard(ma)
        allowed[(module, "scalar")] = _scalar_guard(ma)
    # Plain data types. "__builtin__" is the Python 2 spelling, which Python 3 also
    # writes at protocol 2 (e.g. an empty array's b"" becomes __builtin__.bytes()).
    for module in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("complex", complex),
                          ("bytes", _bytes_like(bytes)),
                          ("bytearray", _bytes_like(bytearray))):
            allowed[(module, name)] = obj
    return allowed


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle._Unpickler):
    """Unpickler that resolves only allow-listed globals; everything else is refused.

    Built on the pure-Python unpickler because only it lets us see each BUILD
    (``obj.__setstate__(state)``) before it runs: that is where an array's size
    is set, so that is where it is bounded. The cost is small: a CIFAR batch is
    a few thousand opcodes around one large bytes object.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, context="pickle"):
        """``context`` names the data (e.g. the tar member) in error messages."""
        super().__init__(file, encoding="bytes")
        self.context = context

    def load(self):
        """Unpickle, naming ``context`` in every refusal."""
        try:
            return super().load()
        except KeyError as e:
            # The pure-Python unpickler's KeyError for an unknown opcode or memo key.
            raise pickle.UnpicklingError(f"corrupt pickle in {self.context}: {e!r}") from None
        except UnsafePickleError as e:
            if self.context in str(e):
                raise
            raise UnsafePickleError(f"{e} in {self.context}") from None

    def load_build(self):
        """BUILD only arrays (with a bounded state) and dtypes: nothing else in a CIFAR pickle needs it."""
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.ndarray):
            _check_array_state(state)
        elif not isinstance(inst, np.dtype):
            raise UnsafePickleError(f"refusing to set the state of a {type(inst).__name__}")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module, name):
        """Return the allow-listed object for ``module.name`` or raise UnsafePickleError."""
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to unpickle global '{module}.{name}' in {self.context}") from None


def safe_load(fileobj, context="pickle"):
    """Unpickle from a binary file object with the restricted unpickler."""
    return RestrictedUnpickler(fileobj, context).load()


def safe_loads(data, context="pickle"):
    """Unpickle ``data`` (bytes) with the restricted unpickler."""
    return safe_load(io.BytesIO(data), context)


def _get(d, key, member):
    """Fetch ``key`` from a batch dict whose keys may be bytes (official) or str."""
    if key.encode() in d:
        return d[key.encode()]
    if key in d:
        return d[key]
    raise CifarFormatError(f"{member}: missing key {key!r} (keys: {sorted(map(repr, d))})")


def _validate_batch(payload, member):
    """Check one batch dict and return (data uint8 (n, 3072), labels int64 (n,))."""
    if not isinstance(payload, dict):
        raise CifarFormatError(f"{member}: expected a dict, got {type(payload).__name__}")
    data = _get(payload, "data", member)
    labels = _get(payload, "labels", member)
    if not isinstance(data, np.ndarray):
        raise CifarFormatError(f"{member}: data is {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8:
        raise CifarFormatError(f"{member}: data dtype is {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != ROW_WIDTH:
        raise CifarFormatError(f"{member}: data shape is {data.shape}, expected (n, {ROW_WIDTH})")
    n = data.shape[0]
    if n == 0:
        raise CifarFormatError(f"{member}: batch holds no images (n = 0)")
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise CifarFormatError(
            f"{member}: labels must be a flat sequence of integers (got dtype {y.dtype}, "
            f"shape {y.shape})")
    if len(y) != n:
        raise CifarFormatError(f"{member}: {len(y)} labels for {n} images")
    if y.min() < 0 or y.max() >= N_CLASSES:
        raise CifarFormatError(
            f"{member}: labels out of range 0..{N_CLASSES - 1} (min {y.min()}, max {y.max()})")
    return np.ascontiguousarray(data), y.astype(np.int64)


def _validate_meta(payload, member):
    """Check batches.meta and return the label names as a list of str."""
    if not isinstance(payload, dict):
        raise CifarFormatError(f"{member}: expected a dict, got {type(payload).__name__}")
    names = _get(payload, "label_names", member)
    if not isinstance(names, (list, tuple)) or len(names) != N_CLASSES:
        count = len(names) if hasattr(names, "__len__") else "?"
        raise CifarFormatError(f"{member}: expected {N_CLASSES} label names, got {count}")
    out = []
    for name in names:
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        if not isinstance(name, str):
            raise CifarFormatError(f"{member}: label name {name!r} is not a string")
        out.append(name)
    return out


def _read_members(path, wanted):
    """Unpickle the ``wanted`` members of the tarball in one sequential pass over the gzip stream."""
    found = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for info in tar:
                if info.name not in wanted or info.name in found:
                    continue
                if not info.isfile():
                    raise CifarFormatError(f"{info.name}: not a regular file in {path}")
                with tar.extractfile(info) as fh:
                    try:
                        found[info.name] = safe_load(fh, info.name)
                    except CifarFormatError:
                        raise
                    except Exception as e:  # corrupt pickle data of any kind
                        raise CifarFormatError(f"{info.name}: cannot unpickle: {e!r}") from e
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise CifarFormatError(f"{path}: not a readable gzip tar: {e}") from e
    missing = [m for m in wanted if m not in found]
    if missing:
        raise CifarFormatError(f"{path}: missing member(s) {', '.join(missing)}")
    return found


def read_cifar_tarball(path):
    """Read and validate a CIFAR-10 python tarball without extracting it.

    Returns a dict with X_train (N, 3072) uint8 (data_batch_1..5 in order),
    y_train (N,) int64, X_test, y_test, label_names (list of 10 str),
    batch_counts (images per training batch) and n_test. Raises
    CifarFormatError (or its subclass UnsafePickleError) naming the member and
    the problem.
    """
    members = _read_members(path, (*BATCH_MEMBERS, TEST_MEMBER, META_MEMBER))
    label_names = _validate_meta(members[META_MEMBER], META_MEMBER)
    xs, ys = [], []
    for member in BATCH_MEMBERS:
        x, y = _validate_batch(members[member], member)
        xs.append(x)
        ys.append(y)
    X_test, y_test = _validate_batch(members[TEST_MEMBER], TEST_MEMBER)
    return {
        "X_train": np.concatenate(xs, axis=0),  # (N, 3072) uint8
        "y_train": np.concatenate(ys, axis=0),  # (N,) int64
        "X_test": X_test,                       # (M, 3072) uint8
        "y_test": y_test,                       # (M,) int64
        "label_names": label_names,
        "batch_counts": [len(y) for y in ys],
        "n_test": len(y_test),
    }

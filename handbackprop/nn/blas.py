"""y += a * x in one pass, through the OpenBLAS that NumPy itself ships and calls for its GEMMs.

NumPy has no fused multiply-add of two arrays: ``p -= eta * g`` writes the
temporary ``eta * g`` (a read and a write of a weight-sized array) before the
subtraction reads it back, five passes over memory where BLAS ``axpy`` needs
three (read x, read y, write y). For the 3072x500 layer that was the update's
whole cost (bench/README.md: 605 -> 224 µs float32, 2,250 -> 1,134 µs float64,
1 thread). The library is the one NumPy's wheel bundles
(``numpy.libs/libscipy_openblas64_*.so``, ILP64, symbols ``scipy_cblas_?axpy64_``),
so it follows the same ``threadpoolctl`` limits as NumPy's GEMMs.

Anything else — another NumPy build, a non-contiguous or small array, mixed
dtypes — takes the plain NumPy expression, which computes the same values up to
one rounding (axpy may fuse the multiply and the add). ``ENABLED = False``
forces NumPy everywhere (the tests compare the two paths).
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

ENABLED = True
MIN_SIZE = 16_384  # below this the ctypes call costs more than the temporary it saves

_axpy: dict | None = None


def _load() -> dict:
    """{dtype: axpy function} from NumPy's bundled OpenBLAS, or {} if there is none."""
    found: dict = {}
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*.so"))):
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same handle and thread settings
            for dtype, name, scalar in ((np.float32, "scipy_cblas_saxpy64_", ctypes.c_float),
                                        (np.float64, "scipy_cblas_daxpy64_", ctypes.c_double)):
                fn = getattr(lib, name)
                fn.argtypes = [ctypes.c_int64, scalar, ctypes.c_void_p, ctypes.c_int64,
                               ctypes.c_void_p, ctypes.c_int64]
                fn.restype = None
                found[np.dtype(dtype)] = fn
        except (OSError, AttributeError):
            found = {}
            continue
        break
    return found


def available() -> bool:
    """True when axpy goes through BLAS (NumPy's bundled OpenBLAS found)."""
    global _axpy
    if _axpy is None:
        _axpy = _load()
    return bool(_axpy)


def axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """In place: y += a * x (same shape). One BLAS pass when both are contiguous
    arrays of the same float dtype and layout; NumPy otherwise."""
    if (ENABLED and y.size >= MIN_SIZE and available() and x.dtype == y.dtype
            and y.dtype in _axpy and x.shape == y.shape and y.flags.writeable
            and ((x.flags.c_contiguous and y.flags.c_contiguous)
                 or (x.flags.f_contiguous and y.flags.f_contiguous))
            and not np.may_share_memory(x, y)):
        _axpy[y.dtype](y.size, a, x.ctypes.data, 1, y.ctypes.data, 1)
        return
    y += a * x

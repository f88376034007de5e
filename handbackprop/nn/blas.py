"""Fused updates through the OpenBLAS that NumPy itself ships and calls for its GEMMs:
y += a * x in one pass (axpy), and C = βC + α AᵀB as one GEMM.

NumPy has no fused multiply-add of two arrays: ``p -= eta * g`` writes the
temporary ``eta * g`` (a read and a write of a weight-sized array) before the
subtraction reads it back, five passes over memory where BLAS ``axpy`` needs
three (read x, read y, write y). For the 3072x500 layer that was the update's
whole cost (bench/README.md: 605 -> 224 µs float32, 2,250 -> 1,134 µs float64,
1 thread). The library is the one NumPy's wheel bundles
(``numpy.libs/libscipy_openblas64_*.so``, ILP64, symbols ``scipy_cblas_?axpy64_``),
so it follows the same ``threadpoolctl`` limits as NumPy's GEMMs.

The same holds for dW = xᵀ dout followed by dW += 2λW: a GEMM that accumulates
into the L2 term (β = 1) replaces the separate add, a read of two and a write of
one weight-sized array (3072x500: 5.6 -> 5.0 ms float32, 10.7 -> 9.5 ms float64).
With plain SGD the GEMM goes one step further and writes the update itself,
W <- (1 - 2λη) W - η xᵀ dout (β = 1 - 2λη, α = -η): no gradient array, no 2λW
array, no separate update pass (`train.train_step`).

Anything else — another NumPy build, a non-contiguous or small array, mixed
dtypes — takes the plain NumPy expression, which computes the same values up to
one rounding (axpy may fuse the multiply and the add). ``ENABLED = False``
forces NumPy everywhere (the tests compare the two paths).

Errors. When OpenBLAS rejects a call (a negative size, a leading dimension too small, a bad
enum) it prints " ** On entry to SGEMM parameter number k had an illegal value" from its xerbla,
leaves C unchanged and returns: a caller would go on as if the update happened. ``_checked_gemm``
therefore applies the library's own argument checks before every call (`gemm_error`, the rules of
OpenBLAS interface/gemm.c for CBLAS, parameter numbers as it reports them) and raises
`BlasError` instead; tests/nn/test_blas.py holds it to the library's verdict on each bad argument.
axpy has no argument the library rejects (n <= 0 is a no-op, any increment is defined), so it
needs no check (tested too).

Why not scipy.linalg.blas.?gemm (a public interface, which also works where NumPy is linked
against MKL or Accelerate)? It does write in place: ``sgemm(α, doutᵀ, xᵀ, β, Wᵀ, trans_b=1,
overwrite_c=1)`` computes Wᵀ <- βWᵀ + α doutᵀx in the Fortran view Wᵀ of the C-order W (no copy;
bit-identical to ours on the shapes measured), and its call costs less than ctypes' (1.4 against
7 µs). But it calls the OpenBLAS SciPy bundles (scipy.libs/libscipy_openblas-*.so, 0.3.30, not
NumPy's 0.3.31; threadpoolctl limits both), and that measured slower on the fused step's shapes.
scipy/private time, median of 31 interleaved A-B-B-A rounds at 1 BLAS thread, three runs on a
shared 2-core machine (noisy; `python tests/nn/test_blas.py` prints them):
  float32 (100×3072)ᵀ·(100×10)  1.07 1.12 1.09    float64  1.41 1.28 1.38
          (100×3072)ᵀ·(100×50)  1.04 1.01 1.04             1.09 1.12 1.08
          (100×3072)ᵀ·(100×500) 1.05 1.03 1.05             1.03 0.94 1.01
So the call stays on NumPy's own OpenBLAS (the private symbols below, found next to NumPy);
another NumPy build (MKL, Accelerate) takes the NumPy expression, not scipy.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

ENABLED = True
MIN_SIZE = 16_384  # elements; below this the ctypes call costs more than the pass it saves

_axpy: dict | None = None
_gemm: dict = {}
_ROW_MAJOR, _COL_MAJOR, _NO_TRANS, _TRANS, _CONJ_TRANS = 101, 102, 111, 112, 113  # CBLAS enums


class BlasError(ValueError):
    """An argument the BLAS library would reject (and then silently skip the call)."""


def _load() -> tuple[dict, dict]:
    """({dtype: axpy}, {dtype: gemm}) from NumPy's bundled OpenBLAS, or ({}, {})."""
    i64, ptr, enum = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    libdir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*.so"))):
        axpys, gemms = {}, {}
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same handle and thread settings
            for dtype, p, scalar in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
                fn = getattr(lib, f"scipy_cblas_{p}axpy64_")
                fn.argtypes = [i64, scalar, ptr, i64, ptr, i64]
                fn.restype = None
                axpys[np.dtype(dtype)] = fn
                fn = getattr(lib, f"scipy_cblas_{p}gemm64_")
                fn.argtypes = [enum, enum, enum, i64, i64, i64, scalar, ptr, i64, ptr, i64, scalar, ptr, i64]
                fn.restype = None
                gemms[np.dtype(dtype)] = fn
        except (OSError, AttributeError):
            continue
        return axpys, gemms
    return {}, {}


def available() -> bool:
    """True when axpy and gemm go through BLAS (NumPy's bundled OpenBLAS found)."""
    global _axpy, _gemm
    if _axpy is None:
        _axpy, _gemm = _load()
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


def fuses(c: np.ndarray) -> bool:
    """True when `gemm_tn_update` into c is one BLAS call (large, C-contiguous, float32/64):
    only then does folding a step into the GEMM save a pass."""
    return (ENABLED and c.size >= MIN_SIZE and c.flags.c_contiguous and c.flags.writeable
            and available() and c.dtype in _gemm)


def gemm_error(order: int, trans_a: int, trans_b: int, m: int, n: int, k: int,
               lda: int, ldb: int, ldc: int) -> int | None:
    """The parameter number OpenBLAS's cblas_?gemm would report to xerbla for these
    arguments, or None when it accepts them. The rules of OpenBLAS interface/gemm.c: a row-major
    call is the column-major one on swapped operands (A<->B, m<->n, transA<->transB), so the
    numbers are the Fortran ones after the swap (1 transa, 2 transb, 3 m, 4 n, 5 k, 8 lda,
    10 ldb, 13 ldc; 0 a bad order); the last failing check wins, as there."""
    def trans(t):  # NoTrans/ConjNoTrans -> 0, Trans/ConjTrans -> 1 (real types), else invalid
        return {_NO_TRANS: 0, 114: 0, _TRANS: 1, _CONJ_TRANS: 1}.get(t, -1)
    if order == _COL_MAJOR:
        ta, tb, fm, fn, fld_a, fld_b = trans(trans_a), trans(trans_b), m, n, lda, ldb
    elif order == _ROW_MAJOR:
        ta, tb, fm, fn, fld_a, fld_b = trans(trans_b), trans(trans_a), n, m, ldb, lda
    else:
        return 0
    nrow_a = k if ta == 1 else fm
    nrow_b = fn if tb == 1 else k
    info = None
    # ld < rows, not the reference BLAS's ld < max(1, rows): OpenBLAS accepts ld = 0 for an
    # empty operand (tests/nn/test_blas.py found it by asking the library)
    for bad, number in ((ldc < fm, 13), (fld_b < nrow_b, 10),
                        (fld_a < nrow_a, 8), (k < 0, 5), (fn < 0, 4), (fm < 0, 3),
                        (tb < 0, 2), (ta < 0, 1)):
        if bad:
            info = number
    return info


def _checked_gemm(dtype, order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cblas_?gemm on raw pointers, after the library's own argument checks: raises BlasError
    where the library would print its xerbla message and return without touching C."""
    info = gemm_error(order, trans_a, trans_b, m, n, k, lda, ldb, ldc)
    if info is not None:
        name = "SGEMM" if np.dtype(dtype) == np.float32 else "DGEMM"
        raise BlasError(f"BLAS would reject this call: on entry to {name} parameter number {info} "
                        f"had an illegal value (order={order}, trans=({trans_a}, {trans_b}), "
                        f"m={m}, n={n}, k={k}, lda={lda}, ldb={ldb}, ldc={ldc}); C left unchanged")
    _gemm[np.dtype(dtype)](order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


def gemm_tn_update(x: np.ndarray, dout: np.ndarray, c: np.ndarray, alpha: float = 1.0,
                   beta: float = 1.0) -> None:
    """In place: c = beta * c + alpha * xᵀ dout, for x (N, D_in), dout (N, D_out), c (D_in, D_out).

    One BLAS GEMM when c is large and all three are C-contiguous of one float dtype. The
    network uses it two ways: c = 2λW, α = β = 1 (the weight gradient with its L2 term, no
    separate add), and c = W, α = -η, β = 1 - 2λη (the SGD step itself, no gradient array).
    NumPy otherwise (a GEMM, then the scaled add): for a small c (the output layer) those
    passes are cheap and NumPy's call is ~9 µs quicker than the ctypes one."""
    if (fuses(c) and x.dtype == dout.dtype == c.dtype
            and x.ndim == dout.ndim == c.ndim == 2 and x.shape[0] == dout.shape[0]
            and c.shape == (x.shape[1], dout.shape[1])
            and x.flags.c_contiguous and dout.flags.c_contiguous
            and not np.may_share_memory(c, x) and not np.may_share_memory(c, dout)):
        n, d_in = x.shape
        d_out = dout.shape[1]
        _checked_gemm(c.dtype, _ROW_MAJOR, _TRANS, _NO_TRANS, d_in, d_out, n, alpha, x.ctypes.data,
                      d_in, dout.ctypes.data, d_out, beta, c.ctypes.data, d_out)
        return
    prod = x.T @ dout
    if beta != 1.0:
        c *= beta
    if alpha == 1.0:
        c += prod
    else:
        axpy(alpha, prod, c)

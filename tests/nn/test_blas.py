"""The BLAS wrapper (handbackprop/nn/blas.py) raises where the library would silently skip a call,
its argument checks are the library's own, and the public alternative (scipy.linalg.blas) is
measured against it.

OpenBLAS reports a rejected argument by printing from xerbla (to stdout, not stderr) and
returning with C unchanged; the tests capture that message at the file-descriptor level (capfd:
it is written by C, not Python), on both streams.

`python tests/nn/test_blas.py` prints the benchmark behind the choice of the private call
(scipy/private time ratios, interleaved rounds, 1 BLAS thread); it is not a test.
"""
import re

import numpy as np
import pytest

from handbackprop.nn import blas

pytestmark = pytest.mark.skipif(not blas.available(), reason="NumPy's bundled OpenBLAS not found")

RM, CM = blas._ROW_MAJOR, blas._COL_MAJOR
T, N = blas._TRANS, blas._NO_TRANS
XERBLA = re.compile(r"On entry to [SD]GEMM\s+parameter number\s+(-?\d+) had an illegal value")
CELLS = 64  # every buffer: 8×8, more than any valid call below reads or writes (ld, sizes ≤ 8)


def printed(capfd) -> str:
    out, err = capfd.readouterr()
    return out + err


def raw_library_verdict(capfd, dtype, args):
    """Call the library itself (no check of ours) with buffers large enough for any valid call;
    returns (parameter number it reported or None, whether C changed)."""
    a, b = (np.arange(CELLS, dtype=dtype) + 1 for _ in range(2))
    c = np.full(CELLS, 7.0, dtype)
    before = c.copy()
    order, ta, tb, m, n, k, lda, ldb, ldc = args
    capfd.readouterr()
    blas._gemm[np.dtype(dtype)](order, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb,
                                0.5, c.ctypes.data, ldc)
    found = XERBLA.search(printed(capfd))
    return (int(found.group(1)) if found else None), not np.array_equal(c, before)


def argument_cases():
    """Each gemm argument bad on its own (both orders, both transposes), edge sizes (0), bad
    enums, then a seeded random sample of combinations (several bad at once: which one the
    library names depends on its check order)."""
    cases = []
    for order in (RM, CM):
        for ta in (N, T):
            for tb in (N, T):
                m, n, k = 5, 3, 4
                good = [order, ta, tb, m, n, k, 8, 8, 8]
                cases.append(tuple(good))
                for i, bad in ((3, -1), (4, -1), (5, -1), (6, 1), (7, 1), (8, 1), (6, 0), (8, 0)):
                    case = list(good)
                    case[i] = bad
                    cases.append(tuple(case))
                cases.append((order, ta, tb, 0, 0, 0, 1, 1, 1))  # empty product: accepted
    cases += [(99, T, N, 5, 3, 4, 8, 8, 8), (RM, 110, N, 5, 3, 4, 8, 8, 8), (RM, T, 115, 5, 3, 4, 8, 8, 8),
              (CM, blas._CONJ_TRANS, 114, 5, 3, 4, 8, 8, 8)]  # conjugate enums are valid for reals
    rng = np.random.default_rng(23)
    for _ in range(150):
        cases.append((int(rng.choice([RM, CM, 99])), int(rng.choice([N, T, 113, 110])),
                      int(rng.choice([N, T, 114, 115])), *(int(v) for v in rng.choice([-1, 0, 2, 5], 3)),
                      *(int(v) for v in rng.choice([0, 1, 2, 5, 8], 3))))
    return cases


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_our_checks_are_the_librarys_own(capfd, dtype):
    """For every case, gemm_error names the parameter the library reports, and None exactly when
    the library runs the call. A check missing from gemm_error (the library rejects, we pass)
    or one it does not make (we reject a call it accepts) fails here."""
    disagreements, rejected = [], 0
    for args in argument_cases():
        reported, changed = raw_library_verdict(capfd, dtype, args)
        ours = blas.gemm_error(*args)
        if reported != ours:
            disagreements.append((args, reported, ours))
        if reported is not None:
            rejected += 1
            assert not changed, f"{args}: the library reported an error but wrote C"
        elif 0 not in args[3:6]:
            assert changed, f"{args}: accepted, yet C was not written"
    assert not disagreements, disagreements[:10]
    assert rejected > 50  # the sample did exercise the error paths


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_has_no_argument_the_library_rejects(capfd, dtype):
    """Why axpy goes unchecked (blas module docstring): odd sizes and increments are no-ops or
    defined cases in OpenBLAS, never an xerbla report."""
    x, y = np.ones(8, dtype), np.zeros(8, dtype)
    fn = blas._axpy[np.dtype(dtype)]
    for n, incx, incy in ((-1, 1, 1), (0, 1, 1), (2, 0, 1), (2, 1, 0), (2, -1, -1), (2, 0, 0)):
        capfd.readouterr()
        fn(n, 1.0, x.ctypes.data, incx, y.ctypes.data, incy)
        assert "illegal value" not in printed(capfd), (n, incx, incy)


def test_a_rejected_call_raises_and_leaves_c_alone(capfd):
    c = np.full(CELLS, 7.0, np.float32)
    a = np.ones(CELLS, np.float32)
    with pytest.raises(blas.BlasError, match="parameter number 10"):
        # row-major xᵀ·dout with x's leading dimension 3 < its 6 columns: lda too small
        blas._checked_gemm(np.float32, RM, T, N, 6, 5, 4, 1.0, a.ctypes.data, 3, a.ctypes.data, 5,
                           0.0, c.ctypes.data, 5)
    assert np.all(c == 7.0)
    assert "illegal value" not in printed(capfd)  # stopped before the library saw it


def test_without_the_check_the_error_is_silent(capfd, monkeypatch):
    """The planted mistake: no argument check (the wrapper before issue 23). The library prints,
    leaves C unchanged, and the call returns normally: the caller would take C as updated."""
    monkeypatch.setattr(blas, "gemm_error", lambda *args: None)
    c = np.full(CELLS, 7.0, np.float32)
    a = np.ones(CELLS, np.float32)
    blas._checked_gemm(np.float32, RM, T, N, 6, 5, 4, 1.0, a.ctypes.data, 3, a.ctypes.data, 5,
                       0.0, c.ctypes.data, 5)  # no exception: this is the silence
    assert XERBLA.search(printed(capfd))
    assert np.all(c == 7.0)


def test_gemm_tn_update_goes_through_the_check(monkeypatch):
    """The fused step uses the checked call: a rejection on its path raises, W is left alone."""
    rng = np.random.default_rng(0)
    x, d = rng.normal(size=(100, 400)), rng.normal(size=(100, 60))
    W = rng.normal(size=(400, 60))
    assert blas.fuses(W)
    W0 = W.copy()
    monkeypatch.setattr(blas, "gemm_error", lambda *args: 13)
    with pytest.raises(blas.BlasError, match="parameter number 13"):
        blas.gemm_tn_update(x, d, W, -0.1, 0.99)
    assert np.array_equal(W, W0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scipy_gemm_writes_in_place_and_agrees(dtype):
    """The public alternative the module docstring measured: ?gemm on the Fortran view Wᵀ of a
    C-order W computes Wᵀ <- βWᵀ + α doutᵀx in W's own memory (no copy), the same sum as ours."""
    from scipy.linalg import blas as sblas
    rng = np.random.default_rng(1)
    x, d = rng.normal(size=(100, 307)).astype(dtype), rng.normal(size=(100, 61)).astype(dtype)
    W0 = rng.normal(size=(307, 61)).astype(dtype)
    ours, theirs = W0.copy(), W0.copy()
    blas.gemm_tn_update(x, d, ours, -0.03, 0.9994)
    gemm = sblas.sgemm if dtype == np.float32 else sblas.dgemm
    out = gemm(-0.03, d.T, x.T, 0.9994, theirs.T, trans_b=1, overwrite_c=1)
    assert np.shares_memory(out, theirs) and out.base is not None  # written in place
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(theirs, ours, rtol=tol, atol=tol)
    assert not np.allclose(theirs, W0)


def test_threadpoolctl_limits_both_openblas_builds():
    """NumPy's OpenBLAS (ours) and SciPy's own: one limit must hold both, or a benchmark
    'at 1 thread' would not be."""
    import threadpoolctl
    from scipy.linalg import blas as _  # noqa: F401  (loads SciPy's OpenBLAS)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        info = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
        assert any("numpy.libs" in i["filepath"] for i in info)
        assert all(i["num_threads"] == 1 for i in info), info


def _benchmark(rounds: int = 31):
    """scipy.linalg.blas ?gemm against the private call on the fused step's shapes:
    interleaved A B B A rounds (drift on a shared machine hits both alike), 1 BLAS thread,
    median and IQR of the per-round ratio scipy/private."""
    import time

    import threadpoolctl
    from scipy.linalg import blas as sblas

    def private(x, d, W):
        blas.gemm_tn_update(x, d, W, -1e-6, 1.0)

    def public(x, d, W):
        (sblas.sgemm if W.dtype == np.float32 else sblas.dgemm)(
            -1e-6, d.T, x.T, 1.0, W.T, trans_b=1, overwrite_c=1)

    rng = np.random.default_rng(0)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        for i in threadpoolctl.threadpool_info():
            print(f"{i['filepath']}: {i['internal_api']} {i['version']}, {i['num_threads']} thread(s)")
        for dtype in (np.float32, np.float64):
            for d_out in (10, 50, 500):
                x = rng.normal(size=(100, 3072)).astype(dtype)
                d = rng.normal(size=(100, d_out)).astype(dtype)
                W = rng.normal(size=(3072, d_out)).astype(dtype)
                reps = max(3, int(3e6 / W.size))

                def timed(f):
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        f(x, d, W)
                    return (time.perf_counter() - t0) / reps

                ratios, ta, tb = [], [], []
                for _ in range(rounds):
                    a1, b1, b2, a2 = timed(private), timed(public), timed(public), timed(private)
                    ta.append((a1 + a2) / 2)
                    tb.append((b1 + b2) / 2)
                    ratios.append(tb[-1] / ta[-1])
                q = np.percentile(ratios, [25, 50, 75])
                print(f"{np.dtype(dtype).name} (100×3072)ᵀ(100×{d_out}): private {1e6 * np.median(ta):7.1f} µs, "
                      f"scipy {1e6 * np.median(tb):7.1f} µs, scipy/private {q[1]:.3f} "
                      f"(IQR {q[0]:.3f}–{q[2]:.3f}), {rounds} rounds × {reps}")


if __name__ == "__main__":
    _benchmark()

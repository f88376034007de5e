"""The speed work on the training step: the optimisers against torch.optim over
several steps (float64), the allocator policy against the page faults it
exists to remove, and the bench's PyTorch baselines against our first step."""
import resource
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from handbackprop.nn import memory, optim
from handbackprop.nn.network import build_network

BENCH = Path(__file__).resolve().parents[2] / "bench"
RNG = np.random.default_rng(0)


def _params(shapes):
    return {k: RNG.normal(size=s) for k, s in shapes.items()}


@pytest.mark.parametrize("name", ["sgd", "nesterov"])
def test_updates_match_torch_over_steps_and_leave_grads_alone(name):
    shapes = {"W1": (6, 4), "b1": (4,), "W2": (4, 3), "b2": (3,)}
    params = _params(shapes)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    opt = optim.make_optimizer(name, params, momentum=0.9)
    topt = torch.optim.SGD(list(tparams.values()), lr=0.1, momentum=0.0 if name == "sgd" else 0.9,
                           nesterov=name == "nesterov")
    for step in range(4):
        grads = _params(shapes)
        snapshot = {k: g.copy() for k, g in grads.items()}
        eta = 0.1 / (step + 1)
        for group in topt.param_groups:
            group["lr"] = eta
        for k, p in tparams.items():
            p.grad = torch.tensor(grads[k])
        topt.step()
        opt.step(params, grads, eta)
        for k in params:
            np.testing.assert_allclose(params[k], tparams[k].detach().numpy(), rtol=1e-14, atol=1e-15)
            assert np.array_equal(grads[k], snapshot[k]), "the update must not modify the gradients"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator policy")
def test_reused_memory_removes_step_page_faults():
    if not memory.reuse_freed_memory():
        pytest.skip("mallopt unavailable (not glibc)")
    net = build_network(3072, [500], dtype="float64", seed=0)
    opt = optim.SGD(net.params)
    X, y = RNG.normal(size=(100, 3072)), RNG.integers(0, 10, 100)
    for _ in range(2):  # first touches of the heap are expected faults
        _, _, grads = net.cost_and_grads(X, y, 1e-3)
        opt.step(net.params, grads, 1e-3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        _, _, grads = net.cost_and_grads(X, y, 1e-3)
        opt.step(net.params, grads, 1e-3)
    per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3
    # glibc's default policy costs ~430-680 faults per step here (12 MB temporaries).
    assert per_step < 50, f"{per_step:.0f} minor page faults per step"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bench_baselines_agree_with_our_first_step(dtype, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_epoch
    import torch_baselines
    X = RNG.normal(size=(300, 3072)).astype(dtype)
    y = RNG.integers(0, 10, 300)
    batches = bench_epoch.epoch_batches(300, 0)
    ours = bench_epoch.Ours([20], dtype, X, y)
    init = {k: v.astype(np.float64) for k, v in ours.net.params.items()}
    first = ours.first_step(batches[0])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for name in ("inout-manual", "l2-in-graph", "weight-decay", "weight-decay-fused"):
        v = torch_baselines.make_variant(name, ours.net.params, 2, dtype, Xt, yt, bench_epoch.LAM, bench_epoch.ETA)
        bench_epoch.check_agreement("m=20", dtype, name, init, first, v.first_step(torch.from_numpy(batches[0])))
    # A baseline with the wrong objective (no L2 in the decay) must be refused.
    wrong = torch_baselines.make_variant("weight-decay", ours.net.params, 2, dtype, Xt, yt, 0.0, bench_epoch.ETA)
    with pytest.raises(RuntimeError, match="first"):
        bench_epoch.check_agreement("m=20", dtype, "weight-decay", init, first,
                                    wrong.first_step(torch.from_numpy(batches[0])))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bench_batch_norm_baselines_agree_with_our_first_step(dtype, monkeypatch):
    """The 3-layer batch-norm row: torch's nn.BatchNorm1d stack computes our first cost and
    update (W, γ, β), and the hand-written (in, out) loop says it does not apply."""
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_epoch
    import torch_baselines
    X = RNG.normal(size=(300, 3072)).astype(dtype)
    y = RNG.integers(0, 10, 300)
    batches = bench_epoch.epoch_batches(300, 0)
    ours = bench_epoch.Ours([20, 20], dtype, X, y, batch_norm=True)
    init = {k: v.astype(np.float64) for k, v in ours.net.params.items()}
    assert {"gamma1", "beta2"} <= set(init)
    first = ours.first_step(batches[0])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for name in ("l2-in-graph", "weight-decay", "weight-decay-fused"):
        v = torch_baselines.make_variant(name, ours.net.params, 3, dtype, Xt, yt, bench_epoch.LAM, bench_epoch.ETA)
        bench_epoch.check_agreement("bn", dtype, name, init, first, v.first_step(torch.from_numpy(batches[0])))
    with pytest.raises(torch_baselines.VariantUnavailable, match="batch norm"):
        torch_baselines.make_variant("inout-manual", ours.net.params, 3, dtype, Xt, yt, bench_epoch.LAM, bench_epoch.ETA)


# ------------------------------------------------------------------ fused BLAS passes
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_blas_axpy_matches_numpy_and_leaves_x_alone(dtype, order, monkeypatch):
    from handbackprop.nn import blas
    x = np.asarray(RNG.normal(size=(400, 90)), dtype=dtype, order=order)  # above MIN_SIZE
    y0 = np.asarray(RNG.normal(size=(400, 90)), dtype=dtype, order=order)
    x_before = x.copy()
    fast = y0.copy(order="K")
    blas.axpy(-0.37, x, fast)
    monkeypatch.setattr(blas, "ENABLED", False)
    slow = y0.copy(order="K")
    blas.axpy(-0.37, x, slow)
    tol = 1e-6 if dtype == "float32" else 1e-15  # axpy may fuse the multiply-add: one rounding less
    np.testing.assert_allclose(fast, slow, rtol=tol, atol=tol)
    assert not np.array_equal(fast, y0)
    assert np.array_equal(x, x_before)


def test_blas_axpy_falls_back_on_strided_and_mixed_inputs():
    from handbackprop.nn import blas
    y = RNG.normal(size=(300, 200))
    x = RNG.normal(size=(200, 300)).T  # same shape, other layout: NumPy path
    expected = y + 2.0 * x
    blas.axpy(2.0, x, y)
    np.testing.assert_allclose(y, expected, rtol=1e-15)
    y32 = np.zeros((300, 200), np.float32)
    blas.axpy(1.0, x, y32)  # float64 x into float32 y: NumPy path, cast on write
    np.testing.assert_allclose(y32, x.astype(np.float32), rtol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.03, 0.9994)])
def test_gemm_tn_update_matches_numpy(dtype, alpha, beta):
    """c = beta c + alpha xᵀd: the L2-gradient accumulation (1, 1) and the fused SGD step."""
    from handbackprop.nn import blas
    x = RNG.normal(size=(100, 307)).astype(dtype)
    d = RNG.normal(size=(100, 61)).astype(dtype)
    c0 = RNG.normal(size=(307, 61)).astype(dtype)
    assert c0.size >= blas.MIN_SIZE  # the BLAS path, not the NumPy fallback
    c = c0.copy()
    blas.gemm_tn_update(x, d, c, alpha, beta)
    ref = beta * c0.astype(np.float64) + alpha * (x.T.astype(np.float64) @ d.astype(np.float64))
    tol = 1e-4 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(c, ref, rtol=tol, atol=tol * abs(alpha))
    assert not np.allclose(c, c0)
    cF = np.asfortranarray(c0)  # not C-contiguous: NumPy path, same sum
    blas.gemm_tn_update(x, d, cF, alpha, beta)
    np.testing.assert_allclose(cF, ref, rtol=tol, atol=tol * abs(alpha))
    small = c0[:20, :20].copy()  # below MIN_SIZE: NumPy path
    ref_small = (beta * c0[:20, :20].astype(np.float64)
                 + alpha * (x[:, :20].T.astype(np.float64) @ d[:, :20]))
    blas.gemm_tn_update(x[:, :20], d[:, :20], small, alpha, beta)
    np.testing.assert_allclose(small, ref_small, rtol=tol, atol=tol * abs(alpha))
    assert not np.allclose(small, c0[:20, :20])


def test_affine_backward_accumulates_into_acc_but_never_into_inputs():
    from handbackprop.nn import layers
    from handbackprop.nn import blas
    x, W, dout = RNG.normal(size=(50, 400)), RNG.normal(size=(400, 60)), RNG.normal(size=(50, 60))
    dW0 = RNG.normal(size=(400, 60))
    assert dW0.size >= blas.MIN_SIZE
    expected = dW0 + x.T @ dout
    _, dW, db = layers.affine_backward(dout, (x, W), acc=(dW0.copy(), 1.0, 1.0))
    np.testing.assert_allclose(dW, expected, rtol=1e-13)
    np.testing.assert_allclose(db, dout.sum(axis=0), rtol=1e-13)
    # An acc overlapping the inputs is never written: the sum is formed out of place.
    buf = RNG.normal(size=(400, 110))
    C, x_shared = buf[:, :60], buf[:, 60:].T  # (400, 60) and (50, 400) in one buffer
    buf_before = buf.copy()
    _, dW, _ = layers.affine_backward(dout, (x_shared, W), acc=(C, 1.0, 1.0))
    assert np.array_equal(buf, buf_before)
    np.testing.assert_allclose(dW, buf_before[:, :60] + x_shared.T @ dout, rtol=1e-13)


def test_affine_backward_fused_step_forms_dx_from_the_old_weights():
    """acc = (W, -η, 1 - 2λη) updates W in place; dx must still be doutᵀ-product with the W
    the forward used."""
    from handbackprop.nn import layers
    x, W, dout = RNG.normal(size=(50, 400)), RNG.normal(size=(400, 60)), RNG.normal(size=(50, 60))
    W0 = W.copy()
    eta, lam = 0.05, 1e-2
    dx, W_new, _ = layers.affine_backward(dout, (x, W), acc=(W, -eta, 1 - 2 * lam * eta))
    assert W_new is W
    np.testing.assert_allclose(dx, dout @ W0.T, rtol=1e-13)
    np.testing.assert_allclose(W, W0 - eta * (2 * lam * W0 + x.T @ dout), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_sgd_step_equals_gradient_then_update(batch_norm, dropout):
    """train_step with SGD (weights updated inside their GEMMs) against the unfused step:
    cost_and_grads, then SGD.step on every parameter. float64, three steps, to 1e-12."""
    from handbackprop.nn import layers
    from handbackprop.nn.train import train_step
    fused = build_network(3072, [60, 40], dropout=dropout, dtype="float64", seed=3,
                          batch_norm=batch_norm)
    plain = build_network(3072, [60, 40], dropout=dropout, dtype="float64", seed=3,
                          batch_norm=batch_norm)
    opt_f, opt_p = optim.SGD(fused.params), optim.SGD(plain.params)
    lam, rng = 1e-2, np.random.default_rng(5)
    for step, eta in enumerate([0.01, 0.05, 0.1]):
        X, y = rng.normal(size=(100, 3072)), rng.integers(0, 10, 100)
        masks = fused.draw_masks(np.random.default_rng(step), 100)
        loss_f, reg_f = train_step(fused, opt_f, X, y, lam, eta, masks)
        loss_p, reg_p, grads = plain.cost_and_grads(X, y, lam, masks)
        assert set(grads) == set(plain.params)
        opt_p.step(plain.params, grads, eta)
        assert loss_f == pytest.approx(loss_p, rel=1e-13) and reg_f == pytest.approx(reg_p, rel=1e-13)
        for k in plain.params:
            np.testing.assert_allclose(fused.params[k], plain.params[k], rtol=1e-12,
                                       atol=1e-13 * np.abs(plain.params[k]).max(), err_msg=k)
        for k in plain.state:
            np.testing.assert_allclose(fused.state[k], plain.state[k], rtol=1e-13)
    moved = plain.params["W1"] - build_network(3072, [60, 40], dtype="float64", seed=3,
                                               batch_norm=batch_norm).params["W1"]
    assert np.abs(moved).max() > 1e-4  # the steps did move the weights
    assert layers.l2_scale(lam) == 2 * lam  # the L2 factor both paths take from one function


def test_fused_weight_step_only_for_plain_sgd():
    params = _params({"W1": (6, 4), "b1": (4,)})
    assert optim.SGD(params).weight_step(0.1, 0.01) == pytest.approx((-0.1, 1 - 0.002))
    assert optim.make_optimizer("nesterov", params).weight_step(0.1, 0.01) is None
    assert optim.make_optimizer("adam", params).weight_step(0.1, 0.01) is None


@pytest.mark.parametrize("batch_norm", [False, True])
def test_network_gradients_same_with_and_without_blas(batch_norm, monkeypatch):
    """The fused passes change where sums happen, not the gradient: float64 to 1e-14."""
    from handbackprop.nn import blas
    net = build_network(3072, [60, 40], dtype="float64", seed=3, batch_norm=batch_norm)
    X, y = RNG.normal(size=(100, 3072)), RNG.integers(0, 10, 100)
    _, reg_fast, fast = net.cost_and_grads(X, y, 1e-2, update_stats=False)
    monkeypatch.setattr(blas, "ENABLED", False)
    _, reg_slow, slow = net.cost_and_grads(X, y, 1e-2, update_stats=False)
    assert reg_fast == reg_slow
    for k in slow:
        np.testing.assert_allclose(fast[k], slow[k], rtol=1e-14, atol=1e-14 * np.abs(slow[k]).max())

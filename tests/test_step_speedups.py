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

BENCH = Path(__file__).resolve().parents[1] / "bench"
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

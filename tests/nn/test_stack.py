"""The stacked path (nn/stack.py) against the single run it replaces: one stacked step equals k
single `train.train_step` steps, a stacked trajectory equals k `train.train` runs and torch's,
float32 records agree, a diverged run leaves the others untouched, and `run_stack` gives the
metrics of k separate `runs.run` calls."""
import dataclasses

import numpy as np
import pytest

from conftest import SPEC, make_split
from handbackprop.gates import torch_replay
from handbackprop.gates.gradcheck import norm_relative_error
from handbackprop.nn import optim, stack, train
from handbackprop.nn.network import build_network
from handbackprop.nn.train import TrainConfig, TrainingDiverged

D = 3072


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(10, D))
    y = rng.integers(0, 10, 90)
    X = centres[y] + 2 * rng.normal(size=(90, D))  # float64, class-dependent
    return X, y


def nets(hidden, k, dropout=0.0, dtype="float64", seed=1):
    return [build_network(D, hidden, 10, dropout, dtype, seed) for _ in range(k)]


def max_rel(a, b):
    """Largest element error relative to the array's scale: max |a-b| / max |b|."""
    return float(np.abs(a - b).max() / np.abs(b).max())


ARCHS = [([], 0.0), ([8], 0.0), ([8], 0.3), ([8, 6], 0.0), ([8, 6], 0.3)]  # linear: no dropout


@pytest.mark.parametrize("hidden,dropout", ARCHS)
@pytest.mark.parametrize("lams", [[0.02], [0.0, 0.01, 0.3]])
def test_stacked_steps_equal_k_single_steps(data, hidden, dropout, lams):
    X, y = data
    k = len(lams)
    stacked, singles = nets(hidden, k, dropout), nets(hidden, k, dropout)
    snet = stack.StackedNetwork(stacked)
    opt = optim.SGD(snet.params)
    rng, drop_rng = np.random.default_rng(0), np.random.default_rng(1)
    for step, eta in enumerate([0.05, 0.08, 0.02, 0.1, 0.03]):
        idx = rng.choice(len(y), 30, replace=False)
        masks = snet.template.draw_masks(drop_rng, 30)
        losses, regs = stack.stacked_step(snet, opt, X[idx], y[idx], lams, eta, masks)
        for j, (net, lam) in enumerate(zip(singles, lams)):
            loss, reg = train.train_step(net, optim.SGD(net.params), X[idx], y[idx], lam, eta, masks)
            assert abs(losses[j] - loss) <= 1e-12 * abs(loss)
            assert abs(regs[j] - reg) <= 1e-12 * max(abs(reg), 1e-300)
    # run_params hands out copies, never views of the stack's live arrays (k = 1: W1 is whole)
    assert not any(np.may_share_memory(v, snet.params[p]) for p, v in snet.run_params(0).items())
    errs = [max_rel(snet.run_params(j)[p], net.params[p])
            for j, net in enumerate(singles) for p in net.params]
    assert max(errs) <= 1e-12, errs
    # the stack really trained: the weights moved, and runs of different lambda differ
    assert max_rel(snet.run_params(0)["W1"], nets(hidden, 1, dropout)[0].params["W1"]) > 1e-3
    if k > 1:
        assert max_rel(snet.run_params(0)["W1"], snet.run_params(2)["W1"]) > 1e-3


def config(lam, **kw):
    base = dict(batch_size=30, eta_min=1e-5, eta_max=0.1, n_s=5, seed=7, max_steps=20,
                divergence_factor=1e6, train_eval_size=90, points_per_cycle=2)
    return TrainConfig(lam=lam, **{**base, **kw})


@pytest.mark.parametrize("spec", [{"hidden": [], "dtype": "float64"},
                                  {"hidden": [12], "dropout": 0.3, "flip": True, "max_shift": 2,
                                   "dtype": "float64"}])
def test_stacked_trajectory_matches_single_runs_and_torch(data, spec):
    """20 steps of 3 runs: step costs and weights equal train()'s to 1e-12, and torch's
    (the replay of the same batches, masks and augmentation) to the trajectory gate's 1e-10."""
    X, y = data
    lams = [0.0, 0.01, 0.1]
    extra = {k: spec[k] for k in ("flip", "max_shift") if k in spec}
    cfgs = [config(lam, **extra) for lam in lams]
    stacked = nets(spec["hidden"], 3, spec.get("dropout", 0.0))
    start = {p: v.copy() for p, v in stacked[0].params.items()}
    res = stack.train_stack(stacked, X, y, X[:40], y[:40], cfgs, log=lambda s: None)
    for j, (cfg, r) in enumerate(zip(cfgs, res)):
        single = nets(spec["hidden"], 1, spec.get("dropout", 0.0))[0]
        ref = train.train(single, X, y, X[:40], y[:40], cfg, log=lambda s: None)
        assert max_rel(np.array(r.step_costs), np.array(ref.step_costs)) <= 1e-12
        assert max(max_rel(stacked[j].params[p], single.params[p]) for p in single.params) <= 1e-12
        assert [row["step"] for row in r.history] == [row["step"] for row in ref.history]
        for row, row_ref in zip(r.history, ref.history):
            for key, v in row_ref.items():
                assert row[key] == pytest.approx(v, rel=1e-12, abs=1e-14), key
        t_costs, _, t_final = torch_replay.torch_replay_trajectory(
            start, X, y, lam=cfg.lam, seed=cfg.seed, batch_size=cfg.batch_size, n_s=cfg.n_s,
            eta_min=cfg.eta_min, eta_max=cfg.eta_max, steps=cfg.max_steps,
            dropout=spec.get("dropout", 0.0), flip=cfg.flip, max_shift=cfg.max_shift,
            dtype="float64")
        assert np.max(np.abs(np.array(r.step_costs) - t_costs) / np.abs(t_costs)) <= 1e-10
        for p in t_final:
            assert norm_relative_error(stacked[j].params[p], t_final[p]) <= 1e-10, p


def test_float32_stacked_records_equal_single_float32_runs(data):
    X, y = data
    X32 = X.astype(np.float32)
    lams = [1e-3, 0.05]
    cfgs = [config(lam, max_steps=None, cycles=1) for lam in lams]  # 2 n_s = 10 steps, 3 records
    stacked = nets([16], 2, 0.2, "float32")
    res = stack.train_stack(stacked, X32, y, X32[:40], y[:40], cfgs, log=lambda s: None)
    for j, (cfg, r) in enumerate(zip(cfgs, res)):
        single = nets([16], 1, 0.2, "float32")[0]
        ref = train.train(single, X32, y, X32[:40], y[:40], cfg, log=lambda s: None)
        assert len(r.history) == len(ref.history) >= 3
        for row, row_ref in zip(r.history, ref.history):
            assert set(row) == set(row_ref)
            for key, v in row_ref.items():
                assert row[key] == pytest.approx(v, rel=1e-4, abs=1e-6), key
        assert r.final == pytest.approx(ref.final, rel=1e-4, abs=1e-6)
        assert max(max_rel(stacked[j].params[p], single.params[p]) for p in single.params) <= 1e-4


def test_a_diverged_run_leaves_the_stack_and_the_others_are_unchanged(data):
    """λ = 50 at eta_max 0.1: the weight decay factor 1 - 2λη reaches -9, the run blows up."""
    X, y = data
    lams = [1e-3, 50.0, 0.02]
    cfgs = [config(lam, divergence_factor=10.0) for lam in lams]
    stacked = nets([8], 3, 0.3)
    res = stack.train_stack(stacked, X, y, X[:40], y[:40], cfgs, log=lambda s: None)
    assert isinstance(res[1], TrainingDiverged) and res[1].cause == "l2"
    single = nets([8], 1, 0.3)[0]
    with pytest.raises(TrainingDiverged) as err:
        train.train(single, X, y, X[:40], y[:40], cfgs[1], log=lambda s: None)
    assert (res[1].step, res[1].cost, res[1].start_cost) == pytest.approx(
        (err.value.step, err.value.cost, err.value.start_cost), rel=1e-12)
    assert res[1].step < 19  # it left the stack before the end
    for j in (0, 2):
        single = nets([8], 1, 0.3)[0]
        ref = train.train(single, X, y, X[:40], y[:40], cfgs[j], log=lambda s: None)
        assert max(max_rel(stacked[j].params[p], single.params[p]) for p in single.params) <= 1e-12
        assert max_rel(np.array(res[j].step_costs), np.array(ref.step_costs)) <= 1e-12
        assert len(res[j].history) == len(ref.history)


def test_stack_refuses_what_it_does_not_stack(data):
    X, y = data
    with pytest.raises(ValueError, match="lam only"):
        stack.train_stack(nets([8], 2), X, y, None, None, [config(0.1), config(0.2, seed=8)])
    with pytest.raises(ValueError, match="SGD"):
        stack.train_stack(nets([8], 2), X, y, None, None,
                          [config(0.1, optimizer="adam"), config(0.2, optimizer="adam")])
    with pytest.raises(ValueError, match="batch norm"):
        stack.StackedNetwork([build_network(D, [8], batch_norm=True), build_network(D, [8])])


@pytest.mark.parametrize("hidden,dropout", [([12], 0.0), ([12, 6], 0.3)])
def test_batch_norm_stack_matches_single_runs_and_torch(data, hidden, dropout):
    """Per-run γ, β, batch statistics and running averages: 20 steps of 3 runs equal train()'s
    (parameters and running statistics) to 1e-12, and, without dropout, torch's BatchNorm1d
    trajectory (gates/torch_bn_reference.py) to 1e-10 as the single run's gate requires."""
    from handbackprop.gates import torch_bn_reference
    X, y = data
    lams = [0.0, 0.01, 0.1]
    cfgs = [config(lam) for lam in lams]
    stacked = [build_network(D, hidden, 10, dropout, "float64", 1, batch_norm=True) for _ in lams]
    start = {p: v.copy() for p, v in stacked[0].arrays().items()}
    res = stack.train_stack(stacked, X, y, X[:40], y[:40], cfgs, log=lambda s: None)
    for j, (cfg, r) in enumerate(zip(cfgs, res)):
        single = build_network(D, hidden, 10, dropout, "float64", 1, batch_norm=True)
        ref = train.train(single, X, y, X[:40], y[:40], cfg, log=lambda s: None)
        assert max_rel(np.array(r.step_costs), np.array(ref.step_costs)) <= 1e-12
        assert set(stacked[j].state) == set(single.state) == {"mean1", "var1", *(
            ["mean2", "var2"] if len(hidden) > 1 else [])}
        for p, v in single.arrays().items():
            assert max_rel(stacked[j].arrays()[p], v) <= 1e-12, p
        for row, row_ref in zip(r.history, ref.history):
            assert row == pytest.approx(row_ref, rel=1e-12, abs=1e-14)
        if dropout:
            continue
        t_costs, _, t_final, _ = torch_bn_reference.torch_bn_trajectory(
            {p: start[p] for p in single.params}, {p: start[p] for p in single.state},
            X, y, X[:40], lam=cfg.lam, seed=cfg.seed, batch_size=cfg.batch_size, n_s=cfg.n_s,
            eta_min=cfg.eta_min, eta_max=cfg.eta_max, steps=cfg.max_steps, optimizer="sgd",
            bn_momentum=single.bn_momentum, eps=single.bn_eps)
        assert np.max(np.abs(np.array(r.step_costs) - t_costs) / np.abs(t_costs)) <= 1e-10
        for p in stacked[j].arrays():
            assert norm_relative_error(stacked[j].arrays()[p], t_final[p]) <= 1e-10, p


def test_batch_norm_divergence_keeps_each_runs_statistics(data):
    X, y = data
    lams = [1e-3, 50.0, 0.02]
    cfgs = [config(lam, divergence_factor=10.0) for lam in lams]
    stacked = [build_network(D, [8, 6], 10, 0.0, "float64", 1, batch_norm=True) for _ in lams]
    res = stack.train_stack(stacked, X, y, None, None, cfgs, log=lambda s: None)
    assert isinstance(res[1], TrainingDiverged) and res[1].step < 19
    for j in (0, 2):
        single = build_network(D, [8, 6], 10, 0.0, "float64", 1, batch_norm=True)
        train.train(single, X, y, None, None, cfgs[j], log=lambda s: None)
        for p, v in single.arrays().items():
            assert max_rel(stacked[j].arrays()[p], v) <= 1e-12, p


def test_run_stack_metrics_equal_separate_runs(tmp_path):
    from handbackprop.study import runs, stack_runs
    split = tmp_path / "split"
    make_split(split, 60, 20, 20, seed=0)
    lams = [1e-3, 0.05]
    out = stack_runs.run_stack(split, SPEC, lams, seed=2, cycles=1, dtype="float64",
                               evaluate_test=True, log=lambda s: None)
    timing = {"seconds", "eval_seconds", "step_seconds", "eval_fraction"}
    for lam, (net, result, metrics) in zip(lams, out):
        net1, result1, metrics1 = runs.run(split, SPEC, lam, 1, 2, "float64", True,
                                           record_divergence=True, log=lambda s: None)
        assert list(metrics) == list(metrics1)  # the same keys in the same order
        for key, v in metrics1.items():
            if key in timing:
                continue
            if isinstance(v, float):
                assert metrics[key] == pytest.approx(v, rel=1e-10, abs=1e-12), key
            else:
                assert metrics[key] == v, key
        assert [r["step"] for r in result.history] == [r["step"] for r in result1.history]
        for p in net1.params:
            assert max_rel(net.params[p], net1.params[p]) <= 1e-10
    # a diverging lambda is recorded as runs.run records it; the other run is untouched
    spec = {**SPEC, "eta_max": 0.1}  # lambda = 200: 1 - 2λη is -4 at step 1 already
    out = stack_runs.run_stack(split, spec, [1e-3, 200.0], seed=2, cycles=1, dtype="float64",
                               log=lambda s: None)
    for lam, (_, _, m) in zip([1e-3, 200.0], out):
        _, _, m1 = runs.run(split, spec, lam, 1, 2, "float64", False, record_divergence=True,
                            log=lambda s: None)
        assert m["diverged"] == m1["diverged"] and list(m) == list(m1)
        if m1["diverged"]:
            assert m["divergence"]["step"] == m1["divergence"]["step"]
        else:
            assert m["val_cost"] == pytest.approx(m1["val_cost"], rel=1e-10)
    assert [m["diverged"] for _, _, m in out] == [False, True]


def test_run_stack_batch_norm_metrics_equal_separate_runs(tmp_path):
    from handbackprop.study import runs, stack_runs
    split = tmp_path / "split"
    make_split(split, 60, 20, 20, seed=1)
    spec = {**SPEC, "hidden": [8, 6], "batch_norm": True, "dropout": 0.2}
    out = stack_runs.run_stack(split, spec, [1e-3, 0.05], seed=3, cycles=1, dtype="float64",
                               log=lambda s: None)
    for lam, (net, _, metrics) in zip([1e-3, 0.05], out):
        net1, _, metrics1 = runs.run(split, spec, lam, 1, 3, "float64", False,
                                     record_divergence=True, log=lambda s: None)
        for key in ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost",
                    "val_accuracy", "steps", "n_s"):
            assert metrics[key] == pytest.approx(metrics1[key], rel=1e-10), key
        for p, v in net1.arrays().items():  # the weights file: parameters and running statistics
            assert max_rel(net.arrays()[p], v) <= 1e-10, p


def test_run_grid_stacks_plain_sgd_and_trains_momentum_runs_one_by_one(tmp_path):
    """The search job's dispatch (workflow/scripts/train_stack.py): a plain-SGD grid goes through
    the stack, a Nesterov grid (which the stack refuses) through runs.run, run by run; either way
    each λ gets the run runs.run gives it, in the grid's order."""
    from handbackprop.study import runs, stack_runs
    split = tmp_path / "split"
    make_split(split, 60, 20, 20, seed=4)
    lams = [0.05, 1e-3]
    said = []
    for spec, stacked in ((SPEC, True), ({**SPEC, "optimizer": "nesterov", "momentum": 0.9}, False)):
        assert stack_runs.stackable(spec) is stacked
        out = stack_runs.run_grid(split, spec, lams, seed=2, cycles=1, dtype="float64", log=said.append)
        assert any("stack of 2" in s for s in said) is stacked
        said.clear()
        for lam, (net, _, metrics) in zip(lams, out):
            net1, _, metrics1 = runs.run(split, spec, lam, 1, 2, "float64", False,
                                         record_divergence=True, log=lambda s: None)
            assert metrics["lam"] == lam
            assert metrics["val_cost"] == pytest.approx(metrics1["val_cost"], rel=1e-10)
            for p in net1.params:
                assert max_rel(net.params[p], net1.params[p]) <= 1e-10, p

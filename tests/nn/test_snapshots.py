"""Snapshot ensembles: the weights at each cycle end of a final run (nn/train.py,
runfiles.save_snapshots) and the averaged softmax of those networks (tables.snapshot_ensemble)."""
import json

import numpy as np
import pytest
import torch

from handbackprop.nn import schedule
from handbackprop.nn.network import build_network
from handbackprop.nn.train import TrainConfig, train
from handbackprop.runfiles import load_snapshots, save_snapshots, write_run
from handbackprop.study import runs, tables


def blobs(n=400, d=3072, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))
    y = rng.integers(0, 10, n)
    return (centres[y] + 4 * rng.normal(size=(n, d))).astype(np.float64), y


def trained(cycles, snapshot_cycles=True, seed=3):
    X, y = blobs()
    net = build_network(3072, [16], dropout=0.2, dtype="float64", seed=seed)
    cfg = TrainConfig(lam=1e-3, cycles=cycles, batch_size=40, seed=seed, n_s=5, flip=True, max_shift=2,
                      snapshot_cycles=snapshot_cycles, points_per_cycle=2)
    return net, train(net, X[:300], y[:300], X[300:], y[300:], cfg, log=lambda s: None)


def test_a_snapshot_per_cycle_each_the_weights_of_a_run_that_stopped_there():
    net, result = trained(3)
    assert len(result.snapshots) == 3
    # the last cycle end is the end of training
    for k, v in net.params.items():
        np.testing.assert_array_equal(result.snapshots[-1][k], v)
    # cycle c's snapshot is exactly what a c-cycle run ends with (same seed, same streams)
    for c in (1, 2):
        short, _ = trained(c)
        for k, v in short.params.items():
            np.testing.assert_array_equal(result.snapshots[c - 1][k], v)
    # copies, not views of the live weights: each cycle end differs
    assert not np.array_equal(result.snapshots[0]["W1"], result.snapshots[1]["W1"])
    # a cycle end is where the schedule is back at eta_min
    n_s = result.n_s
    assert [float(schedule.cyclic_lr(2 * n_s * c, 1e-5, 0.1, n_s)) for c in (1, 2, 3)] == [1e-5] * 3


def test_no_snapshots_unless_asked():
    _, result = trained(2, snapshot_cycles=False)
    assert result.snapshots == []


def test_snapshots_file_round_trip_and_keys(tmp_path):
    _, result = trained(2)
    path = tmp_path / "snapshots.npz"
    save_snapshots(path, result.snapshots)
    with np.load(path) as z:
        assert sorted(z.files) == ["cycle1/W1", "cycle1/W2", "cycle1/b1", "cycle1/b2",
                                   "cycle2/W1", "cycle2/W2", "cycle2/b1", "cycle2/b2"]
    back = load_snapshots(path)
    assert len(back) == 2
    for orig, read in zip(result.snapshots, back):
        assert orig.keys() == read.keys()
        for k in orig:
            np.testing.assert_array_equal(orig[k], read[k])
    with pytest.raises(ValueError, match="snapshot_cycles=True"):
        save_snapshots(tmp_path / "none.npz", [])


def split_dir(tmp_path):
    """A preprocessed-split folder (what load_split reads) of learnable blobs."""
    X, y = blobs(n=500)
    parts = {"train": slice(0, 300), "val": slice(300, 400), "test": slice(400, 500)}
    for part, rows in parts.items():
        np.save(tmp_path / f"X_{part}.npy", X[rows].astype(np.float32))
        np.save(tmp_path / f"y_{part}.npy", y[rows].astype(np.int64))
    np.savez(tmp_path / "norm.npz", mean=np.zeros(3072), std=np.ones(3072))
    (tmp_path / "stats.json").write_text(json.dumps({"label_names": [str(i) for i in range(10)]}))
    return tmp_path


SPEC = {"hidden": [16], "dropout": 0.0, "batch_size": 50, "eta_min": 1e-5, "eta_max": 0.05,
        "n_s": 6, "points_per_cycle": 2, "train_eval_size": 300, "divergence_factor": 10}


def final_runs(tmp_path, cycles, seeds=(1, 2)):
    """Final runs written as the workflow writes them: (metrics paths, weights, snapshots)."""
    d = split_dir(tmp_path)
    out = {"metrics": [], "weights": [], "snapshots": []}
    for seed in seeds:
        net, result, m = runs.run(d, SPEC, 1e-3, cycles, seed, "float64", True, snapshots=True,
                                  log=lambda s: None)
        m["code_hash"] = "x"
        files = {k: tmp_path / f"seed{seed}" / f"{k}.{ext}" for k, ext in
                 (("metrics", "json"), ("history", "csv"), ("weights", "npz"), ("snapshots", "npz"))}
        write_run(files, net, result, m)
        for k in out:
            out[k].append(files[k])
    return d, out


def test_an_ensemble_of_one_snapshot_is_that_network(tmp_path):
    d, f = final_runs(tmp_path, cycles=1)
    summary = tables.final_summary(f["metrics"], f["weights"], d, "m", ensemble=True, dtype="float64",
                                   snapshot_paths=f["snapshots"])
    snap = summary["snapshot_ensemble"]
    assert snap["members"] == 1 and [r["seed"] for r in snap["per_seed"]] == [1, 2]
    # one cycle: the only snapshot is the final network, whose own test accuracy the run recorded
    assert snap["test_accuracy"] == summary["test_accuracy"]
    assert "snapshot ensemble (1 cycle-end network(s) per seed)" in summary["text"]


def test_the_snapshot_ensemble_averages_each_runs_cycle_end_softmax(tmp_path):
    d, f = final_runs(tmp_path, cycles=3)
    summary = tables.final_summary(f["metrics"], f["weights"], d, "m", ensemble=False, dtype="float64",
                                   snapshot_paths=f["snapshots"])
    snap = summary["snapshot_ensemble"]
    assert snap["members"] == 3 and "ensemble" not in summary
    X = torch.from_numpy(np.load(d / "X_test.npy").astype(np.float64))
    y = np.load(d / "y_test.npy")
    for path, row in zip(f["snapshots"], snap["per_seed"]):
        probs = 0
        for p in load_snapshots(path):  # the same two-layer network, in torch float64
            t = {k: torch.from_numpy(v.astype(np.float64)) for k, v in p.items()}
            probs = probs + torch.softmax(torch.relu(X @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"], dim=1)
        acc = float((probs.argmax(dim=1).numpy() == y).mean())
        assert row["test_accuracy"] == pytest.approx(acc, abs=1e-12)
    assert snap["test_accuracy_mean"] == pytest.approx(np.mean(snap["test_accuracy"]))
    json.dumps(summary, allow_nan=False)

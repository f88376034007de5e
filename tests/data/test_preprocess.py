"""Tests for handbackprop.data.preprocess and splits: shapes, leakage-free normalisation, determinism."""
import json

import numpy as np
import pytest

from handbackprop.data.cifar_format import read_cifar_tarball
from handbackprop.data.preprocess import preprocess, split_indices
from handbackprop.data.splits import SPLIT_FILES, load_split

N_VAL = 40
QUIET = {"log": lambda msg: None}


def _run(tarball, out_dir, seed=0, n_val=N_VAL):
    """Preprocess the synthetic tarball into ``out_dir``; return the stats dict."""
    path, md5 = tarball
    return preprocess(path, out_dir, n_val=n_val, seed=seed, source=str(path), md5=md5, **QUIET)


@pytest.fixture(scope="module")
def processed(synthetic_tarball, tmp_path_factory):
    """(out_dir, stats, raw) for one preprocessing run with seed 0."""
    out = tmp_path_factory.mktemp("prep") / "cifar10"
    stats = _run(synthetic_tarball, out)
    return out, stats, read_cifar_tarball(synthetic_tarball[0])


def test_all_files_written_with_shapes_and_dtypes(processed):
    out, stats, raw = processed
    assert sorted(p.name for p in out.iterdir()) == sorted(SPLIT_FILES)
    d = load_split(out)
    n_train = len(raw["y_train"]) - N_VAL
    for split, n in (("train", n_train), ("val", N_VAL), ("test", len(raw["y_test"]))):
        X, y = d[f"X_{split}"], d[f"y_{split}"]
        assert X.shape == (n, 3072) and X.dtype == np.float32 and X.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64
    assert (stats["n_train"], stats["n_val"]) == (n_train, N_VAL)
    assert d["label_names"] == raw["label_names"]
    assert isinstance(d["X_train"], np.memmap)


def test_norm_statistics_come_from_train_split_only(processed):
    out, _, raw = processed
    train_idx, val_idx = split_indices(len(raw["y_train"]), N_VAL, seed=0)
    X = raw["X_train"].astype(np.float64)                           # (N, 3072)
    norm = np.load(out / "norm.npz")
    assert norm["mean"].shape == norm["std"].shape == (3072,)
    assert norm["mean"].dtype == np.float64
    np.testing.assert_allclose(norm["mean"], X[train_idx].mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(norm["std"], X[train_idx].std(axis=0), rtol=1e-12)
    # Including the validation rows would give measurably different statistics.
    assert np.abs(norm["mean"] - X.mean(axis=0)).max() > 1e-3


def test_train_split_is_standardised_and_others_use_train_stats(processed):
    out, _, raw = processed
    d = load_split(out)
    np.testing.assert_allclose(d["X_train"].mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(d["X_train"].std(axis=0), 1, atol=1e-4)
    norm = np.load(out / "norm.npz")
    expected_test = (raw["X_test"] - norm["mean"]) / norm["std"]
    np.testing.assert_allclose(d["X_test"], expected_test, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(d["y_test"], raw["y_test"])


def test_train_and_val_rows_partition_the_training_images(processed):
    out, _, raw = processed
    d = load_split(out)
    norm = np.load(out / "norm.npz")
    # Undo the normalisation to recover the original uint8 rows.
    def raw_rows(X):
        return np.rint(X * norm["std"] + norm["mean"]).astype(np.uint8)
    train = {r.tobytes() for r in raw_rows(d["X_train"])}
    val = {r.tobytes() for r in raw_rows(d["X_val"])}
    assert not train & val
    assert train | val == {r.tobytes() for r in raw["X_train"]}
    # Labels travel with their rows.
    train_idx, val_idx = split_indices(len(raw["y_train"]), N_VAL, seed=0)
    np.testing.assert_array_equal(d["y_val"], raw["y_train"][val_idx])
    np.testing.assert_array_equal(d["y_train"], raw["y_train"][train_idx])


def test_stats_json_counts_and_provenance(processed, synthetic_tarball):
    out, stats, _ = processed
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["md5"] == synthetic_tarball[1]
    for split in ("train", "val", "test"):
        counts = on_disk["class_counts"][split]
        assert len(counts) == 10 and sum(counts) == on_disk[f"n_{split}"]
    assert on_disk["dtype"] == "float32" and on_disk["seed"] == 0
    assert "channel-major" in on_disk["pixel_order"]
    assert on_disk["n_train"] == stats["n_train"]


def test_same_seed_is_identical_and_other_seed_differs(processed, synthetic_tarball, tmp_path):
    out, _, _ = processed
    again = tmp_path / "again"
    other = tmp_path / "other"
    _run(synthetic_tarball, again, seed=0)
    _run(synthetic_tarball, other, seed=1)
    a, b, c = load_split(out), load_split(again), load_split(other)
    for name in ("X_train", "y_train", "X_val", "y_val", "X_test"):
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["X_val"], c["X_val"])
    assert not np.array_equal(np.load(out / "norm.npz")["mean"], np.load(other / "norm.npz")["mean"])


@pytest.mark.parametrize("n_val", [0, -3, 200, 500])
def test_bad_validation_size_is_an_error(synthetic_tarball, tmp_path, n_val):
    with pytest.raises(ValueError, match="n_val"):
        _run(synthetic_tarball, tmp_path / "bad", n_val=n_val)
    assert not (tmp_path / "bad" / "stats.json").exists()


def test_load_split_reports_missing_file_and_casts(processed, tmp_path):
    out, _, _ = processed
    d64 = load_split(out, dtype=np.float64)
    assert d64["X_val"].dtype == np.float64 and not isinstance(d64["X_val"], np.memmap)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "X_train.npy").write_bytes((out / "X_train.npy").read_bytes())
    with pytest.raises(FileNotFoundError, match="stats.json"):
        load_split(partial)


# ------------------------------------------------------------------ the search split withholds test
@pytest.fixture(scope="module")
def search_split(synthetic_tarball, tmp_path_factory):
    out = tmp_path_factory.mktemp("prep_search") / "search"
    path, md5 = synthetic_tarball
    stats = preprocess(path, out, n_val=N_VAL, seed=0, source=str(path), md5=md5, with_test=False, **QUIET)
    return out, stats


def test_the_search_split_has_no_test_arrays_on_disk(search_split):
    out, stats = search_split
    assert sorted(p.name for p in out.iterdir()) == sorted(f for f in SPLIT_FILES if "test" not in f)
    assert stats["test_withheld"] and stats["n_test"] == 0


def test_a_selection_that_reads_test_rows_fails_naming_why(search_split, processed):
    from handbackprop.data.splits import TestWithheld
    from handbackprop.study import runs

    out, _ = search_split
    d = load_split(out)
    with pytest.raises(TestWithheld, match="search split withholds"):
        d["X_test"]
    # planted: a search run that scores the test rows (evaluate_test on the search split)
    spec = {"hidden": [], "dropout": 0.0, "batch_size": 20, "eta_min": 1e-5, "eta_max": 0.01,
            "n_s": 4, "points_per_cycle": 2, "train_eval_size": 20, "divergence_factor": 10}
    with pytest.raises(TestWithheld):
        runs.run(out, spec, lam=0.0, cycles=1, seed=1, dtype="float32", evaluate_test=True,
                 log=lambda m: None)
    # and the final split, which keeps them, still scores them
    net, result, metrics = runs.run(processed[0], spec, lam=0.0, cycles=1, seed=1, dtype="float32",
                                    evaluate_test=True, log=lambda m: None)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0


def test_a_lost_test_file_of_the_final_split_is_missing_not_withheld(processed, tmp_path):
    import shutil

    out = tmp_path / "final"
    shutil.copytree(processed[0], out)
    (out / "X_test.npy").unlink()
    with pytest.raises(FileNotFoundError, match="X_test.npy"):
        load_split(out)

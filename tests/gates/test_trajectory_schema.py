"""The trajectory gate writes one schema for plain and batch-norm variants."""
import numpy as np
import pytest

from handbackprop.gates.trajectory import trajectory


def test_plain_and_batch_norm_variants_share_one_schema():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 40)
    X = rng.normal(size=(10, 30))[y] + rng.normal(size=(40, 30))  # (40, 30): 30 train, 10 held out
    ev = trajectory({"plain": {"hidden": [6]}, "bn": {"hidden": [6], "batch_norm": True}},
                    X[:30], y[:30], X_eval=X[30:], X_heldout=X[30:], y_heldout=y[30:], lam=1e-3,
                    seed=0, steps=6, batch_size=10, n_s=3, eta_min=1e-3, eta_max=0.05, tolerance=1e-10)
    plain, bn = ev["variants"]
    assert set(plain) == set(bn)
    assert plain["batch_norm"] is False and bn["batch_norm"] is True
    assert plain["state_norm_rel"] == {} and set(bn["state_norm_rel"]) == {"mean1", "var1"}
    assert plain["tolerance"] == bn["tolerance"] == 1e-10
    # evaluation evidence lives under `evaluation` for both, with its row count
    assert plain["evaluation"]["n_rows"] == bn["evaluation"]["n_rows"] == 10
    assert set(bn["evaluation"]["torch_eval"]) == {"prob_norm_rel", "prob_max_abs"}
    assert {"loss", "ref_loss", "prob_max_abs"} <= set(plain["evaluation"]["torch_eval"])


def test_a_batch_norm_variant_refuses_what_its_reference_cannot_replay():
    X, y = np.zeros((20, 8)), np.arange(20) % 10
    with pytest.raises(ValueError, match="bn_drop: a batch-norm trajectory replays float64 steps"):
        trajectory({"bn_drop": {"hidden": [4], "batch_norm": True, "dropout": 0.5}}, X, y, X_eval=X,
                   lam=0.0, seed=0, steps=2, batch_size=10, n_s=2, eta_min=1e-3, eta_max=1e-2,
                   tolerance=1e-10)

"""The training loop: determinism, records, divergence, ensembles, and the code-hash contract."""
import json

import numpy as np
import pytest

from handbackprop import stage
from handbackprop import code_hash
from handbackprop.nn.network import build_network
from handbackprop.nn.train import TrainConfig, TrainingDiverged, ensemble_metrics, record_steps, train


def blobs(n=600, d=3072, seed=0):
    """Class-dependent data a small net can learn."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, d))
    y = rng.integers(0, 10, n)
    X = (centres[y] + 3 * rng.normal(size=(n, d))).astype(np.float32)
    return X, y


def run(seed=0, **kw):
    X, y = blobs()
    net = build_network(3072, [20], dropout=kw.pop("dropout", 0.0), seed=seed)
    cfg = TrainConfig(lam=1e-3, cycles=1, batch_size=50, seed=seed, **kw)
    return net, train(net, X[:500], y[:500], X[500:], y[500:], cfg, log=lambda s: None)


def test_same_seed_same_numbers_different_seed_different():
    a, ra = run(seed=1, dropout=0.3, flip=True, max_shift=2)
    b, rb = run(seed=1, dropout=0.3, flip=True, max_shift=2)
    c, rc = run(seed=2, dropout=0.3, flip=True, max_shift=2)
    assert ra.history == rb.history
    np.testing.assert_array_equal(a.params["W1"], b.params["W1"])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_records_and_learning():
    net, r = run()
    assert r.n_s == 2 * (500 // 50)
    assert r.steps == 2 * r.n_s
    assert [h["step"] for h in r.history] == sorted(record_steps(r.steps, r.n_s, 10))
    assert len(r.history) == 11  # 10 per cycle + the end
    first, last = r.history[0], r.history[-1]
    assert last["val_accuracy"] > 0.5 > first["val_accuracy"]
    assert last["train_cost"] < first["train_cost"]
    assert last["eta"] == pytest.approx(1e-5)
    for key in ("train_loss", "train_cost", "train_accuracy", "val_loss", "val_cost", "val_accuracy", "eta"):
        assert key in last


def test_divergence_names_lambda_eta_and_step():
    with pytest.raises(TrainingDiverged, match=r"step \d+.*lambda=0.001, eta=") as err:
        run(eta_max=1e4)
    assert "diverged" in str(err.value)


def test_ensemble_averages_probabilities():
    X, y = blobs()
    nets = [build_network(3072, [20], seed=s) for s in (1, 2)]
    m2, pred = ensemble_metrics(nets, X, y, 0.0)
    p = (nets[0].predict_proba(X) + nets[1].predict_proba(X)) / 2
    np.testing.assert_array_equal(pred, p.argmax(axis=1))
    assert m2["accuracy"] == pytest.approx((p.argmax(axis=1) == y).mean())


def test_training_refuses_code_the_gates_did_not_verify(tmp_path):
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"passed": True, "code_hash": code_hash("nn")}))
    assert stage.require_verified([good]) == code_hash("nn")
    stale = tmp_path / "s.json"
    stale.write_text(json.dumps({"passed": True, "code_hash": "0" * 64}))
    with pytest.raises(stage.UnverifiedCode, match="not the code the gates verified"):
        stage.require_verified([good, stale])
    failed = tmp_path / "f.json"
    failed.write_text(json.dumps({"passed": False, "failures": ["x"], "code_hash": code_hash("nn")}))
    with pytest.raises(stage.UnverifiedCode, match="records a failure"):
        stage.require_verified([failed])


def test_a_result_records_the_verified_hash_and_refuses_code_changed_while_it_ran():
    from handbackprop import code_hashes
    prov = stage.still_verified(code_hash("nn"))
    assert prov["code_hash"] == code_hash("nn")
    assert prov["code_hashes"] == {g: code_hashes()[g] for g in ("data", "model", "study")}
    with pytest.raises(stage.UnverifiedCode, match="changed while this job ran"):
        stage.still_verified("0" * 64)


def _diverge(lam, eta_max, optimizer="sgd"):
    """Train the small net of run() with these settings; the TrainingDiverged raised, or None."""
    X, y = blobs()
    net = build_network(3072, [20], seed=0)
    cfg = TrainConfig(lam=lam, eta_max=eta_max, cycles=1, batch_size=50, optimizer=optimizer)
    try:
        train(net, X[:500], y[:500], X[500:], y[500:], cfg, log=lambda s: None)
    except TrainingDiverged as e:
        return e
    return None


def _check_fields(err, lam, eta_max):
    """The structured fields describe the step that tripped the check."""
    from handbackprop.nn.schedule import cyclic_lr

    n_s = 2 * (500 // 50)
    assert err.lam == lam and err.eta_max == eta_max and err.step > 0
    assert err.eta == pytest.approx(cyclic_lr(err.step, 1e-5, eta_max, n_s))
    assert err.l2_factor == pytest.approx(2 * lam * err.eta)
    assert not err.cost <= 10 * max(err.start_cost, 1.0)  # the divergence test really tripped
    assert f"step {err.step}:" in str(err) and "raise lambda" not in str(err)


def test_l2_overshoot_divergence_says_lower_lambda_or_eta_max():
    """lam * eta large: weight decay alone overshoots; lowering either one (as advised) cures it."""
    err = _diverge(lam=10.0, eta_max=0.5)
    assert err is not None
    _check_fields(err, 10.0, 0.5)
    assert err.cause == "l2" and err.l2_factor >= 1
    assert "lower lambda (below 1/(2*eta_max) = 1) or eta_max (below 1/(2*lambda) = 0.05)" in str(err)
    assert _diverge(lam=0.9, eta_max=0.5) is None     # lambda below the advised bound
    assert _diverge(lam=10.0, eta_max=0.045) is None  # eta_max below the advised bound


def test_step_size_divergence_says_lower_eta_max_only():
    """Small lam, huge eta: the loss step explodes; lowering eta_max cures it, raising lambda does not."""
    err = _diverge(lam=1e-6, eta_max=30.0)
    assert err is not None
    _check_fields(err, 1e-6, 30.0)
    assert err.cause == "step_size" and err.l2_factor < 1e-3
    assert "lower eta_max (now 30; it diverged at eta=" in str(err)
    assert "lower lambda" not in str(err)
    assert _diverge(lam=1e-6, eta_max=0.5) is None
    assert _diverge(lam=1e-1, eta_max=30.0) is not None  # the old advice, raise lambda, fails


def test_divergence_record_is_json_safe_and_pickles():
    import pickle

    err = TrainingDiverged(step=7, cost=float("nan"), start_cost=2.3, eta=0.3, lam=2.0,
                           eta_max=0.5, optimizer="adam")
    d = json.loads(json.dumps(err.to_dict(), allow_nan=False))
    assert d["cost"] is None and d["cost_finite"] is False and d["step"] == 7
    assert d["cause"] == "step_size"  # Adam normalises its steps: the L2 factor says nothing
    assert d["l2_factor"] == pytest.approx(1.2) and d["message"] == str(err)
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.to_dict() == err.to_dict()


def test_a_confidently_wrong_float32_network_reports_its_true_loss():
    """A float32 probability underflows to 0 below ~1e-45: the loss must come from the scores'
    log-softmax (as torch's cross_entropy in float64 computes it), not from clamped probabilities."""
    import torch

    rng = np.random.default_rng(0)
    net = build_network(3072, [], 10, 0.0, "float32", 0)
    net.params["W1"] *= 2000  # scores of thousands: the wrong classes' probabilities underflow
    X = rng.normal(size=(50, 3072)).astype(np.float32)
    y = rng.integers(0, 10, 50)
    scores, _ = net.forward(X)
    want = float(torch.nn.functional.cross_entropy(torch.tensor(scores, dtype=torch.float64),
                                                   torch.tensor(y)))
    assert (net.predict_proba(X)[np.arange(50), y] == 0).any()  # the case that used to clamp
    assert net.evaluate(X, y, 0.0)["loss"] == pytest.approx(want, rel=1e-12)
    # and an ensemble of the network with itself is the network, loss included
    ens, pred = ensemble_metrics([net, net], X, y, 0.0)
    assert ens["loss"] == pytest.approx(want, rel=1e-12)
    assert (pred == net.predict_log_proba(X).argmax(axis=1)).all()

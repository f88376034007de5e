"""The checks beyond the maths: exactness in long double, the initial weight scale, the torch
replay of augmentation and dropout, and the evaluation figures of the trajectory gate."""
import numpy as np
import pytest
import torch

from handbackprop.gates import exactness
from handbackprop.gates.initialisation import init_scale_figures
from handbackprop.gates.runner import run_gate
from handbackprop.gates.torch_reference import torch_cost_and_grads
from handbackprop.gates.torch_replay import torch_augment
from handbackprop.nn import augment
from handbackprop.nn.network import Network, build_network

THRESH = {"max_rel": 1e-7, "norm_rel": 1e-10, "cost_rel": 1e-12, "fd_norm_rel": 1e-6, "exact_ratio": 2.0}


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(10, 3072))
    y = rng.integers(0, 10, 150)
    X = centres[y] + 2 * rng.normal(size=(150, 3072))
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32), y


def _small_net(rng, hidden, dropout=0.0):
    net = Network([3072, *hidden, 10], dropout=dropout, dtype=np.float64)
    sizes = net.sizes
    net.set_params({k: v for j, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), 1)
                    for k, v in ((f"W{j}", rng.normal(0, a ** -0.5, (a, b))),
                                 (f"b{j}", rng.normal(0, 0.1, b)))})
    return net


# ------------------------------------------------------------------ exactness
@pytest.mark.parametrize("hidden,dropout", [([], 0.0), ([20], 0.0), ([20, 15], 0.4)])
def test_long_double_gradient_agrees_with_autograd(images, hidden, dropout):
    """The independent long-double backward computes the same function as torch."""
    X, y = images[0][:12].astype(np.float64), images[1][:12]
    rng = np.random.default_rng(3)
    net = _small_net(rng, hidden, dropout)
    masks = net.draw_masks(rng, 12)
    cost, grads = exactness.longdouble_cost_and_grads(net.params, X, y, 0.05, masks)
    t_cost, _, t_grads = torch_cost_and_grads(net.params, X, y, 0.05, masks)
    assert abs(float(cost) - t_cost) < 1e-13 * t_cost
    for k, g in t_grads.items():
        assert np.linalg.norm(grads[k].astype(np.float64) - g) < 1e-13 * np.linalg.norm(g), k


def test_platform_long_double_is_recorded():
    p = exactness.platform()
    assert p["extended"] == (np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)
    assert p["mantissa_bits"] == np.finfo(np.longdouble).nmant and p["note"]


def test_gradcheck_reports_errors_against_the_exact_gradient(images):
    s = {"n_images": 10, "lam": 0.05, "seed": 7, "fd_coords": 3, "thresholds": THRESH,
         "variants": {"linear": {"hidden": []}, "two_layer_dropout": {"hidden": [30], "dropout": 0.3}}}
    ev = run_gate("gradcheck", *images, s)
    assert ev["passed"], ev["failures"]
    if not ev["longdouble"]["extended"]:
        pytest.skip("np.longdouble is float64 here: no exact reference")
    for v in ev["variants"]:
        assert v["exact_cost"]["ours_err"] < 1e-15
        for name, f in v["params"].items():
            # both are float64 rounding errors, a few ulps; ours as close as autograd's
            assert 0 < f["exact_ours_err"] < 1e-14 and 0 < f["exact_torch_err"] < 1e-14, name
            assert f["exact_ratio"] <= 2.0, (v["variant"], name, f)


def test_a_gradient_less_exact_than_autograd_fails_the_ratio(images):
    X, y = images[0][:10].astype(np.float64), images[1][:10]
    net = _small_net(np.random.default_rng(4), [20])
    cost, _, t_grads = torch_cost_and_grads(net.params, X, y, 0.05)
    sloppy = {k: g * (1 + 1e-13) for k, g in t_grads.items()}  # ~450 ulps off: still "agrees"
    figs = exactness.exactness_figures(net.params, X, y, 0.05, None, sloppy, t_grads, cost, cost)
    if not figs["extended"]:
        pytest.skip("np.longdouble is float64 here")
    assert all(f["ratio"] > 2.0 for f in figs["params"].values()), figs


# ------------------------------------------------------------------ initial scale
@pytest.mark.parametrize("hidden", [[], [50], [40, 20]])
def test_documented_initialisation_passes(hidden):
    net = build_network(3072, hidden, dtype="float32", seed=5)
    figs, failures = init_scale_figures("m", net, 1.5)
    assert not failures, failures
    for name, f in figs.items():
        if f["documented_std"]:
            assert abs(f["ratio"] - 1) < 0.2 or f["n"] <= 10, (name, f)


@pytest.mark.parametrize("hidden", [[], [50]])
@pytest.mark.parametrize("factor", [1 / 50, 100.0])
def test_initialisation_too_small_or_too_large_fails(hidden, factor):
    net = build_network(3072, hidden, dtype="float64", seed=5)
    for k in net.weight_names():
        net.params[k] *= factor
    figs, failures = init_scale_figures("m", net, 1.5)
    assert any("W1" in f for f in failures), failures


def test_nonzero_bias_of_a_deep_net_fails():
    net = build_network(3072, [50], dtype="float64", seed=5)
    net.params["b1"][3] = 1e-3
    _, failures = init_scale_figures("m", net, 1.5)
    assert failures and "b1" in failures[0] and "0" in failures[0]


def test_the_gate_checks_what_init_params_documents():
    """If the docstring changes, gates/initialisation.py must change with it."""
    doc = " ".join(Network.init_params.__doc__.split())
    assert "W, b ~ N(0, 0.01^2)" in doc and "W_l ~ N(0, 1/fan_in)" in doc and "biases 0" in doc


def test_bad_tolerance_is_refused():
    with pytest.raises(ValueError, match="init_scale_tolerance"):
        init_scale_figures("m", build_network(3072, [], seed=1), 1.0)


# ------------------------------------------------------------------ torch replay
def test_torch_augmentation_matches_ours_and_the_definition():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3072)).astype(np.float32)
    flips, dy, dx = augment.draw_augmentation(rng, 40, True, 3)
    ours = augment.apply_augmentation(X, flips, dy, dx)
    theirs = torch_augment(torch.tensor(X), flips, dy, dx).numpy()
    np.testing.assert_array_equal(ours, theirs)
    # the definition, pixel by pixel for one image: flip, then shift, zeros shifted in
    i = int(np.flatnonzero(flips & (dy != 0) & (dx != 0))[0])
    src = X[i].reshape(3, 32, 32)
    out = theirs[i].reshape(3, 32, 32)
    for r, c in [(0, 0), (5, 7), (31, 31), (16, 2)]:
        sr, sc = r - dy[i], c - dx[i]
        want = src[:, sr, 31 - sc] if 0 <= sr < 32 and 0 <= sc < 32 else np.zeros(3)
        np.testing.assert_array_equal(out[:, r, c], want)


# ------------------------------------------------------------------ evaluation in the trajectory gate
TRAJ = {"n_images": 100, "steps": 20, "batch_size": 30, "n_s": 5, "eta_min": 1e-5, "eta_max": 0.1,
        "lam": 0.01, "seed": 7, "tolerance": 1e-10, "float32_tolerance": 1e-4, "heldout": 50,
        "variants": {"linear": {"hidden": []},
                     "two_layer_dropout_aug": {"hidden": [30], "dropout": 0.3, "flip": True,
                                               "max_shift": 3},
                     "two_layer_f32": {"hidden": [30], "dtype": "float32"},
                     "bonus_f32": {"hidden": [30], "dropout": 0.3, "flip": True, "max_shift": 3,
                                   "optimizer": "nesterov", "dtype": "float32"}}}


@pytest.fixture(scope="module")
def trajectory_evidence(images):
    return run_gate("trajectory", *images, TRAJ)


def test_trajectory_gate_scores_every_variant_and_ensemble(trajectory_evidence):
    ev = trajectory_evidence
    assert ev["passed"], ev["failures"]
    for v in ev["variants"]:
        e = v["evaluation"]
        assert e["n_rows"] == 50 and e["forward"]["mispredicted_rows"] == 0
        assert e["torch_eval"]["accuracy"] == e["torch_eval"]["ref_accuracy"] or \
            e["torch_eval"]["near_tie_rows"]
    assert set(ev["ensembles"]) == {"float32", "float64"}
    for ens in ev["ensembles"].values():
        assert ens["members"] == 2
        for pair in ens["identical_pairs"]:  # (p + p) / 2 == p exactly
            assert pair["loss_rel"] == 0 and pair["differing_predictions"] == 0


def test_float32_agreement_is_well_inside_its_tolerance(trajectory_evidence):
    """float32_tolerance 1e-4 keeps a margin of 10x or more over what correct code measures."""
    for v in trajectory_evidence["variants"]:
        if v["dtype"] != "float32":
            assert v["max_cost_rel"] < 1e-12
            continue
        e = v["evaluation"]["torch_eval"]
        figures = [v["max_cost_rel"], *v["weight_norm_rel"].values(), e["prob_max_abs"], e["loss_rel"]]
        assert 0 < max(figures) < 1e-5, (v["variant"], figures)  # not bit-identical, but close


def test_too_few_rows_for_the_heldout_set_is_a_clear_failure(images):
    ev = run_gate("trajectory", images[0][:120], images[1][:120], TRAJ)
    assert not ev["passed"] and "heldout" in ev["failures"][0] and "120" in ev["failures"][0]

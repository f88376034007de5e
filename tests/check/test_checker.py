"""The checker against independent torch float64 references (torch.nn.functional), both
directions: the right layers pass with the figures a direct computation gives, planted bugs
fail and name the wrong array."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from handbackprop.check import ContractError, check_layer
from handbackprop.check.checker import FLOAT32_NOTE, prepare, run_backward
from handbackprop.check.errors import max_relative_error, norm_relative_error

from handbackprop.check.contract import load_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name):
    return load_module(EXAMPLES / f"{name}.py")

BN, CONV, LN, ATT = example("batchnorm"), example("conv"), example("layernorm"), example("attention")


def torch_reference(kind, x, params, G):
    """The gradient from torch's own layer, not from the example's forward."""
    xt = torch.tensor(x, requires_grad=True)
    pt = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    if kind == "bn":
        out = F.batch_norm(xt, None, None, pt["gamma"], pt["beta"], training=True, eps=1e-5)
    elif kind == "attn":
        q, k, v = (xt @ pt[w] for w in ("Wq", "Wk", "Wv"))
        out = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    elif kind == "ln":
        out = F.layer_norm(xt, (x.shape[1],), pt["gamma"], pt["beta"], eps=1e-5)
    else:
        out = F.conv2d(xt, pt["w"], pt["b"], padding=1)
    grads = torch.autograd.grad((out * torch.tensor(G)).sum(), [xt, *pt.values()])
    return dict(zip(["x", *pt], (g.numpy() for g in grads)))


@pytest.mark.parametrize("kind,layer", [("bn", BN.BatchNorm), ("ln", LN.LayerNorm), ("conv", CONV.Conv2d),
                                         ("attn", ATT.SelfAttention)])
def test_correct_layers_pass_with_the_figures_torch_gives(kind, layer):
    ev = check_layer(layer, seed=3)
    assert ev["passed"] and ev["verdict"] == "pass", ev["failures"]
    lay, x, params, kwargs, G, _, _, _ = prepare(layer, seed=3)  # the same point and upstream
    ours = run_backward(lay, x, params, kwargs, G)
    ref = torch_reference(kind, x, params, G)
    for name, fig in ev["arrays"].items():
        direct = norm_relative_error(ours[name], ref[name])
        assert direct < 1e-13, (name, direct)  # the example agrees with torch's own layer
        # the checker's figure is the same comparison through the user's forward under autograd
        assert fig["norm_rel"] < 1e-13 and fig["max_rel"] < 1e-9
        assert fig["fd_norm_rel"] < 1e-8
        if fig.get("exact_ours_err") is not None:  # x86-64: long double is wider
            assert fig["exact_ours_err"] < 1e-14 and fig["exact_torch_err"] < 1e-14


def test_dropped_variance_path_fails_naming_dx_and_how_wrong():
    ev = check_layer(BN.BatchNormDroppedVariancePath)
    assert ev["verdict"] == "backward wrong"
    assert len(ev["failures"]) == 1 and ev["failures"][0].startswith("dx is wrong")
    assert "not numerics" in ev["failures"][0]
    # the figure is the one a direct comparison with torch's batch norm gives
    _, x, params, kwargs, G, _, _, _ = prepare(BN.BatchNormDroppedVariancePath)
    ref = torch_reference("bn", x, params, G)
    bad = BN.BatchNormDroppedVariancePath.backward(G, BN.bn_forward(x, params)[1])[0]
    assert ev["arrays"]["x"]["norm_rel"] == pytest.approx(norm_relative_error(bad, ref["x"]), rel=1e-9)
    assert ev["arrays"]["x"]["max_rel"] == pytest.approx(max_relative_error(bad, ref["x"]), rel=1e-9)
    assert ev["arrays"]["x"]["norm_rel"] > 1e-3
    assert ev["arrays"]["gamma"]["norm_rel"] < 1e-13  # right arrays are not blamed


def test_an_upstream_gradient_of_ones_would_pass_the_wrong_backward():
    """Why the checker never uses ones: the true dx of batch norm is then 0, and so is the bug's."""
    _, x, params, _, _, _, _, _ = prepare(BN.BatchNorm)
    ones = np.ones((x.shape[0], x.shape[1]))
    ref = torch_reference("bn", x, params, ones)
    bad = BN.BatchNormDroppedVariancePath.backward(ones, BN.bn_forward(x, params)[1])[0]
    assert np.abs(ref["x"]).max() < 1e-12 and np.abs(bad).max() < 1e-12


def test_wrong_reference_is_blamed_not_the_backward():
    ev = check_layer(BN.BatchNormEvalModeReference)
    assert ev["verdict"] == "reference wrong"
    assert ev["failures"][0].startswith("dx: the REFERENCE is at fault")
    assert ev["arrays"]["x"]["fd_norm_rel"] < 1e-8  # the backward agrees with its own forward
    assert ev["arrays"]["x"]["ref_fd_norm_rel"] > 1e-3
    assert ev["forward_norm_rel"] < 1e-14  # same values at the point, different derivative


def test_the_wrong_reference_is_the_published_reports_finite_differences():
    """Centred differences of the evaluation-mode cost with the statistics frozen give the same
    gradient as the example's torch_forward: the report's reference, reproduced."""
    _, x, params, _, G, _, _, _ = prepare(BN.BatchNormEvalModeReference)
    mu, var = x.mean(0), x.var(0)

    def eval_cost(xx):
        return float(((params["gamma"] * (xx - mu) / np.sqrt(var + 1e-5) + params["beta"]) * G).sum())

    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + 1e-6
        plus = eval_cost(x)
        x[i] = old - 1e-6
        minus = eval_cost(x)
        x[i] = old
        fd[i] = (plus - minus) / 2e-6
    xt = torch.tensor(x, requires_grad=True)
    out = BN.bn_eval_mode_frozen(xt, {k: torch.tensor(v) for k, v in params.items()})
    (dx_ref,) = torch.autograd.grad((out * torch.tensor(G)).sum(), [xt])
    assert norm_relative_error(fd, dx_ref.numpy()) < 1e-7
    true = torch_reference("bn", x, params, G)["x"]
    assert norm_relative_error(fd, true) > 1e-2  # the report's "bug" is the reference's


# Planted bugs: (layer name, backward) -> the array that must be named; each fails, none blames
# an array it did not touch.
def _ln_no_mean_path(dout, cache):
    x_hat, gamma, inv_std = cache
    g = dout * gamma
    d = dout.shape[1]
    dx = inv_std / d * (d * g - x_hat * (g * x_hat).sum(axis=1, keepdims=True))
    return dx, {"gamma": (dout * x_hat).sum(axis=0), "beta": dout.sum(axis=0)}


def _ln_dgamma_unscaled(dout, cache):
    dx, dp = LN.ln_backward(dout, cache)
    return dx, {**dp, "gamma": dout.sum(axis=0)}


def _bn_gamma_treated_as_one(dout, cache):
    x_hat, gamma, inv_std = cache
    return BN.bn_backward(dout, (x_hat, np.ones_like(gamma), inv_std))


def _conv_db_not_summed_over_positions(dout, cache):
    dx, dp = CONV.conv_backward(dout, cache)
    return dx, {**dp, "b": dout[:, :, 0, 0].sum(axis=0)}


def _conv_dx_without_overlap(dout, cache):
    dx, dp = CONV.conv_backward(dout, cache)
    return dx / 2, dp


PLANTED = [
    (LN.LayerNorm, _ln_no_mean_path, {"x"}),
    (LN.LayerNorm, _ln_dgamma_unscaled, {"gamma"}),
    (BN.BatchNorm, _bn_gamma_treated_as_one, {"x"}),  # dgamma, dbeta do not involve γ
    (CONV.Conv2d, _conv_db_not_summed_over_positions, {"b"}),
    (CONV.Conv2d, _conv_dx_without_overlap, {"x"}),
]


@pytest.mark.parametrize("base,backward,named", PLANTED, ids=[b.__name__ for _, b, _ in PLANTED])
def test_planted_bugs_fail_and_name_the_array(base, backward, named):
    bugged = type("Bugged", (), {"forward": staticmethod(base.forward), "example": staticmethod(base.example),
                                 "backward": staticmethod(backward)})
    ev = check_layer(bugged, fd=False, exact=False)
    assert ev["verdict"] == "backward wrong"
    blamed = {f.split(" ")[0][1:] for f in ev["failures"]}  # "dx is wrong" -> "x"
    assert blamed == named, ev["failures"]


def test_float32_layers_are_checked_in_float64_with_a_note():
    _, x, params = (None, *LN.LayerNorm.example(np.random.default_rng(0)))
    ev = check_layer(LN.LayerNorm, x.astype(np.float32), {k: v.astype(np.float32) for k, v in params.items()})
    assert ev["passed"] and FLOAT32_NOTE in ev["notes"]
    assert ev["arrays"]["x"]["norm_rel"] < 1e-13  # float64 figures, not float32 rounding
    # then float32 itself against the float64 reference: float32 rounding, no false alarm
    for fig in ev["arrays"].values():
        assert 1e-9 < fig["float32_norm_rel"] < 1e-5
    assert any(n.startswith("then in float32") and "float32 rounding" in n for n in ev["notes"])


class _Square:
    """out = x²; the backward is right but loses digits to cancellation: ((x+c)² - (x-c)²)/(2c)."""
    forward = staticmethod(lambda x, params: (x * x, x))
    example = staticmethod(lambda rng: (rng.normal(size=(4, 3)), {}))

    @staticmethod
    def backward(dout, x):
        c = 1e3
        return dout * ((x + c) ** 2 - (x - c) ** 2) / (2 * c), {}


def test_exactness_ratio_flags_a_right_but_lossy_backward_as_a_warning():
    ev = check_layer(_Square)
    fig = ev["arrays"]["x"]
    assert ev["passed"]  # 1e-14-ish: rounding, not a bug
    if fig.get("exact_ratio") is not None:
        assert fig["exact_ratio"] > 2 and any("numerically worse" in n for n in ev["notes"])


def test_forward_calling_numpy_is_named_with_its_line():
    with pytest.raises(ContractError) as e:
        check_layer(LN.LayerNormForwardCallsNumpy)
    msg = str(e.value)
    assert "np.mean" in msg and "np.sqrt" in msg and "array_namespace" in msg
    src = (example("layernorm").__file__)
    lines = open(src).read().splitlines()
    line_no = next(i for i, l in enumerate(lines, 1) if "mu = np.mean(x, axis=1" in l)
    assert f"line {line_no}" in msg


def _bad(backward):
    return type("Bad", (), {"forward": staticmethod(LN.ln_forward), "example": staticmethod(LN.LayerNorm.example),
                            "backward": staticmethod(backward)})


def test_backward_returning_three_arrays_is_a_clear_error():
    def three(dout, cache):
        dx, dp = LN.ln_backward(dout, cache)
        return dx, dp["gamma"], dp["beta"]
    with pytest.raises(ContractError, match=r"must return \(dx, dparams\).*a tuple of 3"):
        check_layer(_bad(three))


def test_wrong_shapes_and_names_are_clear_errors():
    def transposed(dout, cache):
        dx, dp = LN.ln_backward(dout, cache)
        return dx.T, dp
    with pytest.raises(ContractError, match=r"dx has shape \(8, 5\), but its input has shape \(5, 8\)"):
        check_layer(_bad(transposed))

    def renamed(dout, cache):
        dx, dp = LN.ln_backward(dout, cache)
        return dx, {"g": dp["gamma"], "beta": dp["beta"]}
    with pytest.raises(ContractError, match=r"missing \['gamma'\]; unexpected \['g'\]"):
        check_layer(_bad(renamed))


def test_forward_failing_on_torch_names_the_users_line():
    def fwd(x, params):
        out = x.astype(x.dtype)  # a NumPy-only method: torch tensors have no astype
        return out * params["a"], (x,)
    layer = type("L", (), {"forward": staticmethod(fwd), "backward": staticmethod(lambda d, c: (d, {"a": d.sum(0)})),
                           "example": staticmethod(lambda rng: (rng.normal(size=(3, 2)), {"a": rng.normal(size=2)}))})
    with pytest.raises(ContractError) as e:
        check_layer(layer)
    line_no = fwd.__code__.co_firstlineno + 1
    assert f"test_checker.py:{line_no}: out = x.astype(x.dtype)" in str(e.value)
    assert "failed on torch tensors" in str(e.value) and "astype" in str(e.value)


def test_upstream_gradient_is_drawn_apart_from_the_point():
    """x = 2 + 3 z from default_rng(0) and G = z from default_rng(0) would make G affine in x,
    and batch norm's backward maps that to ~0: every relative error would be noise (this was a
    false alarm of the checker before G got its own stream)."""
    rng = np.random.default_rng(0)
    x, params = BN.bn_example(rng)
    G_same = np.random.default_rng(0).standard_normal(x.shape)
    G_apart = np.random.default_rng([0, 1]).standard_normal(x.shape)
    trap = np.abs(BN.bn_backward(G_same, BN.bn_forward(x, params)[1])[0]).max()
    usual = np.abs(BN.bn_backward(G_apart, BN.bn_forward(x, params)[1])[0]).max()
    assert trap < 1e-4 * usual  # the trap: dx ~ 0 (not exactly: eps inside the square root)
    ev = check_layer(BN.BatchNorm, x, params, seed=0)
    assert ev["passed"], ev["failures"]
    assert ev["arrays"]["x"]["norm_rel"] < 1e-13


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_false_alarms_across_points(seed):
    for layer in (BN.BatchNorm, LN.LayerNorm, CONV.Conv2d, ATT.SelfAttention):
        ev = check_layer(layer, seed=seed, exact=False)
        assert ev["passed"], (layer.__name__, ev["failures"])
        ev = check_layer(BN.BatchNormDroppedVariancePath, seed=seed, fd=False, exact=False)
        assert ev["verdict"] == "backward wrong"

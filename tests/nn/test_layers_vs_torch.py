"""Each layer and whole networks against the same computation in PyTorch float64 (micrograd style)."""
import numpy as np
import pytest
import torch

from handbackprop.nn import layers
from handbackprop.nn.network import Network, build_network

RNG = np.random.default_rng(0)


def t(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


def test_affine_backward_matches_autograd():
    x, W, b = RNG.normal(size=(7, 5)), RNG.normal(size=(5, 3)), RNG.normal(size=3)
    out, cache = layers.affine_forward(x, W, b)
    dout = RNG.normal(size=out.shape)
    dx, dW, db = layers.affine_backward(dout, cache)
    xt, Wt, bt = t(x, True), t(W, True), t(b, True)
    ot = xt @ Wt + bt
    ot.backward(t(dout))
    np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-14)
    for ours, ref in ((dx, xt), (dW, Wt), (db, bt)):
        np.testing.assert_allclose(ours, ref.grad.numpy(), rtol=1e-13, atol=1e-14)


def test_relu_and_dropout_backward_match_autograd():
    x = RNG.normal(size=(6, 4))
    mask = layers.dropout_mask(np.random.default_rng(1), x.shape, 0.5, np.dtype(np.float64))
    h, rc = layers.relu_forward(x)
    d, dc = layers.dropout_forward(h, mask)
    dout = RNG.normal(size=x.shape)
    dx = layers.relu_backward(layers.dropout_backward(dout, dc), rc)
    xt = t(x, True)
    (torch.relu(xt) * t(mask)).backward(t(dout))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-15)
    assert set(np.unique(mask)) <= {0.0, 2.0}  # inverted: kept units scaled by 1/(1-p)


def test_dropout_mask_keeps_expected_activation():
    mask = layers.dropout_mask(np.random.default_rng(2), (400, 500), 0.3, np.dtype(np.float32))
    assert mask.dtype == np.float32
    assert abs(mask.mean() - 1.0) < 0.01
    assert abs((mask == 0).mean() - 0.3) < 0.01


def test_softmax_cross_entropy_is_stable_and_matches_torch():
    scores = RNG.normal(size=(8, 10)) * 50 + 1000  # exp(1000) would overflow without the shift
    y = RNG.integers(0, 10, 8)
    loss, dscores, probs = layers.softmax_cross_entropy(scores, y)
    st = t(scores, True)
    lt = torch.nn.functional.cross_entropy(st, torch.as_tensor(y))
    lt.backward()
    assert np.isfinite(loss)
    assert loss == pytest.approx(float(lt.detach()), rel=1e-14)
    np.testing.assert_allclose(dscores, st.grad.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


@pytest.mark.parametrize("hidden", [[], [20], [20, 15]])
@pytest.mark.parametrize("dropout", [0.0, 0.4])
def test_network_cost_and_grads_match_torch(hidden, dropout):
    """Depth is a list: the linear classifier, the two-layer net and a deeper one share one code path."""
    from handbackprop.gates.torch_reference import torch_cost_and_grads

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(12, 30)), rng.integers(0, 10, 12)
    net = Network([30, *hidden, 10], dropout=dropout, dtype=np.float64).init_params(rng)
    masks = net.draw_masks(rng, 12)
    assert (masks is None) == (dropout == 0.0 or not hidden)
    loss, reg, grads = net.cost_and_grads(X, y, 0.1, masks)
    cost, t_loss, t_grads = torch_cost_and_grads(net.params, X, y, 0.1, masks)
    assert loss + reg == pytest.approx(cost, rel=1e-13)
    assert loss == pytest.approx(t_loss, rel=1e-13)
    assert set(grads) == set(net.params) == set(t_grads)
    for k in grads:
        np.testing.assert_allclose(grads[k], t_grads[k], rtol=1e-10, atol=1e-13)


def test_regulariser_covers_weights_not_biases():
    net = build_network(30, [20], dtype="float64", seed=0)
    net.params["b1"][:] = 100.0
    expected = 0.5 * sum((net.params[k] ** 2).sum() for k in ("W1", "W2"))
    assert net.regulariser(0.5) == pytest.approx(expected)


def test_float32_stays_float32():
    net = build_network(30, [20], dtype="float32", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 30)).astype(np.float32)
    scores, _ = net.forward(X)
    _, _, grads = net.cost_and_grads(X, np.arange(5), 1e-3)
    assert scores.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_initialisation_follows_the_study():
    lin = build_network(3072, [], seed=0, dtype="float64")
    assert lin.params["W1"].std() == pytest.approx(0.01, rel=0.02)
    assert lin.params["b1"].std() > 0
    two = build_network(3072, [500], seed=0, dtype="float64")
    assert two.params["W1"].std() == pytest.approx(1 / np.sqrt(3072), rel=0.02)
    assert two.params["W2"].std() == pytest.approx(1 / np.sqrt(500), rel=0.05)
    assert not two.params["b1"].any() and not two.params["b2"].any()
    again = build_network(3072, [500], seed=0, dtype="float64")
    np.testing.assert_array_equal(two.params["W1"], again.params["W1"])


def test_bad_network_arguments_are_named():
    with pytest.raises(ValueError, match="dtype"):
        Network([3, 2], dtype=np.float16)
    with pytest.raises(ValueError, match="dropout"):
        Network([3, 4, 2], dropout=1.0)

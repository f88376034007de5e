"""Batch normalisation against torch float64: the layer, the running statistics, whole networks,
initialisation and saving (micrograd style: the same computation in torch, compared directly)."""
import numpy as np
import pytest
import torch
import yaml
from torch import nn

from handbackprop.nn import batchnorm
from handbackprop.nn.network import Network, build_network, network_from_arrays

from conftest import REPO

F = torch.nn.functional


def t(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64, requires_grad=grad)


def layer_case(n, h, seed, constant_column=None):
    rng = np.random.default_rng(seed)
    s = rng.normal(2.0, 3.0, size=(n, h))  # off-centre and wide, so normalising matters
    if constant_column is not None:
        s[:, constant_column] = 4.0
    gamma, beta = rng.normal(1.0, 0.3, h), rng.normal(0.0, 0.5, h)
    dout = rng.normal(size=(n, h))
    return s, gamma, beta, dout


@pytest.mark.parametrize("n,h,constant", [(16, 7, None), (9, 1, None), (12, 5, 2)],
                         ids=["batch", "one_feature", "constant_feature"])
def test_train_forward_and_backward_match_autograd(n, h, constant):
    s, gamma, beta, dout = layer_case(n, h, seed=n + h, constant_column=constant)
    out, cache, (mu, var) = batchnorm.batchnorm_forward(s, gamma, beta)
    ds, dgamma, dbeta = batchnorm.batchnorm_backward(dout, cache)

    st, gt, bt = t(s, True), t(gamma, True), t(beta, True)
    ot = F.batch_norm(st, None, None, weight=gt, bias=bt, training=True, eps=1e-5)
    ot.backward(t(dout))
    np.testing.assert_allclose(out, ot.detach().numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(mu, s.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(var, s.var(axis=0), rtol=1e-13, atol=1e-300)  # biased
    for ours, ref in ((ds, st), (dgamma, gt), (dbeta, bt)):
        np.testing.assert_allclose(ours, ref.grad.numpy(), rtol=1e-11, atol=1e-11)


def test_constant_feature_is_normalised_by_eps_alone():
    """σ² = 0: ŝ = 0 and ds = γ (dout - mean dout) / sqrt(ε), finite and as large as ε makes it."""
    s, gamma, beta, dout = layer_case(12, 5, seed=3, constant_column=2)
    out, cache, _ = batchnorm.batchnorm_forward(s, gamma, beta)
    ds, _, _ = batchnorm.batchnorm_backward(dout, cache)
    np.testing.assert_allclose(out[:, 2], beta[2], rtol=1e-15)
    expected = gamma[2] * (dout[:, 2] - dout[:, 2].mean()) / np.sqrt(1e-5)
    np.testing.assert_allclose(ds[:, 2], expected, rtol=1e-12)
    _, cache_big_eps, _ = batchnorm.batchnorm_forward(s, gamma, beta, eps=1e-3)
    ds_big, _, _ = batchnorm.batchnorm_backward(dout, cache_big_eps)
    assert np.all(np.abs(ds_big[:, 2]) < np.abs(ds[:, 2]))  # ε sets the scale: it matters


def test_training_batch_of_one_row_is_refused():
    with pytest.raises(ValueError, match="at least 2 rows"):
        batchnorm.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3))


@pytest.mark.parametrize("momentum", [0.1, 0.35])
def test_running_statistics_and_eval_forward_match_batchnorm1d(momentum):
    rng = np.random.default_rng(5)
    h = 6
    gamma, beta = rng.normal(1.0, 0.3, h), rng.normal(0.0, 0.5, h)
    ref = nn.BatchNorm1d(h, eps=1e-5, momentum=momentum, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(t(gamma))
        ref.bias.copy_(t(beta))
    mean, var = np.zeros(h), np.ones(h)  # torch's starting values
    ref.train()
    for n in (10, 7, 3):  # batch sizes differ: the unbiased factor n/(n-1) differs
        s = rng.normal(1.0, 2.0, (n, h))
        _, _, (mu, v) = batchnorm.batchnorm_forward(s, gamma, beta)
        batchnorm.update_running_stats(mean, var, mu, v, n, momentum)
        ref(t(s))
    np.testing.assert_allclose(mean, ref.running_mean.numpy(), rtol=1e-14)
    np.testing.assert_allclose(var, ref.running_var.numpy(), rtol=1e-14)
    s = rng.normal(1.0, 2.0, (8, h))
    ref.eval()
    with torch.no_grad():
        expected = ref(t(s)).numpy()
    np.testing.assert_allclose(batchnorm.batchnorm_eval_forward(s, gamma, beta, mean, var),
                               expected, rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------------- network
class TorchBN(nn.Module):
    """The test's own torch network: Linear(bias=False) -> BatchNorm1d -> ReLU (-> mask), then Linear."""

    def __init__(self, net: Network):
        super().__init__()
        L = net.n_layers
        self.lins = nn.ModuleList()
        self.bns = nn.ModuleList()
        with torch.no_grad():
            for i in range(1, L + 1):
                W = net.params[f"W{i}"]
                lin = nn.Linear(*W.shape, bias=i == L, dtype=torch.float64)
                lin.weight.copy_(t(W).T)
                if i == L:
                    lin.bias.copy_(t(net.params[f"b{i}"]))
                else:
                    bn = nn.BatchNorm1d(W.shape[1], momentum=net.bn_momentum, dtype=torch.float64)
                    bn.weight.copy_(t(net.params[f"gamma{i}"]))
                    bn.bias.copy_(t(net.params[f"beta{i}"]))
                    self.bns.append(bn)
                self.lins.append(lin)

    def forward(self, x, masks=None):
        for j, (lin, bn) in enumerate(zip(self.lins, self.bns)):
            x = torch.relu(bn(lin(x)))
            if masks is not None:
                x = x * t(masks[j])
        return self.lins[-1](x)


def bn_network(hidden, dropout=0.0, seed=0):
    net = build_network(12, hidden, 4, dropout=dropout, dtype="float64", seed=seed, batch_norm=True)
    rng = np.random.default_rng(seed + 100)
    for k in net.params:  # move γ, β, b off 1 and 0 so every path carries signal
        if not k.startswith("W"):
            net.params[k] = net.params[k] + rng.normal(0, 0.2, net.params[k].shape)
    return net


@pytest.mark.parametrize("hidden,dropout", [([8, 6], 0.0), ([8, 6, 5], 0.4)], ids=["3-layer", "4-layer-dropout"])
def test_network_cost_grads_running_stats_and_eval_match_torch(hidden, dropout):
    net = bn_network(hidden, dropout)
    ref = TorchBN(net)
    rng = np.random.default_rng(1)
    lam = 0.03
    for n in (20, 11):  # two training steps' forwards: running statistics move twice
        X, y = rng.normal(size=(n, 12)), rng.integers(0, 4, n)
        masks = net.draw_masks(rng, n)
        loss, reg, grads = net.cost_and_grads(X, y, lam, masks)
        ref.train()
        ref.zero_grad()
        scores = ref(t(X), masks)
        l2 = sum((lin.weight ** 2).sum() for lin in ref.lins)
        cost = F.cross_entropy(scores, torch.as_tensor(y)) + lam * l2
        cost.backward()
        assert loss + reg == pytest.approx(float(cost.detach()), rel=1e-13)
        for i, lin in enumerate(ref.lins, start=1):
            np.testing.assert_allclose(grads[f"W{i}"], lin.weight.grad.numpy().T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(grads[f"b{len(ref.lins)}"], ref.lins[-1].bias.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)
        for i, bn in enumerate(ref.bns, start=1):
            np.testing.assert_allclose(grads[f"gamma{i}"], bn.weight.grad.numpy(), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(grads[f"beta{i}"], bn.bias.grad.numpy(), rtol=1e-9, atol=1e-12)
    for i, bn in enumerate(ref.bns, start=1):
        np.testing.assert_allclose(net.state[f"mean{i}"], bn.running_mean.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(net.state[f"var{i}"], bn.running_var.numpy(), rtol=1e-13)
    X_eval = rng.normal(size=(9, 12))
    ref.eval()
    with torch.no_grad():
        expected = torch.softmax(ref(t(X_eval)), dim=1).numpy()
    np.testing.assert_allclose(net.predict_proba(X_eval), expected, rtol=1e-12, atol=1e-14)


def test_update_stats_false_leaves_running_statistics_untouched():
    net = bn_network([8, 6])
    X, y = np.random.default_rng(2).normal(size=(10, 12)), np.arange(10) % 4
    before = {k: v.copy() for k, v in net.state.items()}
    net.cost_and_grads(X, y, 0.01, update_stats=False)
    net.cost(X, y, 0.01, update_stats=False)
    for k in before:
        np.testing.assert_array_equal(net.state[k], before[k])
    net.cost_and_grads(X, y, 0.01)
    assert not np.allclose(net.state["mean1"], before["mean1"])


def test_l2_is_on_weights_only_and_params_use_one_naming_scheme():
    net = bn_network([8, 6])
    assert net.param_names() == ["W1", "gamma1", "beta1", "W2", "gamma2", "beta2", "W3", "b3"]
    assert set(net.state) == {"mean1", "var1", "mean2", "var2"}
    X, y = np.random.default_rng(3).normal(size=(10, 12)), np.arange(10) % 4
    _, _, g0 = net.cost_and_grads(X, y, 0.0, update_stats=False)
    _, reg, g1 = net.cost_and_grads(X, y, 0.5, update_stats=False)
    assert set(g1) == set(net.params)
    assert reg == pytest.approx(0.5 * sum((net.params[f"W{i}"] ** 2).sum() for i in (1, 2, 3)))
    for k in ("gamma1", "beta1", "gamma2", "beta2", "b3"):
        np.testing.assert_array_equal(g0[k], g1[k])
    np.testing.assert_allclose(g1["W2"] - g0["W2"], 2 * 0.5 * net.params["W2"], rtol=1e-12)


def test_float32_network_keeps_its_dtype():
    net = build_network(12, [8], 4, dtype="float32", seed=0, batch_norm=True)
    X, y = np.random.default_rng(4).normal(size=(10, 12)).astype(np.float32), np.arange(10) % 4
    _, _, grads = net.cost_and_grads(X, y, 0.01)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert all(v.dtype == np.float32 for v in net.state.values())
    assert net.predict_proba(X).dtype == np.float32


# ------------------------------------------------------------------------- config and init
def test_batch_norm_without_hidden_layer_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match="batch_norm"):
        build_network(12, [], 4, batch_norm=True)


def test_config_schema_refuses_batch_norm_on_a_linear_model_naming_the_key():
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    schema = str(REPO / "workflow/schemas/config.schema.yaml")
    config["models"]["deep3"] = {"hidden": [50, 50], "batch_norm": True, "init": 1e-3}
    validate(config, schema)  # accepted: the keys exist
    config["models"]["bad"] = {"hidden": [], "batch_norm": True}
    with pytest.raises(Exception, match="batch_norm"):
        validate(config, schema)


@pytest.mark.parametrize("init", ["xavier", -0.1, 0.0, True])
def test_bad_init_is_an_error_naming_the_key(init):
    with pytest.raises(ValueError, match="init"):
        build_network(12, [8], 4, init=init)


def original_init(sizes, seed, dtype=np.float32):
    """The study's initialisation as it was before batch norm, written out again."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        if len(sizes) == 2:
            W, b = rng.normal(0.0, 0.01, size=(d_in, d_out)), rng.normal(0.0, 0.01, size=d_out)
        else:
            W, b = rng.normal(0.0, 1.0 / np.sqrt(d_in), size=(d_in, d_out)), np.zeros(d_out)
        params[f"W{i}"], params[f"b{i}"] = W.astype(dtype), b.astype(dtype)
    return params


@pytest.mark.parametrize("hidden", [[], [50], [500]])
def test_default_init_is_bit_identical_for_existing_models(hidden):
    net = build_network(3072, hidden, 10, seed=3)
    ref = original_init([3072, *hidden, 10], seed=3)
    assert list(net.params) == list(ref)
    for k in ref:
        np.testing.assert_array_equal(net.params[k], ref[k])
    assert net.state == {}


@pytest.mark.parametrize("batch_norm,init,expected_std", [
    (True, None, "he"), (False, "he", "he"), (True, 1e-3, 1e-3), (False, 0.1, 0.1)])
def test_he_and_fixed_sigma_init(batch_norm, init, expected_std):
    net = build_network(2000, [400, 300], 10, dtype="float64", seed=0, batch_norm=batch_norm, init=init)
    for i, fan_in in enumerate((2000, 400, 300), start=1):
        std = np.sqrt(2.0 / fan_in) if expected_std == "he" else expected_std
        assert net.params[f"W{i}"].std() == pytest.approx(std, rel=0.02)
    if batch_norm:
        np.testing.assert_array_equal(net.params["gamma1"], 1.0)
        np.testing.assert_array_equal(net.params["beta2"], 0.0)
        np.testing.assert_array_equal(net.state["var2"], 1.0)
    np.testing.assert_array_equal(net.params["b3"], 0.0)


def test_arrays_round_trip_through_a_weights_file(tmp_path):
    net = bn_network([8, 6])
    X, y = np.random.default_rng(6).normal(size=(10, 12)), np.arange(10) % 4
    net.cost_and_grads(X, y, 0.01)  # running statistics away from 0 and 1
    path = tmp_path / "weights.npz"
    np.savez(path, **net.arrays())
    with np.load(path) as z:
        loaded = network_from_arrays({k: z[k] for k in z.files}, dtype="float64")
    assert loaded.batch_norm and loaded.sizes == net.sizes
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    plain = build_network(12, [8], 4, seed=0)
    assert set(plain.arrays()) == {"W1", "b1", "W2", "b2"}  # unchanged for existing models
    with pytest.raises(ValueError, match="running statistics"):
        Network(net.sizes, dtype=np.float64, batch_norm=True).load_arrays(net.params)

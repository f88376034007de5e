"""The batch-norm network written in PyTorch, float64, as an independent reference.

Two forms: a functional cost through ``torch.nn.functional.batch_norm`` (training
mode, for the gradient check) and a module network of ``nn.Linear`` and
``nn.BatchNorm1d`` holding the same weights (for the trajectory: torch's module
keeps its own running statistics, so its update rule is checked too). Nothing
here calls the NumPy model's code.

Parameter names are the model's: hidden layer i has W<i> (D_in, H), gamma<i>,
beta<i> and no bias; the output layer has W<L>, b<L>. nn.Linear stores W.T.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .torch_reference import _as_tensor, replay_batches, torch_optimizer

F = torch.nn.functional


def n_weight_layers(params) -> int:
    return sum(1 for k in params if k.startswith("W"))


def torch_bn_cost(params: dict[str, torch.Tensor], X, y, lam: float, masks=None, eps=1e-5):
    """Mean softmax cross-entropy + lam * sum ||W||^2 of the batch-norm ReLU net
    (batch statistics, F.batch_norm with training=True). Returns (cost, loss, reg)."""
    L = n_weight_layers(params)
    h = X
    for i in range(1, L):
        h = F.batch_norm(h @ params[f"W{i}"], None, None, weight=params[f"gamma{i}"],
                         bias=params[f"beta{i}"], training=True, eps=eps)
        h = torch.relu(h)
        if masks is not None:
            h = h * masks[i - 1]
    scores = h @ params[f"W{L}"] + params[f"b{L}"]
    loss = F.cross_entropy(scores, y, reduction="mean")
    reg = lam * sum((params[f"W{i}"] ** 2).sum() for i in range(1, L + 1))
    return loss + reg, loss, reg


def torch_bn_cost_and_grads(params_np, X, y, lam: float, masks=None, eps=1e-5):
    """Cost, loss and autograd gradients (float64 numpy, the model's keys)."""
    params = {k: _as_tensor(v, grad=True) for k, v in params_np.items()}
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    mt = None if masks is None else [_as_tensor(m) for m in masks]
    cost, loss, _ = torch_bn_cost(params, _as_tensor(X), yt, lam, mt, eps)
    cost.backward()
    grads = {k: p.grad.numpy().copy() for k, p in params.items()}
    return float(cost.detach()), float(loss.detach()), grads


class TorchBNNet(nn.Module):
    """Linear(bias=False) -> BatchNorm1d -> ReLU per hidden layer, then Linear; float64."""

    def __init__(self, params_np, state_np, momentum=0.1, eps=1e-5):
        super().__init__()
        L = n_weight_layers(params_np)
        self.linears, self.norms = nn.ModuleList(), nn.ModuleList()
        with torch.no_grad():
            for i in range(1, L + 1):
                d_in, d_out = params_np[f"W{i}"].shape
                lin = nn.Linear(d_in, d_out, bias=i == L, dtype=torch.float64)
                lin.weight.copy_(_as_tensor(params_np[f"W{i}"]).T)
                if i == L:
                    lin.bias.copy_(_as_tensor(params_np[f"b{i}"]))
                else:
                    bn = nn.BatchNorm1d(d_out, eps=eps, momentum=momentum, dtype=torch.float64)
                    bn.weight.copy_(_as_tensor(params_np[f"gamma{i}"]))
                    bn.bias.copy_(_as_tensor(params_np[f"beta{i}"]))
                    bn.running_mean.copy_(_as_tensor(state_np[f"mean{i}"]))
                    bn.running_var.copy_(_as_tensor(state_np[f"var{i}"]))
                    self.norms.append(bn)
                self.linears.append(lin)

    def forward(self, x):
        for lin, bn in zip(self.linears, self.norms):
            x = torch.relu(bn(lin(x)))
        return self.linears[-1](x)

    def l2(self):
        return sum((lin.weight ** 2).sum() for lin in self.linears)

    def arrays(self):
        """Parameters and running statistics under the model's names, as numpy."""
        out = {}
        for i, lin in enumerate(self.linears, start=1):
            out[f"W{i}"] = lin.weight.detach().numpy().T.copy()
        out[f"b{len(self.linears)}"] = self.linears[-1].bias.detach().numpy().copy()
        for i, bn in enumerate(self.norms, start=1):
            out[f"gamma{i}"] = bn.weight.detach().numpy().copy()
            out[f"beta{i}"] = bn.bias.detach().numpy().copy()
            out[f"mean{i}"] = bn.running_mean.numpy().copy()
            out[f"var{i}"] = bn.running_var.numpy().copy()
        return out


def torch_bn_trajectory(params_np, state_np, X, y, X_eval, *, lam, seed, batch_size, n_s,
                        eta_min, eta_max, steps, optimizer="sgd", momentum=0.9,
                        bn_momentum=0.1, eps=1e-5):
    """Train TorchBNNet with torch.optim and CyclicLR on the replayed mini-batch order.

    Returns per-step costs, learning rates, the final arrays (parameters and running
    statistics, model names) and the eval()-mode class probabilities on X_eval.
    """
    net = TorchBNNet(params_np, state_np, bn_momentum, eps)
    plist = list(net.parameters())
    opt, sched = torch_optimizer(plist, optimizer, eta_min, eta_max, n_s, momentum)
    Xt = _as_tensor(X)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    costs, etas = [], []
    net.train()
    for idx in replay_batches(seed, len(yt), batch_size, steps):
        idx_t = torch.as_tensor(idx)
        opt.zero_grad()
        cost = F.cross_entropy(net(Xt[idx_t]), yt[idx_t], reduction="mean") + lam * net.l2()
        cost.backward()
        costs.append(float(cost.detach()))
        etas.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        probs = torch.softmax(net(_as_tensor(X_eval)), dim=1).numpy()
    return np.array(costs), np.array(etas), net.arrays(), probs

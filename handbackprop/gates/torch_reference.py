"""The same cost and the same training loop written in PyTorch, float64, as
an independent reference. Nothing here calls the NumPy model's code: the
point is two implementations that agree."""
from __future__ import annotations

import numpy as np
import torch

torch.set_default_dtype(torch.float64)


def _as_tensor(a, grad=False):
    return torch.tensor(np.asarray(a, dtype=np.float64), dtype=torch.float64, requires_grad=grad)


def torch_cost(params: dict[str, torch.Tensor], X, y, lam: float, masks=None):
    """Mean softmax cross-entropy + lam * sum ||W||^2 of an L-layer ReLU net.

    params W1 (D, H), b1 (H,), ... ; masks: one (N, H) inverted-dropout mask
    per hidden layer, or None. Returns (cost, loss, reg) tensors.
    """
    n_layers = len(params) // 2
    h = X
    for i in range(1, n_layers + 1):
        h = h @ params[f"W{i}"] + params[f"b{i}"]
        if i < n_layers:
            h = torch.relu(h)
            if masks is not None:
                h = h * masks[i - 1]
    loss = torch.nn.functional.cross_entropy(h, y, reduction="mean")
    reg = lam * sum((params[f"W{i}"] ** 2).sum() for i in range(1, n_layers + 1))
    return loss + reg, loss, reg


def torch_cost_and_grads(params_np: dict[str, np.ndarray], X, y, lam: float, masks=None):
    """Cost, loss and autograd gradients (float64 numpy) for given weights."""
    params = {k: _as_tensor(v, grad=True) for k, v in params_np.items()}
    Xt = _as_tensor(X)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    mt = None if masks is None else [_as_tensor(m) for m in masks]
    cost, loss, _ = torch_cost(params, Xt, yt, lam, mt)
    cost.backward()
    grads = {k: p.grad.numpy().copy() for k, p in params.items()}
    return float(cost.detach()), float(loss.detach()), grads


def replay_batches(seed: int, n: int, batch_size: int, steps: int) -> list[np.ndarray]:
    """The documented mini-batch order: from the first of three streams spawned
    from SeedSequence(seed), a fresh permutation per epoch, cut into
    consecutive batches (the last one of an epoch may be smaller)."""
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[0])
    out = []
    while len(out) < steps:
        perm = rng.permutation(n)
        out.extend(perm[s:s + batch_size] for s in range(0, n, batch_size))
    return out[:steps]


def torch_optimizer(plist, optimizer: str, eta_min: float, eta_max: float, n_s: int,
                    momentum: float = 0.9):
    """torch.optim's own optimizer and CyclicLR (triangular, from eta_min) for our `optimizer`
    name: what every torch reference trajectory trains with."""
    if optimizer == "sgd":
        opt = torch.optim.SGD(plist, lr=eta_min)
    elif optimizer == "nesterov":
        opt = torch.optim.SGD(plist, lr=eta_min, momentum=momentum, nesterov=True)
    elif optimizer == "adam":
        opt = torch.optim.Adam(plist, lr=eta_min)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")
    sched = torch.optim.lr_scheduler.CyclicLR(
        opt, base_lr=eta_min, max_lr=eta_max, step_size_up=n_s, mode="triangular",
        cycle_momentum=False)
    return opt, sched


def torch_trajectory(params_np, X, y, *, lam, seed, batch_size, n_s, eta_min, eta_max, steps,
                     optimizer="sgd", momentum=0.9):
    """Train with torch.optim and torch's own CyclicLR; return per-step costs and final weights."""
    params = {k: _as_tensor(v, grad=True) for k, v in params_np.items()}
    plist = list(params.values())
    opt, sched = torch_optimizer(plist, optimizer, eta_min, eta_max, n_s, momentum)
    Xt = _as_tensor(X)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    costs, etas = [], []
    for idx in replay_batches(seed, len(yt), batch_size, steps):
        idx_t = torch.as_tensor(idx)
        opt.zero_grad()
        cost, _, _ = torch_cost(params, Xt[idx_t], yt[idx_t], lam)
        cost.backward()
        costs.append(float(cost.detach()))
        etas.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    final = {k: p.detach().numpy().copy() for k, p in params.items()}
    return np.array(costs), np.array(etas), final

"""The PyTorch training steps the NumPy trainer is compared against.

Each variant is a loop a PyTorch user could reasonably write for the same
model and objective (mean cross-entropy + lam * sum ||W||^2 over the weights,
biases excluded, plain SGD at a fixed learning rate), started from the same
weights as ours and fed the same batches. They differ in the choices that
matter for speed on a CPU:

* ``inout-manual`` - the previous bench loop: weights kept as (in, out),
  ``x @ W + b``, the L2 term differentiated by autograd, a hand-written
  in-place update. dW = x^T dout is a GEMM shape that MKL runs slowly here.
* ``l2-in-graph`` - ``nn.Linear`` layers (weights (out, in), forward is one
  fused ``addmm``), the L2 term added to the loss, ``torch.optim.SGD``.
* ``weight-decay`` - as above, the L2 term moved into the optimiser:
  ``weight_decay = 2 lam`` on the weights only (torch adds wd * W to the
  gradient, and d(lam ||W||^2)/dW = 2 lam W, so the objective is identical).
* ``weight-decay-fused`` - the same with ``fused=True`` (one kernel per
  parameter for decay and update), when this torch build supports it.
* ``compiled`` - ``torch.compile`` of the ``nn.Sequential`` with the fused
  weight-decay optimiser, when inductor works on this machine.

Every variant exposes ``first_step(idx)`` (cost before the update and the
parameters after it, in our names and layout) so the bench can assert that it
computes what ours computes before timing it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
VARIANTS = ("inout-manual", "l2-in-graph", "weight-decay", "weight-decay-fused", "compiled")


class VariantUnavailable(RuntimeError):
    """This torch build or machine cannot run the variant (e.g. no compiler for inductor)."""


@dataclass
class TorchVariant:
    name: str
    run_epoch: Callable[[list], None]          # list of index tensors -> None
    first_step: Callable[[torch.Tensor], tuple[float, dict[str, np.ndarray]]]


def _sequential(init: dict[str, np.ndarray], n_layers: int, tdtype) -> torch.nn.Sequential:
    """nn.Linear/ReLU stack holding our weights transposed to torch's (out, in) layout; with
    batch norm (gamma1 in `init`) each hidden Linear has no bias and is followed by a
    BatchNorm1d holding our γ, β (eps 1e-5, momentum 0.1, as ours)."""
    batch_norm = "gamma1" in init
    mods = []
    for i in range(1, n_layers + 1):
        W = init[f"W{i}"]  # (D_in, D_out)
        hidden_bn = batch_norm and i < n_layers
        lin = torch.nn.Linear(W.shape[0], W.shape[1], bias=not hidden_bn, dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))  # (D_out, D_in)
            if not hidden_bn:
                lin.bias.copy_(torch.from_numpy(init[f"b{i}"]))
        mods.append(lin)
        if hidden_bn:
            bn = torch.nn.BatchNorm1d(W.shape[1], eps=1e-5, momentum=0.1, dtype=tdtype)
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(init[f"gamma{i}"]))
                bn.bias.copy_(torch.from_numpy(init[f"beta{i}"]))
            mods.append(bn)
        if i < n_layers:
            mods.append(torch.nn.ReLU())
    return torch.nn.Sequential(*mods)


def _linears(model) -> list[torch.nn.Linear]:
    return [m for m in model if isinstance(m, torch.nn.Linear)]


def _norms(model) -> list[torch.nn.BatchNorm1d]:
    return [m for m in model if isinstance(m, torch.nn.BatchNorm1d)]


def _params_ours(model) -> dict[str, np.ndarray]:
    out = {}
    for i, lin in enumerate(_linears(model), start=1):
        out[f"W{i}"] = lin.weight.detach().numpy().T.copy()
        if lin.bias is not None:
            out[f"b{i}"] = lin.bias.detach().numpy().copy()
    for i, bn in enumerate(_norms(model), start=1):
        out[f"gamma{i}"] = bn.weight.detach().numpy().copy()
        out[f"beta{i}"] = bn.bias.detach().numpy().copy()
    return out


def make_variant(name: str, init: dict[str, np.ndarray], n_layers: int, dtype: str,
                 Xt: torch.Tensor, yt: torch.Tensor, lam: float, eta: float) -> TorchVariant:
    """Build variant `name` from our initial parameters; raises VariantUnavailable."""
    if name not in VARIANTS:
        raise ValueError(f"unknown torch variant {name!r} (expected one of {', '.join(VARIANTS)})")
    tdtype = TORCH_DTYPES[dtype]
    if Xt.dtype != tdtype:
        raise ValueError(f"data is {Xt.dtype}, variant needs {tdtype}: cast the data once beforehand")
    if name == "inout-manual":
        if "gamma1" in init:
            raise VariantUnavailable("inout-manual: written for plain ReLU stacks, not batch norm")
        return _inout_manual(init, n_layers, tdtype, Xt, yt, lam, eta)

    model = _sequential(init, n_layers, tdtype)
    weights = [lin.weight for lin in _linears(model)]
    # no weight decay: biases, and batch norm's γ and β (our L2 is on the weight matrices only)
    biases = [lin.bias for lin in _linears(model) if lin.bias is not None]
    biases += [p for bn in _norms(model) for p in (bn.weight, bn.bias)]
    l2_in_graph = name == "l2-in-graph"
    if l2_in_graph:
        opt = torch.optim.SGD(model.parameters(), lr=eta)
    else:
        groups = [{"params": weights, "weight_decay": 2.0 * lam}, {"params": biases, "weight_decay": 0.0}]
        try:
            opt = torch.optim.SGD(groups, lr=eta, fused=name in ("weight-decay-fused", "compiled") or None)
        except (RuntimeError, ValueError, TypeError) as exc:
            raise VariantUnavailable(f"{name}: fused SGD unsupported here ({exc})") from exc
    forward = model
    if name == "compiled":
        try:
            forward = torch.compile(model)
            # Compile the training graphs now, outside any timed epoch: one forward and
            # backward whose gradients the step's zero_grad discards (weights unchanged).
            F.cross_entropy(forward(Xt[:100]), yt[:100]).backward()
            opt.zero_grad(set_to_none=True)
        except Exception as exc:  # noqa: BLE001 - any inductor failure means "not available here"
            raise VariantUnavailable(f"compiled: torch.compile failed ({type(exc).__name__}: {exc})") from exc

    def step(idx):
        xb = Xt.index_select(0, idx)  # (B, D)
        yb = yt.index_select(0, idx)  # (B,)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(xb), yb)
        if l2_in_graph:
            loss = loss + lam * sum((W * W).sum() for W in weights)
        loss.backward()
        opt.step()
        return loss

    def run_epoch(batches):
        for idx in batches:
            step(idx)

    def first_step(idx):
        with torch.no_grad():
            reg = 0.0 if l2_in_graph else lam * float(sum((W.double() ** 2).sum() for W in weights))
        cost = float(step(idx).detach()) + reg
        return cost, _params_ours(model)

    return TorchVariant(name, run_epoch, first_step)


def _inout_manual(init, n_layers, tdtype, Xt, yt, lam, eta) -> TorchVariant:
    Ws = [torch.from_numpy(init[f"W{i}"].copy()).requires_grad_(True) for i in range(1, n_layers + 1)]
    bs = [torch.from_numpy(init[f"b{i}"].copy()).requires_grad_(True) for i in range(1, n_layers + 1)]
    params = [p for pair in zip(Ws, bs) for p in pair]

    def step(idx):
        xb = Xt.index_select(0, idx)
        yb = yt.index_select(0, idx)
        h = xb
        for i in range(n_layers):
            h = h @ Ws[i] + bs[i]  # (B, D_out), weights (D_in, D_out)
            if i < n_layers - 1:
                h = torch.relu(h)
        cost = F.cross_entropy(h, yb) + lam * sum((W * W).sum() for W in Ws)
        cost.backward()
        with torch.no_grad():
            for p in params:
                p.sub_(p.grad, alpha=eta)
                p.grad = None
        return cost

    def run_epoch(batches):
        for idx in batches:
            step(idx)

    def first_step(idx):
        cost = float(step(idx).detach())
        out = {}
        for i in range(n_layers):
            out[f"W{i + 1}"] = Ws[i].detach().numpy().copy()
            out[f"b{i + 1}"] = bs[i].detach().numpy().copy()
        return cost, out

    return TorchVariant("inout-manual", run_epoch, first_step)

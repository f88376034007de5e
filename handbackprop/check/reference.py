"""Three opinions on a layer's gradient, none of which is the user's backward.

1. autograd on the user's own forward: the forward, written against an array namespace,
   runs unchanged on float64 torch tensors, so torch differentiates the very code the user
   wrote (or the user's `torch_forward`, where the forward cannot be written that way);
2. centred finite differences of the user's forward in float64 (`scipy.differentiate`), at
   sampled coordinates: no torch involved;
3. the long-double gradient: the user's forward and backward evaluated once more in
   `np.longdouble` (80-bit on x86-64, eps 1.1e-19). It is only read once opinion 1 agrees
   with the float64 backward — the formula is then right, and its long-double evaluation is
   the exact gradient up to ~1e-19 — so it measures rounding: the user's float64 error and
   autograd's, and their ratio.

Each opinion differentiates L(x, params) = sum(forward(x, params) * G) for one random
upstream gradient G (never ones: with dout = 1 the true input gradient of batch norm is
exactly 0, so a batch-norm backward that drops a path still "passes").
"""
from __future__ import annotations

import inspect
import traceback
from pathlib import Path

import numpy as np

from . import contract
from .contract import ContractError, Layer

LD = np.longdouble


def _user_frame(exc: BaseException, fn) -> str:
    """The last traceback line inside the user's file, as 'file:line: code'."""
    try:
        user_file = inspect.getsourcefile(contract._unwrap(fn))
    except TypeError:
        user_file = None
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if user_file and f.filename == user_file] or frames[-1:]
    f = mine[-1]
    return f"{Path(f.filename).name}:{f.lineno}: {f.line}"


def torch_gradients(layer: Layer, x, params: dict, kwargs: dict, G):
    """(out, {'x': dx, name: dparam}) from torch autograd, float64."""
    import torch

    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    pt = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params.items()}
    if layer.torch_forward is not None:
        fn, who = layer.torch_forward, f"{layer.name}.torch_forward"
    else:
        fn, who = layer.forward, f"{layer.name}.forward"
        uses = contract.numpy_calls(layer.forward)
        if uses:
            listing = "; ".join(f"line {ln}: {call} in `{src}`" for ln, call, src in uses)
            raise ContractError(
                f"{who} ({contract.where(layer.forward)}) is not array-API clean, so autograd "
                f"cannot run it: it calls NumPy directly — {listing}. Write "
                f"`xp = array_namespace(x)` (array_api_compat) and call xp.… instead, or give the "
                f"layer a torch_forward(x, params).")
    try:
        res = fn(xt, pt, **kwargs)
    except ContractError:
        raise
    except Exception as e:  # noqa: BLE001 - reported with the user's line
        raise ContractError(f"{who} failed on torch tensors at {_user_frame(e, fn)}: "
                            f"{type(e).__name__}: {e}. Is every operation array-API "
                            f"(xp = array_namespace(x))?") from e
    out = res if layer.torch_forward is not None and torch.is_tensor(res) else contract.split_forward(res, who)[0]
    if not torch.is_tensor(out):
        raise ContractError(f"{who} returned {type(out).__name__} for torch inputs: somewhere it "
                            f"converts to NumPy (np.asarray, np.* or .numpy()), which autograd "
                            f"cannot follow")
    L = (out * torch.as_tensor(G, dtype=out.dtype)).sum()
    leaves = [xt, *pt.values()]
    grads = torch.autograd.grad(L, leaves, allow_unused=True)
    names = ["x", *pt]
    return (out.detach().numpy(),
            {n: (g.detach().numpy() if g is not None else np.zeros(t.shape)) for n, g, t in zip(names, grads, leaves)})


def scalar_loss(layer: Layer, x, params, kwargs, G) -> float:
    out, _ = contract.split_forward(layer.forward(x, params, **kwargs), f"{layer.name}.forward")
    return float((np.asarray(out, dtype=np.float64) * G).sum())


def finite_differences(layer: Layer, x, params: dict, kwargs: dict, G, name: str, coords,
                       step: float = 1e-3) -> np.ndarray:
    """d L / d array[name] at flat indices `coords`, by a 4th-order centred stencil
    (scipy.differentiate.derivative; one iteration: truncation ~h^4 = 1e-12, rounding ~eps/h)."""
    from scipy.differentiate import derivative

    arrays = {"x": np.array(x, dtype=np.float64), **{k: np.array(v, dtype=np.float64) for k, v in params.items()}}
    target = arrays[name].reshape(-1)  # a view: writes move the point

    def f(vals, idx):
        out = np.empty(vals.shape)
        idx = np.broadcast_to(idx, vals.shape)  # scipy passes args with broadcastable shapes
        for j in np.ndindex(vals.shape):
            c = int(idx[j])
            old = target[c]
            target[c] = vals[j]
            out[j] = scalar_loss(layer, arrays["x"], {k: arrays[k] for k in params}, kwargs, G)
            target[c] = old
        return out

    coords = np.asarray(coords)
    x0 = target[coords].copy()
    scale = np.maximum(1.0, np.abs(x0))  # a relative step for large entries
    res = derivative(lambda v, idx, s: f(v * s, idx), x0 / scale, args=(coords, scale),
                     maxiter=1, order=4, initial_step=step)
    return res.df / scale


def longdouble_gradients(layer: Layer, x, params: dict, kwargs: dict, G):
    """The user's forward and backward in np.longdouble; None with a reason where the platform's
    long double is no wider than float64 or the backward leaves long double."""
    from ..gates.exactness import platform

    plat = platform()
    if not plat["extended"]:
        return None, plat["note"]
    xl = np.asarray(x, dtype=np.float64).astype(LD)
    pl = {k: np.asarray(v, dtype=np.float64).astype(LD) for k, v in params.items()}
    out, cache = contract.split_forward(layer.forward(xl, pl, **kwargs), f"{layer.name}.forward")
    dx, dp = contract.split_backward(layer.backward(np.asarray(G).astype(LD), cache), xl, pl,
                                     f"{layer.name}.backward")
    grads = {"x": dx, **dp}
    narrow = [k for k, g in grads.items() if g.dtype != LD]
    if np.asarray(out).dtype != LD or narrow:
        return None, (f"the layer leaves np.longdouble (forward output {np.asarray(out).dtype}"
                      + (f", gradients {narrow}" if narrow else "") + "): no exactness figure")
    return grads, plat["note"]


def norm_rel_ld(a, exact) -> float:
    diff = np.asarray(a).astype(LD) - exact
    den = np.sqrt((exact * exact).sum())
    num = np.sqrt((diff * diff).sum())
    return float(num / den) if den > 0 else float(num)


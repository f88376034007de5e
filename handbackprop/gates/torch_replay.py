"""The training loop's random streams and test-time network, rebuilt in PyTorch.

`torch_reference.torch_trajectory` replays the mini-batch order only. This
replays the whole documented recipe of `nn/train.py` in either float dtype:
three streams spawned from ``SeedSequence(seed)`` (shuffle, dropout,
augmentation), a dropout keep pattern drawn per hidden layer as
``rng.random((B, H)) >= p`` and scaled here, in torch, by 1/(1-p), and the
augmentation choices drawn by `nn/augment.draw_augmentation` (the recipe under
test is the stream, not the drawing code) but applied to the images by torch
operations written here. Nothing here calls the NumPy model, its layers, its
mask or its training loop: a planted bug there cannot leak into the reference.
"""
from __future__ import annotations

import numpy as np
import torch

from ..nn import augment
from .torch_reference import replay_batches, torch_cost, torch_optimizer

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
SIDE, CHANNELS = 32, 3


def torch_dtype(dtype) -> torch.dtype:
    try:
        return TORCH_DTYPES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"the torch reference runs in float32 or float64, not {dtype}") from None


def replay_streams(seed: int):
    """(shuffle, dropout, augmentation) generators exactly as documented in nn/train.py."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]


def torch_augment(x: torch.Tensor, flips, dy, dx) -> torch.Tensor:
    """Flip each image horizontally where flips is set, then translate it by (dy, dx) pixels,
    filling with 0. x (B, 3072) channel-major -> (B, 3072).

    Built from torch.flip and zero padding plus a crop; images sharing a shift are cropped
    together, so the loop runs over the at most (2s+1)^2 distinct shifts, not over images.
    """
    b = x.shape[0]
    imgs = x.reshape(b, CHANNELS, SIDE, SIDE)
    flips_t = torch.as_tensor(np.asarray(flips, dtype=bool))
    imgs = torch.where(flips_t[:, None, None, None], torch.flip(imgs, dims=[3]), imgs)
    dy, dx = np.asarray(dy, dtype=int), np.asarray(dx, dtype=int)
    s = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    padded = torch.nn.functional.pad(imgs, (s, s, s, s))  # (B, 3, 32+2s, 32+2s), zeros outside
    out = torch.empty_like(imgs)
    for a, c in set(zip(dy.tolist(), dx.tolist())):
        rows = torch.as_tensor(np.flatnonzero((dy == a) & (dx == c)))
        # output (r, col) = flipped image at (r - a, col - c): a crop starting at (s - a, s - c)
        out[rows] = padded[rows, :, s - a:s - a + SIDE, s - c:s - c + SIDE]
    return out.reshape(b, CHANNELS * SIDE * SIDE)


def torch_replay_trajectory(params_np, X, y, *, lam, seed, batch_size, n_s, eta_min, eta_max,
                            steps, optimizer="sgd", momentum=0.9, dropout=0.0, flip=False,
                            max_shift=0, dtype="float64"):
    """Train from params_np with torch.optim and CyclicLR, replaying nn/train.py's batches,
    dropout keep patterns and augmentation; all arithmetic in `dtype`.

    Returns (per-step costs (steps,), learning rates (steps,), final weights as numpy).
    """
    tdt = torch_dtype(dtype)
    params = {k: torch.tensor(np.asarray(v), dtype=tdt, requires_grad=True)
              for k, v in params_np.items()}
    n_layers = len(params) // 2
    hidden = [params[f"W{i}"].shape[1] for i in range(1, n_layers)]
    plist = list(params.values())
    opt, sched = torch_optimizer(plist, optimizer, eta_min, eta_max, n_s, momentum)
    _, drop_rng, aug_rng = replay_streams(seed)
    # float64 -> dtype rounds to nearest in both libraries, so both sides see the same images
    Xt = torch.tensor(np.asarray(X), dtype=tdt)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    costs, etas = [], []
    for idx in replay_batches(seed, len(yt), batch_size, steps):
        idx_t = torch.as_tensor(idx)
        xb = Xt[idx_t]
        if flip or max_shift:
            xb = torch_augment(xb, *augment.draw_augmentation(aug_rng, len(idx), flip, max_shift))
        masks = None
        if dropout > 0 and hidden:
            masks = [torch.as_tensor(drop_rng.random((len(idx), h)) >= dropout).to(tdt) / (1.0 - dropout)
                     for h in hidden]
        opt.zero_grad()
        cost, _, _ = torch_cost(params, xb, yt[idx_t], lam, masks)
        cost.backward()
        costs.append(float(cost.detach()))
        etas.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    final = {k: p.detach().numpy().copy() for k, p in params.items()}
    return np.array(costs), np.array(etas), final


def torch_network(params_np, dropout: float, dtype) -> torch.nn.Sequential:
    """The same network as a torch module: Linear, ReLU, Dropout(p) per hidden layer."""
    tdt = torch_dtype(dtype)
    n_layers = len(params_np) // 2
    mods = []
    for i in range(1, n_layers + 1):
        W = np.asarray(params_np[f"W{i}"])
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=tdt)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W.T, dtype=tdt))  # torch stores (out, in)
            lin.bias.copy_(torch.tensor(np.asarray(params_np[f"b{i}"]), dtype=tdt))
        mods.append(lin)
        if i < n_layers:
            mods += [torch.nn.ReLU(), torch.nn.Dropout(dropout)]
    return torch.nn.Sequential(*mods)


def torch_evaluate(params_np, dropout: float, X, y, lam: float, dtype) -> dict:
    """The torch module in eval() mode on X: probs and log_probs (N, K), loss, reg, cost,
    accuracy. The loss comes from the logits (log-softmax in float64), never from rounded
    probabilities, so it stays exact where a probability underflows."""
    model = torch_network(params_np, dropout, dtype).eval()
    tdt = torch_dtype(dtype)
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    with torch.no_grad():
        logits = model(torch.tensor(np.asarray(X), dtype=tdt))
        probs = torch.softmax(logits, dim=1)
        # the loss in float64 from this dtype's logits, so it does not round a second time
        log_probs = torch.log_softmax(logits.double(), dim=1)
        loss = float(torch.nn.functional.nll_loss(log_probs, yt))
        weights = [torch.tensor(np.asarray(params_np[f"W{i}"]), dtype=torch.float64)
                   for i in range(1, len(params_np) // 2 + 1)]
        reg = lam * sum(float((W ** 2).sum()) for W in weights)
    p = probs.numpy()
    return {"probs": p, "log_probs": log_probs.numpy(), "loss": loss, "reg": reg, "cost": loss + reg,
            "accuracy": float((p.argmax(axis=1) == np.asarray(y)).mean())}

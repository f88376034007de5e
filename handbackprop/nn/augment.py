"""On-the-fly augmentation of normalised images stored as rows (N, 3072),
channel-major (R plane, G plane, B plane), as CIFAR-10 stores them."""
from __future__ import annotations

import numpy as np

SIDE = 32
CHANNELS = 3


def draw_augmentation(rng: np.random.Generator, n: int, flip: bool, max_shift: int):
    """Per-image choices: flip (N,) bool, dy (N,), dx (N,) ints in [-max_shift, max_shift]."""
    flips = rng.random(n) < 0.5 if flip else np.zeros(n, dtype=bool)
    shifts = rng.integers(-max_shift, max_shift + 1, size=(2, n)) if max_shift else np.zeros((2, n), int)
    return flips, shifts[0], shifts[1]


def apply_augmentation(X, flips, dy, dx):
    """Horizontally flip, then translate each image by (dy, dx) pixels.

    X (N, 3072) -> (N, 3072). Pixels shifted in from outside are 0, the
    training mean in normalised space. One fancy-indexing gather over a
    zero-padded batch does every image at once.
    """
    n = X.shape[0]
    pad = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    imgs = X.reshape(n, CHANNELS, SIDE, SIDE)
    padded = np.zeros((n, CHANNELS, SIDE + 2 * pad, SIDE + 2 * pad), dtype=X.dtype)
    padded[:, :, pad:pad + SIDE, pad:pad + SIDE] = imgs
    base = np.arange(SIDE)
    # flip then shift: output (r, c) reads source (r - dy, m(c - dx)), m = mirror or identity
    rows = base[None, :] - dy[:, None] + pad  # (N, 32)
    shifted = base[None, :] - dx[:, None]  # (N, 32)
    cols = np.where(flips[:, None], SIDE - 1 - shifted, shifted) + pad
    out = padded[np.arange(n)[:, None, None, None], np.arange(CHANNELS)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]  # (N, 3, 32, 32)
    return out.reshape(n, CHANNELS * SIDE * SIDE)


def augment_batch(rng, X, flip: bool, max_shift: int):
    flips, dy, dx = draw_augmentation(rng, X.shape[0], flip, max_shift)
    return apply_augmentation(X, flips, dy, dx)

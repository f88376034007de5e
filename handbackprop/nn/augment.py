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
    training mean in normalised space. One gather over a zero-padded batch does
    every image at once: `take` with one flat index per output pixel, which is
    ~2.8x quicker than the same gather as a 4-d fancy index (0.43 against 1.2 ms
    for 100 images, float32), whose broadcast index arrays NumPy walks element
    by element.
    """
    n = X.shape[0]
    pad = int(max(np.abs(dy).max(initial=0), np.abs(dx).max(initial=0)))
    P = SIDE + 2 * pad
    padded = np.zeros((n, CHANNELS, P, P), dtype=X.dtype)
    padded[:, :, pad:pad + SIDE, pad:pad + SIDE] = X.reshape(n, CHANNELS, SIDE, SIDE)
    base = np.arange(SIDE)
    # flip then shift: output (r, c) reads source (r - dy, m(c - dx)), m = mirror or identity
    rows = base[None, :] - dy[:, None] + pad  # (N, 32)
    shifted = base[None, :] - dx[:, None]  # (N, 32)
    cols = np.where(flips[:, None], SIDE - 1 - shifted, shifted) + pad  # (N, 32)
    # padded's flat index of image i, channel c, row r, column q: ((i·C + c)·P + r)·P + q
    plane = (rows[:, :, None] * P + cols[:, None, :]).reshape(n, 1, SIDE * SIDE)  # (N, 1, 1024)
    start = (np.arange(n * CHANNELS) * (P * P)).reshape(n, CHANNELS, 1)  # (N, 3, 1)
    return padded.ravel().take((start + plane).ravel()).reshape(n, CHANNELS * SIDE * SIDE)


def augment_batch(rng, X, flip: bool, max_shift: int):
    flips, dy, dx = draw_augmentation(rng, X.shape[0], flip, max_shift)
    return apply_augmentation(X, flips, dy, dx)

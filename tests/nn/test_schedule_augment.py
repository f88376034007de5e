"""The cyclical schedule against torch's CyclicLR; augmentation against a per-image reference."""
import numpy as np
import pytest
import torch

from handbackprop.nn import augment, schedule


def test_cyclic_lr_endpoints_and_shape():
    n_s = 7
    assert schedule.cyclic_lr(0, 1e-5, 1e-1, n_s) == pytest.approx(1e-5)
    assert schedule.cyclic_lr(n_s, 1e-5, 1e-1, n_s) == pytest.approx(1e-1)
    assert schedule.cyclic_lr(2 * n_s, 1e-5, 1e-1, n_s) == pytest.approx(1e-5)
    assert schedule.cyclic_lr(3 * n_s, 1e-5, 1e-1, n_s) == pytest.approx(1e-1)
    steps = np.arange(4 * n_s)
    eta = schedule.cyclic_lr(steps, 1e-5, 1e-1, n_s)
    assert np.all(np.diff(eta[:n_s + 1]) > 0) and np.all(np.diff(eta[n_s:2 * n_s + 1]) < 0)


def test_cyclic_lr_equals_torch_cycliclr_over_three_cycles():
    n_s, lo, hi = 9, 1e-5, 1e-1
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lo)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=lo, max_lr=hi, step_size_up=n_s,
                                              cycle_momentum=False)
    ref = []
    for _ in range(6 * n_s):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    np.testing.assert_allclose(schedule.cyclic_lr(np.arange(6 * n_s), lo, hi, n_s), ref, rtol=1e-12)


def test_default_step_size():
    assert schedule.default_step_size(45000, 100) == 900
    assert schedule.default_step_size(49050, 100) == 980


def reference_augment(img, flip, dy, dx):
    """One image (3, 32, 32), by loops: flip horizontally, then shift by (dy, dx) with zero fill."""
    src = img[:, :, ::-1] if flip else img
    out = np.zeros_like(img)
    for r in range(32):
        for c in range(32):
            sr, sc = r - dy, c - dx
            if 0 <= sr < 32 and 0 <= sc < 32:
                out[:, r, c] = src[:, sr, sc]
    return out


def test_augmentation_matches_per_image_reference():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3072)).astype(np.float32)
    flips = np.array([False, True, False, True, True, False])
    dy = np.array([0, 0, 3, -2, 1, -3])
    dx = np.array([0, 0, -1, 3, -3, 2])
    out = augment.apply_augmentation(X, flips, dy, dx)
    assert out.shape == X.shape and out.dtype == X.dtype
    for i in range(6):
        ref = reference_augment(X[i].reshape(3, 32, 32), flips[i], dy[i], dx[i])
        np.testing.assert_array_equal(out[i].reshape(3, 32, 32), ref)
    np.testing.assert_array_equal(out[0], X[0])  # no flip, no shift: unchanged


def test_augmentation_is_seeded_and_bounded():
    X = np.random.default_rng(1).normal(size=(50, 3072))
    a = augment.augment_batch(np.random.default_rng(5), X, True, 3)
    b = augment.augment_batch(np.random.default_rng(5), X, True, 3)
    np.testing.assert_array_equal(a, b)
    flips, dy, dx = augment.draw_augmentation(np.random.default_rng(5), 10000, True, 3)
    assert dy.min() == -3 and dy.max() == 3 and dx.min() == -3 and dx.max() == 3
    assert 0.45 < flips.mean() < 0.55


def test_training_with_augmentation_keeps_labels(monkeypatch):
    """Augmentation sees only images: every labelled batch is y[idx] of the images it came from."""
    from handbackprop.nn import train as train_mod
    from handbackprop.nn.network import build_network

    seen = []
    orig = train_mod.take_batch

    def spy(X, y, idx, dtype):
        xb, yb = orig(X, y, idx, dtype)
        seen.append((idx.copy(), yb.copy()))
        return xb, yb

    monkeypatch.setattr(train_mod, "take_batch", spy)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3072)).astype(np.float32), rng.integers(0, 10, 200)
    cfg = train_mod.TrainConfig(lam=0.0, cycles=1, batch_size=50, flip=True, max_shift=3, n_s=4)
    train_mod.train(build_network(3072, [8], seed=0), X, y, None, None, cfg, log=lambda s: None)
    assert len(seen) == 8
    for idx, yb in seen:
        np.testing.assert_array_equal(yb, y[idx])

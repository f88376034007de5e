"""A 2-D convolution by im2col (stride 1, zero padding), as in cs231n.

    handbackprop check examples/conv.py::Conv2d

The forward gathers every K×K patch into a column with one integer-array index (the same
indices on NumPy and torch), so the product with the flattened filters is a single matmul,
and autograd differentiates the gather too. The backward scatters the columns back with
np.add.at (col2im): overlapping patches add up.
"""
import numpy as np
from array_api_compat import array_namespace


def patch_indices(C, H, W, K, pad):
    """Row and column indices (C*K*K, Ho*Wo) of every patch entry in the padded image;
    they depend on shapes only, never on x."""
    Ho, Wo = H + 2 * pad - K + 1, W + 2 * pad - K + 1
    ki, kj = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")  # (K, K)
    oi, oj = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")  # (Ho, Wo)
    rows = (ki.reshape(1, -1, 1) + oi.reshape(1, 1, -1)).repeat(C, axis=0).reshape(C * K * K, -1)
    cols = (kj.reshape(1, -1, 1) + oj.reshape(1, 1, -1)).repeat(C, axis=0).reshape(C * K * K, -1)
    chan = np.repeat(np.arange(C), K * K).reshape(-1, 1)  # (C*K*K, 1)
    return chan, rows, cols, Ho, Wo


def conv_forward(x, params, pad=1):
    """x (N, C, H, W), w (F, C, K, K), b (F,) -> out (N, F, Ho, Wo)."""
    xp = array_namespace(x)
    w, b = params["w"], params["b"]
    N, C, H, W = x.shape
    F, _, K, _ = w.shape
    xpad = xp.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=x.dtype)  # (N, C, Hp, Wp)
    xpad[:, :, pad:pad + H, pad:pad + W] = x
    chan, rows, cols, Ho, Wo = patch_indices(C, H, W, K, pad)
    X_col = xpad[:, xp.asarray(chan), xp.asarray(rows), xp.asarray(cols)]  # (N, C*K*K, Ho*Wo)
    w_row = xp.reshape(w, (F, C * K * K))  # (F, C*K*K)
    out = w_row @ X_col + xp.reshape(b, (F, 1))  # (N, F, Ho*Wo)
    return xp.reshape(out, (N, F, Ho, Wo)), (x.shape, X_col, w, pad)


def conv_backward(dout, cache):
    """dout (N, F, Ho, Wo) -> dx (N, C, H, W), {w (F, C, K, K), b (F,)}."""
    x_shape, X_col, w, pad = cache
    N, C, H, W = x_shape
    F, _, K, _ = w.shape
    dout_col = dout.reshape(N, F, -1)  # (N, F, Ho*Wo)
    db = dout_col.sum(axis=(0, 2))  # (F,)
    dw = np.einsum("nfp,nqp->fq", dout_col, X_col).reshape(w.shape)  # (F, C, K, K)
    dX_col = w.reshape(F, -1).T @ dout_col  # (N, C*K*K, Ho*Wo)
    chan, rows, cols, _, _ = patch_indices(C, H, W, K, pad)
    dxpad = np.zeros((N, C, H + 2 * pad, W + 2 * pad), dtype=dout.dtype)
    np.add.at(dxpad, (slice(None), chan, rows, cols), dX_col)  # col2im: overlaps add up
    return dxpad[:, :, pad:pad + H, pad:pad + W], {"w": dw, "b": db}


class Conv2d:
    forward = staticmethod(conv_forward)
    backward = staticmethod(conv_backward)

    @staticmethod
    def example(rng):
        x = rng.normal(size=(2, 3, 5, 5))  # (N, C, H, W)
        return x, {"w": rng.normal(0, 0.3, (4, 3, 3, 3)), "b": rng.normal(0, 0.1, 4)}

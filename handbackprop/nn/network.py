"""A fully connected ReLU network of any depth; no hidden layer = softmax linear classifier.

Parameters are named ``W1, b1, W2, b2, ...`` (layer index from 1), and
gradients use exactly the same keys in a separate dict, everywhere in the
project: ``grads["W1"]`` is d cost / d ``params["W1"]``.

With ``batch_norm=True`` every hidden layer i is x W_i -> batch norm (``gamma<i>``,
``beta<i>``, no ``b<i>``: see `batchnorm`) -> ReLU (-> dropout); the output layer
keeps ``W<L>, b<L>``. Running statistics are not parameters (no gradient, no
update by an optimiser): they live in ``state`` as ``mean<i>, var<i>``.
`arrays()` / `load_arrays()` give parameters and state together for saving.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import batchnorm, blas, layers


@dataclass
class Network:
    """sizes = [D, H1, ..., K]; dropout p applies to every hidden layer's output.

    init: None (the study's original scheme, see `init_params`; He for batch-norm
    nets), "he" (W ~ N(0, 2/fan_in)) or a number σ (every W ~ N(0, σ²)).
    """

    sizes: list[int]
    dropout: float = 0.0
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    params: dict[str, np.ndarray] = field(default_factory=dict)
    batch_norm: bool = False
    init: str | float | None = None
    bn_momentum: float = batchnorm.MOMENTUM
    bn_eps: float = batchnorm.EPS
    state: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.dtype = np.dtype(self.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if len(self.sizes) < 2:
            raise ValueError(f"sizes needs input and output widths, got {self.sizes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.batch_norm and self.n_layers == 1:
            raise ValueError(f"batch_norm needs at least one hidden layer, but sizes {self.sizes} "
                             "is a linear classifier")
        check_init(self.init)
        if self.batch_norm and not self.state:
            self.reset_state()
        if not 0.0 < self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def hidden(self) -> list[int]:
        return list(self.sizes[1:-1])

    def weight_names(self) -> list[str]:
        return [f"W{i}" for i in range(1, self.n_layers + 1)]

    # ------------------------------------------------------------------ init
    def init_params(self, rng: np.random.Generator) -> "Network":
        """The study's initialisation.

        Linear classifier: W, b ~ N(0, 0.01^2). Deeper nets: W_l ~ N(0, 1/fan_in)
        (Xavier-like, keeps activations O(1) through ReLU layers), biases 0.
        Batch norm or an explicit `init`: `init_scaled`.
        """
        if self.batch_norm or self.init is not None:
            return self.init_scaled(rng)
        self.params = {}
        for i, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            if self.n_layers == 1:
                W = rng.normal(0.0, 0.01, size=(d_in, d_out))
                b = rng.normal(0.0, 0.01, size=d_out)
            else:
                W = rng.normal(0.0, 1.0 / np.sqrt(d_in), size=(d_in, d_out))
                b = np.zeros(d_out)
            self.params[f"W{i}"] = W.astype(self.dtype)
            self.params[f"b{i}"] = b.astype(self.dtype)
        return self

    def set_params(self, params: dict[str, np.ndarray]) -> "Network":
        expected = set(self.param_names())
        if set(params) != expected:
            raise ValueError(f"parameters {sorted(params)} do not match layers {sorted(expected)}")
        self.params = {k: np.ascontiguousarray(v, dtype=self.dtype) for k, v in params.items()}
        return self

    # ------------------------------------------------------- forward/backward
    def draw_masks(self, rng: np.random.Generator, n: int) -> list[np.ndarray] | None:
        """One inverted-dropout mask per hidden layer for a batch of n, or None."""
        if self.dropout == 0.0 or self.n_layers == 1:
            return None
        return [layers.dropout_mask(rng, (n, h), self.dropout, self.dtype) for h in self.hidden]

    def forward(self, X, masks=None, *, training=False, update_stats=True):
        """X (N, D) -> scores (N, K), caches. `masks` switches dropout on (training).

        Batch norm only: `training` normalises with batch statistics (else running
        ones), and then `update_stats` moves the running averages; a gradient check
        passes update_stats=False to evaluate the training cost without changing them.
        """
        if self.batch_norm:
            return self.forward_bn(X, masks, training, update_stats)
        h = X
        caches = []
        for i in range(1, self.n_layers + 1):
            h, affine_cache = layers.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            relu_cache = drop_cache = None
            if i < self.n_layers:
                h, relu_cache = layers.relu_forward(h)
                if masks is not None:
                    h, drop_cache = layers.dropout_forward(h, masks[i - 1])
            caches.append((affine_cache, relu_cache, drop_cache))
        return h, caches

    def backward(self, dscores, caches, lam: float, weight_step=None) -> dict[str, np.ndarray]:
        """dscores (N, K) -> grads with the same keys as params, L2 term included.

        weight_step = (alpha, beta): plain SGD folded into the weight GEMMs. Each large W becomes
        beta*W + alpha*xᵀdh in place (`SGD.weight_step`: alpha = -η, beta = 1 - 2λη, i.e.
        W - η(2λW + xᵀdh)), after its layer's dx has been formed from the old W; grads then
        omits those weights and holds the rest (small W, biases, γ, β) for the optimiser."""
        if self.batch_norm:
            return self.backward_bn(dscores, caches, lam, weight_step)
        grads = {}
        dh = dscores
        for i in range(self.n_layers, 0, -1):
            affine_cache, relu_cache, drop_cache = caches[i - 1]
            if i < self.n_layers:
                if drop_cache is not None:
                    dh = layers.dropout_backward(dh, drop_cache)
                dh = layers.relu_backward(dh, relu_cache)
            dh, grads[f"b{i}"] = self._affine_backward(i, dh, affine_cache, lam, weight_step, grads)
        return grads

    def _affine_backward(self, i: int, dout, affine_cache, lam: float, weight_step, grads):
        """Layer i's affine backward -> (dx or None for the first layer, db). W{i}'s gradient,
        L2 term included, goes into grads; or, with weight_step where BLAS takes the call
        (`blas.fuses`), the gradient GEMM steps W{i} in place and grads does not get it. A small
        weight keeps the plain gradient: the fused step saves nothing there, and the update then
        rounds once at the weights' scale (the fused GEMM rounds βW before adding the product)."""
        W = self.params[f"W{i}"]
        fused = weight_step is not None and blas.fuses(W)
        if fused:
            acc = (W, *weight_step)
        else:  # dW accumulates onto the L2 gradient: no separate add pass
            l2 = layers.l2_grad(W, lam)
            if np.may_share_memory(l2, W):  # an l2_grad returning W itself: the GEMM must not write W
                l2 = l2.copy()
            acc = (l2, 1.0, 1.0)
        dx, dW, db = layers.affine_backward(dout, affine_cache, need_dx=i > 1, acc=acc)
        if not fused:
            grads[f"W{i}"] = dW
        elif dW is not W:  # formed out of place (W overlapping the inputs): no step was taken
            raise RuntimeError(f"W{i} shares memory with its layer's input or gradient")
        return dx, db

    def cost_and_grads(self, X, y, lam: float, masks=None, update_stats=True, weight_step=None):
        """Returns (loss, reg, grads): cost = loss + reg. A training step: batch norm
        uses batch statistics and, unless update_stats=False, updates its running ones.
        weight_step: see `backward` (the weights are updated in place, grads omits them)."""
        scores, caches = self.forward(X, masks, training=True, update_stats=update_stats)
        loss, dscores, _ = layers.softmax_cross_entropy(scores, y)
        reg = layers.l2_penalty([self.params[k] for k in self.weight_names()], lam)
        grads = self.backward(dscores, caches, lam, weight_step)
        return loss, reg, grads

    def cost(self, X, y, lam: float, masks=None, update_stats=True) -> float:
        """The training cost alone (no backward): what finite differences need."""
        scores, _ = self.forward(X, masks, training=True, update_stats=update_stats)
        loss, _, _ = layers.softmax_cross_entropy(scores, y)
        return loss + layers.l2_penalty([self.params[k] for k in self.weight_names()], lam)

    # ------------------------------------------------------------ evaluation
    def predict_proba(self, X, batch: int = 5000) -> np.ndarray:
        """Softmax probabilities (N, K), in vectorised chunks to bound memory."""
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        for start in range(0, X.shape[0], batch):
            xb = np.asarray(X[start:start + batch], dtype=self.dtype)
            scores, _ = self.forward(xb)
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
            out[start:start + batch] = scores
        return out

    def predict_log_proba(self, X, batch: int = 5000) -> np.ndarray:
        """Log-softmax (N, K) in float64, in chunks, straight from the scores.

        Not log(predict_proba): a float32 probability underflows to 0 below ~1e-45, so a
        confidently wrong network's loss taken from its probabilities would be clamped (a
        real-data trajectory gate caught 216 against the true 100)."""
        return log_softmax_in_chunks(lambda xb: self.forward(xb)[0], X, self.dtype, self.sizes[-1], batch)

    def evaluate(self, X, y, lam: float, batch: int = 5000) -> dict[str, float]:
        """loss, reg, cost and accuracy on a whole split (loss from log-probabilities)."""
        return metrics_from_log_probs(self.predict_log_proba(X, batch), y, self.regulariser(lam))

    def regulariser(self, lam: float) -> float:
        return layers.l2_penalty([self.params[k] for k in self.weight_names()], lam)

    # ------------------------------------------------------------ batch norm
    def param_names(self) -> list[str]:
        """Every parameter key, layer by layer (W, then b or gamma and beta)."""
        names = []
        for i in range(1, self.n_layers + 1):
            bn = self.batch_norm and i < self.n_layers
            names += [f"W{i}", f"gamma{i}", f"beta{i}"] if bn else [f"W{i}", f"b{i}"]
        return names

    def state_names(self) -> list[str]:
        """Running-statistic keys (batch norm only): mean1, var1, mean2, ..."""
        if not self.batch_norm:
            return []
        return [f"{k}{i}" for i in range(1, self.n_layers) for k in ("mean", "var")]

    def init_scaled(self, rng: np.random.Generator) -> "Network":
        """W_l ~ N(0, 2/fan_in) ("he", the default with batch norm) or N(0, σ²) (init = σ);
        biases and β 0, γ 1, running statistics reset."""
        scheme = "he" if self.init is None else self.init
        self.params = {}
        for i, (d_in, d_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:]), start=1):
            std = np.sqrt(2.0 / d_in) if scheme == "he" else float(scheme)
            self.params[f"W{i}"] = rng.normal(0.0, std, size=(d_in, d_out)).astype(self.dtype)
            if self.batch_norm and i < self.n_layers:
                self.params[f"gamma{i}"] = np.ones(d_out, dtype=self.dtype)
                self.params[f"beta{i}"] = np.zeros(d_out, dtype=self.dtype)
            else:
                self.params[f"b{i}"] = np.zeros(d_out, dtype=self.dtype)
        return self.reset_state()

    def reset_state(self) -> "Network":
        """Running mean 0 and variance 1 per hidden unit, as torch starts them."""
        self.state = {}
        for i, h in enumerate(self.hidden, start=1):
            if self.batch_norm:
                self.state[f"mean{i}"] = np.zeros(h, dtype=self.dtype)
                self.state[f"var{i}"] = np.ones(h, dtype=self.dtype)
        return self

    def forward_bn(self, X, masks, training: bool, update_stats: bool):
        """`forward` of a batch-norm network; caches (affine, bn, relu, dropout) per layer."""
        h = X
        caches = []
        for i in range(1, self.n_layers):
            s, affine_cache = batchnorm.linear_forward(h, self.params[f"W{i}"])  # (N, H_i)
            gamma, beta = self.params[f"gamma{i}"], self.params[f"beta{i}"]
            if training:
                h, bn_cache, (mu, var) = batchnorm.batchnorm_forward(s, gamma, beta, self.bn_eps)
                if update_stats:
                    batchnorm.update_running_stats(self.state[f"mean{i}"], self.state[f"var{i}"],
                                                   mu, var, s.shape[0], self.bn_momentum)
            else:
                h = batchnorm.batchnorm_eval_forward(s, gamma, beta, self.state[f"mean{i}"],
                                                     self.state[f"var{i}"], self.bn_eps)
                bn_cache = None
            h, relu_cache = layers.relu_forward(h)
            drop_cache = None
            if masks is not None:
                h, drop_cache = layers.dropout_forward(h, masks[i - 1])
            caches.append((affine_cache, bn_cache, relu_cache, drop_cache))
        L = self.n_layers
        scores, affine_cache = layers.affine_forward(h, self.params[f"W{L}"], self.params[f"b{L}"])
        caches.append((affine_cache, None, None, None))
        return scores, caches

    def backward_bn(self, dscores, caches, lam: float, weight_step=None) -> dict[str, np.ndarray]:
        """`backward` of a batch-norm network; needs the caches of a training forward."""
        L = self.n_layers
        grads = {}
        dh, grads[f"b{L}"] = self._affine_backward(L, dscores, caches[L - 1][0], lam, weight_step,
                                                   grads)
        for i in range(L - 1, 0, -1):
            affine_cache, bn_cache, relu_cache, drop_cache = caches[i - 1]
            if bn_cache is None:
                raise ValueError("backward needs the caches of a training forward (training=True): "
                                 "evaluation mode has no batch statistics to differentiate")
            if drop_cache is not None:
                dh = layers.dropout_backward(dh, drop_cache)
            dh = layers.relu_backward(dh, relu_cache)
            ds, grads[f"gamma{i}"], grads[f"beta{i}"] = batchnorm.batchnorm_backward(dh, bn_cache)
            dh, _ = self._affine_backward(i, ds, affine_cache, lam, weight_step, grads)  # no bias
        return grads

    # ------------------------------------------------------------ save/load
    def arrays(self) -> dict[str, np.ndarray]:
        """Parameters and running statistics in one flat dict (what a weights file holds)."""
        return {**self.params, **self.state}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> "Network":
        """Inverse of `arrays()`: parameters and, for batch norm, the running statistics."""
        arrays = dict(arrays)
        state = {k: arrays.pop(k) for k in self.state_names() if k in arrays}
        missing = set(self.state_names()) - set(state)
        if missing:
            raise ValueError(f"running statistics {sorted(missing)} missing for a batch-norm network")
        self.set_params(arrays)
        self.state = {k: np.array(v, dtype=self.dtype) for k, v in state.items()}
        return self


def check_init(init) -> None:
    """init must be None, "he" or a positive number σ; the error names `init`."""
    if init is None or init == "he":
        return
    if isinstance(init, bool) or not isinstance(init, (int, float)) or not init > 0:
        raise ValueError(f"init must be null, \"he\" or a positive standard deviation, got {init!r}")


def network_from_arrays(arrays: dict[str, np.ndarray], dropout: float = 0.0,
                        dtype="float32") -> Network:
    """A network rebuilt from `Network.arrays()` (a weights file): sizes from the W
    shapes, batch norm from the presence of gamma1."""
    n_layers = sum(1 for k in arrays if k.startswith("W"))
    sizes = [arrays["W1"].shape[0]] + [arrays[f"W{i}"].shape[1] for i in range(1, n_layers + 1)]
    net = Network(sizes, dropout=dropout, dtype=np.dtype(dtype), batch_norm="gamma1" in arrays)
    return net.load_arrays(arrays)


def log_softmax_in_chunks(scores_of, X, dtype, n_classes: int, batch: int = 5000) -> np.ndarray:
    """Log-softmax (N, K) in float64 of `scores_of(rows)` over X (N, D), `batch` rows at a time,
    each chunk cast to the network's `dtype` first (a memory-mapped split is read chunk by chunk).
    Network.predict_log_proba and the study's adapter of a user's model (study/user_network.py)
    both score through here."""
    out = np.empty((X.shape[0], n_classes), dtype=np.float64)
    for start in range(0, X.shape[0], batch):
        xb = np.asarray(X[start:start + batch], dtype=dtype)  # (B, D)
        s = np.array(scores_of(xb), dtype=np.float64)  # (B, K), a float64 copy: the scores stay intact
        s -= s.max(axis=1, keepdims=True)
        s -= np.log(np.exp(s).sum(axis=1, keepdims=True))
        out[start:start + batch] = s
    return out


def metrics_from_log_probs(log_probs, y, reg: float) -> dict[str, float]:
    """Loss, cost and accuracy from class log-probabilities (N, K)."""
    y = np.asarray(y)
    loss = float(-log_probs[np.arange(len(y)), y].mean())
    acc = float((log_probs.argmax(axis=1) == y).mean())
    return {"loss": loss, "reg": reg, "cost": loss + reg, "accuracy": acc}


def metrics_from_probs(probs, y, reg: float) -> dict[str, float]:
    """Loss, cost and accuracy from class probabilities (N, K)."""
    y = np.asarray(y)
    p_true = probs[np.arange(len(y)), y].astype(np.float64)
    loss = float(-np.log(np.maximum(p_true, 1e-300)).mean())
    acc = float((probs.argmax(axis=1) == y).mean())
    return {"loss": loss, "reg": reg, "cost": loss + reg, "accuracy": acc}


def build_network(input_dim: int, hidden: list[int], n_classes: int = 10, dropout: float = 0.0,
                  dtype="float32", seed: int = 0, *, batch_norm: bool = False,
                  init=None) -> Network:
    """A seeded, initialised network: hidden=[] gives the linear classifier.
    init: None (the study's scheme; He with batch norm), "he" or a number σ."""
    net = Network([input_dim, *hidden, n_classes], dropout=dropout, dtype=np.dtype(dtype),
                  batch_norm=batch_norm, init=init)
    return net.init_params(np.random.default_rng(seed))

"""A user's own model in the study: a config entry `module: path/to/file.py::Name` names a
network written outside the package (the network contract of handbackprop.check.network, plus
`input_dim`, `decayed` and `scores`). The workflow gates it with check_network on the study's
own images (`gate`), and the study's loop (nn/train.py) trains it through `UserNetwork`, an
adapter with the methods the loop, the metrics, the ensembles and the audit call on a
`Network` — so a user model writes the same run files as the built-in ones.

λ is the study's, not the user's: the user's loss_and_grads returns the data loss and its
gradient; the adapter adds λ‖W‖² to the cost and 2λW to the gradient of each `decayed`
parameter, and the study's optimiser (the config's `optimizer`, plain SGD by default) steps.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..nn import layers
from ..nn.network import metrics_from_log_probs
from .plan import N_CLASSES, ConfigError

# What the DAG needs beyond check_network's members: the data's width, the parameters λ
# decays, and the class scores the metrics, ensembles and audit predict with.
DAG_MEMBERS = ("n_classes", "input_dim", "decayed", "init_params", "data", "loss",
               "loss_and_grads", "step", "lr", "scores")
# Model-entry keys that describe a built-in network, meaningless for a user's module.
BUILTIN_ONLY = ("hidden", "dropout", "batch_norm", "init", "lam_from")


def is_user_model(spec: dict) -> bool:
    """A spec (model entry or a run's recorded spec) that names a user's module."""
    return bool(spec.get("module"))


def module_file(target: str) -> str:
    """The file of `path.py::Name` (an input of the model's gate and training jobs)."""
    return target.partition("::")[0]


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_LOADED: dict[str, object] = {}


def load(target: str):
    """The instantiated network `path.py::Name`; ContractError (from the checker) when the
    file or name is missing or a DAG member is absent."""
    from ..check.contract import ContractError, instantiate, resolve_target

    if target not in _LOADED:
        path, _, name = target.partition("::")
        if not name:
            raise ContractError(f"{target}: name the network, as path/to/file.py::ClassName")
        ((_, obj),) = resolve_target(target)
        net = instantiate(obj)
        missing = [m for m in DAG_MEMBERS if not hasattr(net, m)]
        if missing:
            raise ContractError(f"{name} has no {', '.join(f'`{m}`' for m in missing)}: a model the "
                                f"workflow trains keeps the network contract plus input_dim, "
                                f"decayed and scores (see handbackprop.check.network)")
        _LOADED[target] = net
    return _LOADED[target]


def validate(config: dict) -> None:
    """Every model entry with `module`: ConfigError naming `models.<m>.<key>` for a file or
    class that is not there, a missing contract member, a built-in-only key, a network that is
    not a 10-class CIFAR classifier, a missing fixed eta_max (user models have no range test)
    or a use the study cannot make of it (a bonus experiment's model)."""
    from ..check.contract import ContractError

    users = [m for m, e in config["models"].items() if is_user_model(e)]
    for m in users:
        entry, key = config["models"][m], f"models.{m}.module"
        for k in BUILTIN_ONLY:
            if k in entry:
                raise ConfigError(f"models.{m}.{k}", f"a user model ({entry['module']}) is defined "
                                  f"by its module; `{k}` applies to the built-in networks only")
        if not Path(module_file(entry["module"])).is_file():
            raise ConfigError(key, f"no such file: {module_file(entry['module'])} (paths are "
                              f"relative to the working directory, {Path.cwd()})")
        try:
            net = load(entry["module"])
        except ContractError as e:
            raise ConfigError(key, str(e)) from None
        if int(net.n_classes) != N_CLASSES:
            raise ConfigError(key, f"n_classes is {net.n_classes}; CIFAR-10 has {N_CLASSES}")
        if "eta_max" not in entry:
            raise ConfigError(f"models.{m}.eta_max", "a user model has no learning-rate range "
                              "test: set eta_max (and eta_min, or the training default)")
    bonus = config.get("bonus") or {}
    for name, exp in bonus.items():
        if isinstance(exp, dict) and exp.get("model") in users:
            raise ConfigError(f"bonus.{name}.model", f"{exp['model']!r} is a user model; the "
                              f"bonus experiments vary the built-in networks' settings")


class UserNetwork:
    """The methods of nn.network.Network that the study calls, over a user's network.

    params: {name: array} in the training dtype; the user's code runs on them as they are
    (float32 in training, like the study's own layers)."""

    def __init__(self, user, params: dict, dtype, name: str = "user model"):
        self.user, self.name = user, name
        self.dtype = np.dtype(dtype)
        self.params = {k: np.array(v, dtype=self.dtype) for k, v in params.items()}
        self.state: dict = {}  # no running statistics: weights.npz holds the parameters alone
        unknown = set(user.decayed) - set(self.params)
        if unknown:
            raise ValueError(f"{name}: decayed names {sorted(unknown)}, but the parameters are "
                             f"{sorted(self.params)}")

    def draw_masks(self, rng, n):
        return None  # no dropout: the module is the whole network

    def regulariser(self, lam: float) -> float:
        return layers.l2_penalty([self.params[k] for k in self.user.decayed], lam)

    def cost_and_grads(self, X, y, lam: float, masks=None, update_stats=True, weight_step=None):
        """(loss, reg, grads) like Network.cost_and_grads. `weight_step` (the study's fused SGD
        update) is declined: every gradient is returned and the optimiser steps them all."""
        loss, grads = self.user.loss_and_grads(self.params, X, y)
        if set(grads) != set(self.params):
            raise ValueError(f"{self.name}.loss_and_grads returned gradients {sorted(grads)}, "
                             f"the parameters are {sorted(self.params)}")
        grads = {k: np.asarray(g, dtype=self.dtype) for k, g in grads.items()}
        scale = layers.l2_scale(lam)
        for k in self.user.decayed:
            grads[k] = grads[k] + scale * self.params[k]  # d(λ‖W‖²)/dW = 2λW; a copy, not the user's
        return float(loss), self.regulariser(lam), grads

    def predict_log_proba(self, X, batch: int = 5000) -> np.ndarray:
        """Log-softmax (N, K) in float64 from the user's `scores`, in chunks."""
        out = np.empty((X.shape[0], N_CLASSES), dtype=np.float64)
        for start in range(0, X.shape[0], batch):
            xb = np.asarray(X[start:start + batch], dtype=self.dtype)  # (B, D)
            s = np.asarray(self.user.scores(self.params, xb), dtype=np.float64)  # (B, K)
            s -= s.max(axis=1, keepdims=True)
            s -= np.log(np.exp(s).sum(axis=1, keepdims=True))
            out[start:start + batch] = s
        return out

    def evaluate(self, X, y, lam: float, batch: int = 5000) -> dict[str, float]:
        return metrics_from_log_probs(self.predict_log_proba(X, batch), y, self.regulariser(lam))

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(self.params)


def build(spec: dict, input_dim: int, dtype, seed: int) -> UserNetwork:
    """The user's network, initialised by its own init_params from the run's seed."""
    net = load(spec["module"])
    if int(net.input_dim) != int(input_dim):
        raise ValueError(f"{spec['module']}: input_dim is {net.input_dim}, the data has "
                         f"{input_dim} columns")
    return UserNetwork(net, net.init_params(np.random.default_rng(seed)), dtype, spec["module"])


def from_arrays(spec: dict, arrays: dict, dtype) -> UserNetwork:
    """A trained user network from its weights file (the ensembles and the audit)."""
    return UserNetwork(load(spec["module"]), arrays, dtype, spec["module"])


class _OnImages:
    """The user's network with `data` replaced by rows of the study's own images, so the gate
    checks it on what it will train on (check_network calls net.data(rng))."""

    def __init__(self, net, X, y):
        self._net, self._X, self._y = net, X, y

    def __getattr__(self, name):
        return getattr(self._net, name)

    def data(self, rng):
        return self._X, self._y


def gate(target: str, X=None, y=None, *, seed: int = 0, **settings) -> dict:
    """check_network's evidence on `target` (on rows X, y when given), in the shape of the
    study's gate files: `passed`, `failures`, the module's sha256 and the checks."""
    from ..check.contract import ContractError
    from ..check.gate import _jsonable
    from ..check.network import check_network

    try:
        net = load(target)
        obj = net if X is None else _OnImages(net, np.asarray(X, dtype=np.float64), np.asarray(y))
        ev = check_network(obj, seed=seed, name=target.partition("::")[2], **settings)
    except ContractError as e:  # a contract broken at check time is a failed gate, with its message
        return {"gate": "user_model", "target": target, "passed": False, "failures": [str(e)]}
    return _jsonable({"gate": "user_model", "target": target, "passed": bool(ev["passed"]),
                      "failures": ev["failures"], "module_sha256": file_sha256(module_file(target)),
                      "n_images": None if X is None else int(len(y)), "evidence": ev})

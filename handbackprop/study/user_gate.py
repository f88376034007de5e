"""The network gates (handbackprop.check.network) on a user's model, on the study's own images:
what the rule gate_user_model runs (see study/user_model.py)."""
from __future__ import annotations

import numpy as np

from ..check.contract import ContractError
from ..check.gate import _jsonable
from ..check.network import check_network
from .user_model import UserModelError, file_sha256, load, module_file


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
    try:
        net = load(target)
        obj = net if X is None else _OnImages(net, np.asarray(X, dtype=np.float64), np.asarray(y))
        ev = check_network(obj, seed=seed, name=target.partition("::")[2], **settings)
    except (ContractError, UserModelError) as e:  # a contract broken at check time is a failed gate, with its message
        return {"gate": "user_model", "target": target, "passed": False, "failures": [str(e)]}
    return _jsonable({"gate": "user_model", "target": target, "passed": bool(ev["passed"]),
                      "failures": ev["failures"], "module_sha256": file_sha256(module_file(target)),
                      "n_images": None if X is None else len(y), "evidence": ev})

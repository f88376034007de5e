"""A user's own model in the study: a config entry `module: path/to/file.py::Name` names a
network written outside the package (the network contract of handbackprop.check.network, plus
`input_dim`, `decayed` and `scores`). Three modules, so that each rule's code input holds only
what it runs (an edit of the checker does not rerun the study's training):

- this one: the spec helpers, loading the module and `validate` (plan.validate calls it);
- study/user_network.py: `UserNetwork`, the adapter the study's loop, metrics, ensembles and
  audit train and score a user model through (runs.run, tables.network_of);
- study/user_gate.py: `gate`, check_network on the study's own images (rule gate_user_model).
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path

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


# The project folder (Snakefile, config.yaml, examples/): a relative module path is looked up
# in the working directory first, then here, so `--directory elsewhere` finds the examples.
PROJECT = Path(__file__).resolve().parents[2]


def module_file(target: str) -> Path:
    """The file of `path.py::Name` (an input of the model's gate and training jobs)."""
    path = Path(target.partition("::")[0])
    if path.is_absolute() or path.is_file() or not (PROJECT / path).is_file():
        return path
    return PROJECT / path


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class UserModelError(ValueError):
    """The module named by a config entry cannot be used; the message says why."""


_LOADED: dict[str, object] = {}


def load(target: str):
    """The instantiated network `path.py::Name` (loaded once per process); UserModelError
    when the file or name is missing or a member of the DAG's contract is absent. (Not the
    checker's loader: training jobs must not depend on the checker's code.)"""
    if target not in _LOADED:
        _, _, name = target.partition("::")
        if not name:
            raise UserModelError(f"{target}: name the network, as path/to/file.py::ClassName")
        path = module_file(target)
        if not path.is_file():
            raise UserModelError(f"no such file: {path} (a relative path is looked up in the "
                                 f"working directory, {Path.cwd()}, then in {PROJECT})")
        mod_name = f"_handbackprop_user_model_{Path(path).stem}_{abs(hash(str(Path(path).resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module  # pickling and dataclasses look modules up by name
        spec.loader.exec_module(module)
        if not hasattr(module, name):
            defined = [n for n, o in vars(module).items()
                       if inspect.isclass(o) and o.__module__ == mod_name]
            raise UserModelError(f"{path} defines no {name!r}; classes there: "
                                 f"{', '.join(defined) or 'none'}")
        obj = getattr(module, name)
        net = obj() if inspect.isclass(obj) else obj
        missing = [m for m in DAG_MEMBERS if not hasattr(net, m)]
        if missing:
            raise UserModelError(f"{name} has no {', '.join(f'`{m}`' for m in missing)}: a model "
                                 f"the workflow trains keeps the network contract plus input_dim, "
                                 f"decayed and scores (see handbackprop.check.network)")
        _LOADED[target] = net
    return _LOADED[target]


def validate(config: dict) -> None:
    """Every model entry with `module`: ConfigError naming `models.<m>.<key>` for a file or
    class that is not there, a missing contract member, a built-in-only key, a network that is
    not a 10-class CIFAR classifier, a missing fixed eta_max (user models have no range test)
    or a use the study cannot make of it (a bonus experiment's model)."""
    users = [m for m, e in config["models"].items() if is_user_model(e)]
    for m in users:
        entry, key = config["models"][m], f"models.{m}.module"
        for k in BUILTIN_ONLY:
            if k in entry:
                raise ConfigError(f"models.{m}.{k}", f"a user model ({entry['module']}) is defined "
                                  f"by its module; `{k}` applies to the built-in networks only")
        try:
            net = load(entry["module"])
        except UserModelError as e:
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

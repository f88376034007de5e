"""The layer contract, loading a user's layer, and the clear errors for bad input.

A layer is a pair of functions in NumPy (cs231n's contract):

    forward(x, params, **kwargs) -> (out, cache)      x: an array, params: {name: array}
    backward(dout, cache)        -> (dx, dparams)      dparams: {name: array}, same keys

grouped as a class (or any object) with attributes `forward` and `backward`, and optionally

    example(rng) -> (x, params) or (x, params, kwargs)   a point to check at (the command needs it)
    torch_forward(x, params, **kwargs) -> out             a torch forward, only where `forward`
                                                          cannot be written against an array namespace

Write `forward` against the array namespace of its input (the Python array API standard,
through array-api-compat), so the very same code runs on NumPy arrays and on torch tensors:

    from array_api_compat import array_namespace

    class Scale:
        def forward(x, params):
            xp = array_namespace(x)
            out = x * params["a"] + xp.tanh(x)  # (N, D)
            return out, (x, params["a"])
        def backward(dout, cache):
            x, a = cache
            return dout * (a + 1 - np.tanh(x) ** 2), {"a": (dout * x).sum(axis=0)}
        def example(rng):
            return rng.normal(size=(4, 3)), {"a": rng.normal(size=3)}

The backward may use NumPy directly: it is only ever run on NumPy arrays.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np


class ContractError(ValueError):
    """The layer does not keep the contract; the message says where and how."""


# NumPy attributes that are constants, harmless on any array library.
NUMPY_CONSTANTS = {"pi", "e", "inf", "nan", "newaxis", "euler_gamma"}


@dataclass
class Layer:
    name: str
    forward: Callable
    backward: Callable
    example: Callable | None = None
    torch_forward: Callable | None = None
    obj: Any = None  # the class or object the functions came from
    kwargs: dict = field(default_factory=dict)


def is_layer(obj) -> bool:
    return callable(getattr(obj, "forward", None)) and callable(getattr(obj, "backward", None))


def is_network(obj) -> bool:
    return callable(getattr(obj, "loss", None)) and callable(getattr(obj, "loss_and_grads", None))


def instantiate(obj):
    """A class is instantiated (its methods become bound; staticmethods stay plain functions)."""
    if inspect.isclass(obj):
        try:
            return obj()
        except TypeError as e:
            raise ContractError(f"{obj.__name__}: a layer class must be constructible with no "
                                f"arguments ({e})") from None
    return obj


def as_layer(obj, name: str | None = None) -> Layer:
    if isinstance(obj, Layer):
        return obj
    if not is_layer(obj):
        raise ContractError(f"{name or obj!r} has no forward and backward: a layer is an object "
                            f"with forward(x, params) -> (out, cache) and "
                            f"backward(dout, cache) -> (dx, dparams)")
    name = name or getattr(obj, "__name__", type(obj).__name__)
    inst = instantiate(obj)
    return Layer(name=name, forward=inst.forward, backward=inst.backward,
                 example=getattr(inst, "example", None),
                 torch_forward=getattr(inst, "torch_forward", None), obj=inst)


def load_module(path: str | Path) -> types.ModuleType:
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"no such file: {path}")
    mod_name = f"_handbackprop_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def resolve_target(target: str) -> list[tuple[str, Any]]:
    """`path/to/file.py::Name` -> [(Name, obj)]; `path/to/file.py` -> every layer and network
    defined in that file, in source order; `path/to/folder` -> those of every file in it."""
    path, _, name = target.partition("::")
    if not name and Path(path).is_dir():  # a folder: every layer and network of its files
        return [(f"{f.stem}.{n}", obj) for f in sorted(Path(path).glob("*.py"))
                for n, obj in _defined(load_module(f))]
    module = load_module(path)
    if name:
        obj = module
        for part in name.split("."):
            if not hasattr(obj, part):
                found = [n for n, _ in _defined(module)]
                raise ContractError(f"{path} defines no {name!r}; layers and networks there: "
                                    f"{', '.join(found) or 'none'}")
            obj = getattr(obj, part)
        return [(name, obj)]
    found = _defined(module)
    if not found:
        raise ContractError(f"{path} defines no layer (forward + backward) or network "
                            f"(loss + loss_and_grads)")
    return found


def _defined(module) -> list[tuple[str, Any]]:
    out = []
    for n, obj in vars(module).items():
        if n.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) and (is_layer(obj) or is_network(obj)):
            out.append((n, obj))
    return out


def _unwrap(fn):
    return getattr(fn, "__func__", fn)


def source_of(fn) -> tuple[ast.FunctionDef, str, int]:
    """The function's AST (line numbers as in its file), its file name, and its first line."""
    fn = _unwrap(fn)
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError) as e:
        raise ContractError(f"cannot read the source of {getattr(fn, '__qualname__', fn)}: {e}") from None
    tree = ast.parse(textwrap.dedent("".join(lines)))
    ast.increment_lineno(tree, start - 1)
    node = tree.body[0]
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise ContractError(f"{fn!r} is not a plain function definition")
    return node, inspect.getsourcefile(fn) or "<unknown>", start


def numpy_calls(fn) -> list[tuple[int, str, str]]:
    """Direct uses of the NumPy module inside `fn`: (line, `np.sqrt`, the source line). Such a
    forward cannot run on torch tensors, so autograd could not differentiate it."""
    fn = _unwrap(fn)
    try:  # a lambda or a partial statement has no FunctionDef of its own: scan its lines
        lines, start = inspect.getsourcelines(fn)
        node = ast.parse(textwrap.dedent("".join(lines)))
        ast.increment_lineno(node, start - 1)
        filename = inspect.getsourcefile(fn) or ""
    except (OSError, TypeError, SyntaxError):
        return []  # no source: running it on torch will say what fails
    numpy_names = {n for n, v in fn.__globals__.items() if v is np}
    numpy_names |= {n for n, v in inspect.getclosurevars(fn).nonlocals.items() if v is np}
    try:
        file_lines = Path(filename).read_text().splitlines()
    except OSError:
        file_lines = []
    hits = []
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                and sub.value.id in numpy_names and sub.attr not in NUMPY_CONSTANTS):
            line = file_lines[sub.lineno - 1].strip() if sub.lineno <= len(file_lines) else ""
            hits.append((sub.lineno, f"{sub.value.id}.{sub.attr}", line))
    return sorted(set(hits))


def where(fn) -> str:
    fn = _unwrap(fn)
    try:
        return f"{Path(inspect.getsourcefile(fn)).name}:{inspect.getsourcelines(fn)[1]}"
    except (OSError, TypeError):
        return "?"


def split_forward(result, who: str):
    """forward returns (out, cache); a bare array is accepted only from a torch_forward."""
    if isinstance(result, tuple) and len(result) == 2:
        return result
    n = len(result) if isinstance(result, tuple) else "a single value"
    raise ContractError(f"{who} must return (out, cache): got {n if isinstance(n, str) else f'a tuple of {n}'}")


def split_backward(result, x, params: dict, who: str):
    """Validate backward's (dx, dparams) against the inputs' names and shapes."""
    if not (isinstance(result, tuple) and len(result) == 2):
        got = f"a tuple of {len(result)} arrays" if isinstance(result, tuple) else type(result).__name__
        raise ContractError(f"{who} must return (dx, dparams) — dx an array shaped like x and "
                            f"dparams a dict {{name: array}} — but returned {got}")
    dx, dparams = result
    if params and not isinstance(dparams, dict):
        raise ContractError(f"{who}: the second value must be a dict of parameter gradients "
                            f"with keys {sorted(params)}, got {type(dparams).__name__}")
    dparams = dparams or {}
    if set(dparams) != set(params):
        missing, extra = sorted(set(params) - set(dparams)), sorted(set(dparams) - set(params))
        raise ContractError(f"{who}: dparams keys must match params: "
                            + "; ".join(s for s in (f"missing {missing}" if missing else "",
                                                    f"unexpected {extra}" if extra else "") if s))
    for name, g, ref in [("dx", dx, x), *((f"d{k}", dparams[k], params[k]) for k in params)]:
        shape = np.shape(g)
        if shape != np.shape(ref):
            raise ContractError(f"{who}: {name} has shape {shape}, but its input has shape "
                                f"{np.shape(ref)}")
    return np.asarray(dx), {k: np.asarray(v) for k, v in dparams.items()}


def example_point(layer: Layer, rng: np.random.Generator):
    """(x, params, kwargs) from the layer's example(rng)."""
    if layer.example is None:
        raise ContractError(f"{layer.name} has no example(rng) -> (x, params): give the point "
                            f"to check at, or pass x and params to check_layer")
    ex = layer.example(rng)
    if not isinstance(ex, tuple) or len(ex) not in (2, 3):
        raise ContractError(f"{layer.name}.example must return (x, params) or (x, params, kwargs)")
    x, params = ex[0], ex[1]
    kwargs = ex[2] if len(ex) == 3 else {}
    if not isinstance(params, dict):
        raise ContractError(f"{layer.name}.example: params must be a dict {{name: array}}")
    return x, params, kwargs

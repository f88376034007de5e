"""gate_module: the one call a workflow rule (or CI) makes to gate a user's module.

    evidence = gate_module("path/to/layers.py")            # every layer and network in the file
    evidence = gate_module("path/to/layers.py::BatchNorm")  # one of them

Returns a JSON-serialisable dict: {"gate": "check", "passed", "failures", "targets": [...]},
one entry per layer (check_layer's evidence, plus the mutation proof with `mutate=True`) or
network (check_network's evidence). A contract error (a forward that is not array-API clean,
a backward returning the wrong number of arrays, a missing example) is a failure with its
message, not an exception, so a rule can write the evidence and then fail on `passed`.
"""
from __future__ import annotations

import json
import math

from . import contract
from .checker import check_layer
from .contract import ContractError
from .errors import Thresholds


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)
    if hasattr(o, "item") and getattr(o, "shape", None) == ():
        return _jsonable(o.item())
    return o


def check_target(name: str, obj, *, seed=0, mutate=False, max_mutants=60,
                 thresholds: Thresholds = Thresholds()) -> dict:
    try:
        if contract.is_network(obj):
            from .network import check_network
            ev = check_network(obj, seed=seed, name=name)
            ev["kind"] = "network"
            return ev
        ev = check_layer(obj, seed=seed, thresholds=thresholds, name=name)
        ev["kind"] = "layer"
        if mutate:
            from .mutate import mutation_test
            ev["mutations"] = mutation_test(obj, seed=seed, thresholds=thresholds,
                                            max_mutants=max_mutants, name=name)
        return ev
    except ContractError as e:
        return {"layer": name, "kind": "contract error", "passed": False, "verdict": "contract error",
                "failures": [str(e)], "notes": []}


def gate_module(target: str, *, seed: int = 0, mutate: bool = False, max_mutants: int = 60) -> dict:
    """Check every layer and network of a user's file (`path.py` or `path.py::Name`)."""
    try:
        found = contract.resolve_target(target)
    except ContractError as e:
        return {"gate": "check", "target": target, "passed": False, "failures": [str(e)], "targets": []}
    results = [check_target(n, obj, seed=seed, mutate=mutate, max_mutants=max_mutants) for n, obj in found]
    failures = [f"{r['layer']}: {f}" for r in results for f in r["failures"]]
    return _jsonable({"gate": "check", "target": target, "passed": not failures,
                      "failures": failures, "targets": results})


def dumps(evidence: dict) -> str:
    return json.dumps(_jsonable(evidence), indent=1)

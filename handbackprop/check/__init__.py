"""Check your own backprop: a NumPy layer's backward against torch autograd on the same forward.

    from handbackprop.check import check_layer, format_report
    print(format_report(check_layer(MyLayer)))

Command: `handbackprop check path/to/layers.py::MyLayer`; pytest: the
`assert_backward_matches_autograd` fixture; a workflow rule: `handbackprop.check.gate.gate_module`.
The contract is in `contract.py`. Needs NumPy, SciPy, array-api-compat and torch; not Snakemake.

The names below load their submodule on first use, and this file imports nothing itself: the
study's gradcheck gate imports `handbackprop.check.errors` (the shared error figures and
verdicts), and the workflow's code inputs follow imports, so an edit to the checker's other
modules (the mutation proof, the command) does not rerun the study's gates. Code that must
name its code inputs exactly imports the submodule (`from handbackprop.check.gate import ...`).
"""
import importlib

_LAZY = {
    "check_layer": "checker", "format_report": "checker", "GradientMismatch": "checker",
    "assert_backward_matches_autograd": "checker",
    "ContractError": "contract", "Layer": "contract",
    "Thresholds": "errors", "max_relative_error": "errors", "norm_relative_error": "errors",
    "check_network": "network", "mutation_test": "mutate", "gate_module": "gate",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Check your own backprop: a NumPy layer's backward against torch autograd on the same forward.

    from handbackprop.check import check_layer, format_report
    print(format_report(check_layer(MyLayer)))

Command: `handbackprop check path/to/layers.py::MyLayer`; pytest: the
`assert_backward_matches_autograd` fixture. The contract is in `contract.py`. Needs NumPy,
SciPy, array-api-compat and torch; not Snakemake.
"""
from .checker import GradientMismatch, assert_backward_matches_autograd, check_layer, format_report
from .contract import ContractError, Layer
from .errors import Thresholds, max_relative_error, norm_relative_error

__all__ = ["check_layer", "format_report", "assert_backward_matches_autograd", "GradientMismatch",
           "ContractError", "Layer", "Thresholds", "max_relative_error", "norm_relative_error",
           "check_network", "mutation_test", "gate_module"]


def __getattr__(name):  # the heavier parts load on first use
    if name == "check_network":
        from .network import check_network
        return check_network
    if name == "mutation_test":
        from .mutate import mutation_test
        return mutation_test
    if name == "gate_module":
        from .gate import gate_module
        return gate_module
    raise AttributeError(name)

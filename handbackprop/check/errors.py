"""The error figures and the verdict rules, shared by `handbackprop check` and the study's gradcheck gate.

Two figures per array, the seed's definitions (the study's gradcheck gate has always used them):

- max relative error, elementwise max |a - b| / max(1e-12, |a| + |b|): the worst entry;
- norm-relative error ||a - b|| / ||b||: meaningful even where entries cancel to near zero.

What the magnitudes mean in float64 (eps = 2.2e-16):

- ~1e-16 .. 1e-13: the maths is identical; the difference is rounding only;
- 1e-12 .. 1e-8: still rounding, amplified by cancellation (e.g. a batch-norm input gradient,
  whose three paths nearly cancel); the thresholds leave room for this;
- 1e-4 and above: something is wrong, not numerics — float64 rounding cannot get there.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def max_relative_error(a, b) -> float:
    """max |a - b| / max(1e-12, |a| + |b|), elementwise."""
    return float(np.max(np.abs(a - b) / np.maximum(1e-12, np.abs(a) + np.abs(b))))


def norm_relative_error(a, b) -> float:
    """||a - b|| / ||b||: meaningful even where entries cancel to near zero."""
    denom = np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else float(np.linalg.norm(a - b))


def compare(a, b) -> dict:
    """Both figures for one array against its reference."""
    return {"max_rel": max_relative_error(a, b), "norm_rel": norm_relative_error(a, b)}


@dataclass(frozen=True)
class Thresholds:
    """Limits for float64. Correct code measures ~1e-16 norm-relative; a real bug is 1e-4 and up,
    so the limits sit orders of magnitude from both and a float64 check has no false alarms."""
    max_rel: float = 1e-7
    norm_rel: float = 1e-10
    fd_norm_rel: float = 1e-6  # centred differences carry truncation and rounding error ~1e-10
    # Our float64 error over torch's, both against the long-double gradient; > limit: a numerically
    # worse formula (a warning for user layers, a failure in the study's gate).
    exact_ratio: float = 2.0


# The figures each limit applies to, in the order failures are reported.
FIGURE_LIMITS = (("max_rel", "max_rel"), ("norm_rel", "norm_rel"), ("fd_norm_rel", "fd_norm_rel"))


def exceeded(fig: dict, thresholds) -> list[tuple[str, float, float]]:
    """(figure, value, limit) for every figure of one array above its limit. `thresholds`: any
    object with max_rel, norm_rel, fd_norm_rel attributes. NaN counts as exceeded."""
    out = []
    for key, attr in FIGURE_LIMITS:
        if key in fig and fig[key] is not None:
            limit = getattr(thresholds, attr)
            if not fig[key] <= limit:
                out.append((key, fig[key], limit))
    return out


def exact_ratio_exceeded(fig: dict, thresholds) -> bool:
    r = fig.get("exact_ratio")
    return r is not None and not r <= thresholds.exact_ratio


def magnitude_note(err: float) -> str:
    """A reading of one error figure, for the table."""
    if err != err:
        return "NaN: the gradient is not finite"
    if err <= 1e-13:
        return "identical maths (rounding only)"
    if err <= 1e-8:
        return "rounding amplified by cancellation"
    if err <= 1e-5:
        return "suspicious: beyond float64 rounding"
    return "wrong: not numerics"


EXPLANATION = (
    "How to read the errors (float64, eps 2.2e-16): ~1e-16..1e-13: the maths is identical, "
    "rounding only; up to ~1e-8: rounding amplified by cancellation; 1e-4 and above: something "
    "is wrong, not numerics. Limits: max rel {max_rel:.0e}, norm rel {norm_rel:.0e}, finite "
    "differences {fd_norm_rel:.0e} (they carry truncation error), exactness ratio {exact_ratio:g} "
    "(your float64 error / autograd's, both against the long-double gradient).")

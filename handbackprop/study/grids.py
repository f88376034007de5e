"""The lam grids of the coarse and fine searches, how the fine range follows the coarse result,
and the label a lam gives its run folder (``lam_1.93e-03``)."""
from __future__ import annotations

import numpy as np


def coarse_exponents(l_min: float, l_max: float, n: int, sampling: str, seed: int) -> list[float]:
    """log10(lam) values: evenly spaced, or drawn uniformly (sorted) from [l_min, l_max]."""
    if not l_min < l_max:
        raise ValueError(f"search range needs l_min < l_max, got {l_min} and {l_max}")
    if sampling == "grid":
        values = np.linspace(l_min, l_max, n)
    elif sampling == "uniform":
        values = np.sort(np.random.default_rng(seed).uniform(l_min, l_max, n))
    else:
        raise ValueError(f"unknown sampling {sampling!r} (grid or uniform)")
    return [float(v) for v in values]


def lam_label(lam: float, digits: int = 3) -> str:
    """The folder name of a run at lam: ``lam_1.93e-03`` (three significant digits)."""
    return f"lam_{lam:.{digits - 1}e}"


def lam_labels(lams: list[float]) -> dict[str, float]:
    """{label: lam} for a grid; more digits when three would give two points one folder."""
    if len(set(lams)) != len(lams):
        raise ValueError(f"lam grid has repeated values: {lams}")
    for digits in range(3, 18):
        labels = {lam_label(v, digits): float(v) for v in lams}
        if len(labels) == len(lams):
            return labels
    raise ValueError(f"lam grid values too close to name apart: {lams}")


class EverySearchPointDiverged(RuntimeError):
    """No point of a search trained to the end: there is no best λ to choose."""


def best_row(rows: list[dict]) -> dict:
    """Highest validation accuracy (a search table's rows hold the mean over seeds); ties go to
    the lower validation cost. Diverged points (recorded, with no accuracy) are never the best."""
    trained = [r for r in rows if not r.get("diverged")]
    if not trained:
        advice = "; ".join(sorted({r.get("advice") or "" for r in rows} - {""}))
        raise EverySearchPointDiverged(
            f"every one of the {len(rows)} λ values diverged, so there is no best λ"
            + (f": {advice}" if advice else ""))
    return max(trained, key=lambda r: (r["val_accuracy"], -r["val_cost"]))


def fine_exponents(coarse_rows: list[dict], n: int, half_width: float, l_min: float,
                   l_max: float, centre: float | None = None) -> list[float]:
    """n evenly spaced exponents over centre +- half_width, clipped to [l_min, l_max].

    centre: the coarse choice in log10 λ (the search table passes its surface fit's); without
    it, the coarse best mean. The coarse grid's spacing is the uncertainty on where the optimum
    lies, so the fine grid spans about one coarse step each side of it. The window is shifted,
    not shrunk, when it meets an edge.
    """
    if centre is None:
        centre = best_row(coarse_rows)["log10_lam"]
    lo, hi = centre - half_width, centre + half_width
    if lo < l_min:
        lo, hi = l_min, min(l_max, l_min + 2 * half_width)
    if hi > l_max:
        lo, hi = max(l_min, l_max - 2 * half_width), l_max
    return [float(v) for v in np.linspace(lo, hi, n)]


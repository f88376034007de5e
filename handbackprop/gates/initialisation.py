"""The initial weight scale of each model family against its documented initialisation.

`Network.init_params` documents: linear classifier W, b ~ N(0, 0.01^2); deeper
networks W_l ~ N(0, 1/fan_in), biases 0. The initial-cost check (|cost - ln 10|)
only fails scales that are too large: a network initialised 50x too small
still starts at ln 10. This compares the empirical standard deviation of each
parameter with the documented one, so both directions fail.

The accepted band is a factor `tolerance` either way, widened for small
parameters to six standard errors of the sample standard deviation
(log s/sigma has standard deviation ~ 1/sqrt(2(n-1)) for n normal draws), so a
correct 10-entry bias is not failed by chance while a 3072x50 matrix is held
to `tolerance`.
"""
from __future__ import annotations

import math
import re

import numpy as np

from ..nn.network import Network

LINEAR_STD = 0.01


def documented_std(net: Network, name: str) -> float:
    """The standard deviation init_params documents for parameter `name` (0: exactly zero;
    a batch-norm γ starts at exactly 1 and is checked as such, see `init_scale_figures`)."""
    layer = int(re.sub(r"\D", "", name))
    if net.batch_norm or net.init is not None:  # Network.init_scaled: He, or a fixed σ
        if name.startswith("W"):
            fan_in = net.sizes[layer - 1]
            return math.sqrt(2.0 / fan_in) if net.init in (None, "he") else float(net.init)
        return 0.0  # b and β start at 0
    if net.n_layers == 1:
        return LINEAR_STD
    if name.startswith("b"):
        return 0.0
    return 1.0 / math.sqrt(net.sizes[layer - 1])


def init_scale_figures(name: str, net: Network, tolerance: float) -> tuple[dict, list[str]]:
    """Per parameter: documented and empirical std, their ratio, the accepted band and its
    verdict (`passed`); failures."""
    if not tolerance > 1.0:
        raise ValueError(f"init_scale_tolerance must be a factor > 1, got {tolerance}")
    figs, failures = {}, []
    for pname, p in net.params.items():
        p = np.asarray(p, dtype=np.float64)
        if pname.startswith("gamma"):  # batch-norm scale: exactly 1, as torch starts it
            figs[pname] = {"documented_value": 1.0, "max_abs_dev": float(np.max(np.abs(p - 1.0))),
                           "n": int(p.size), "passed": bool(np.all(p == 1.0))}
            if not figs[pname]["passed"]:
                failures.append(f"{name}: {pname} is documented to start at 1, max |{pname} - 1| "
                                f"= {figs[pname]['max_abs_dev']:.3e}")
            continue
        doc = documented_std(net, pname)
        if doc == 0.0:
            emp = float(np.max(np.abs(p)))
            figs[pname] = {"documented_std": 0.0, "max_abs": emp, "n": int(p.size),
                           "passed": emp == 0.0}
            if not figs[pname]["passed"]:
                failures.append(f"{name}: parameter {pname} is documented to start at 0, "
                                f"max |{pname}| = {emp:.3e}")
            continue
        emp = float(p.std(ddof=1)) if p.size > 1 else float(abs(p.reshape(-1)[0]))
        band = max(math.log(tolerance), 6.0 / math.sqrt(2.0 * max(p.size - 1, 1)))
        ratio = emp / doc
        figs[pname] = {"documented_std": doc, "empirical_std": emp, "ratio": ratio,
                       "allowed_factor": math.exp(band), "n": int(p.size),
                       "passed": bool(ratio > 0 and abs(math.log(ratio)) <= band)}
        if not figs[pname]["passed"]:
            failures.append(f"{name}: initial std of {pname} is {emp:.3e}, {ratio:.3g}x the "
                            f"documented {doc:.3e} (allowed factor {math.exp(band):.3g})")
    return figs, failures

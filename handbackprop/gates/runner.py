"""One entry point per gate with settings as plain dicts (as config.yaml gives them)."""
from __future__ import annotations

import numpy as np

from .gradcheck import GradcheckThresholds, gradcheck
from .overfit import overfit
from .stacked import stacked_gate
from .trajectory import trajectory


def run_gradcheck(X, y, s: dict) -> dict:
    n = s["n_images"]
    return gradcheck(s["variants"], np.asarray(X[:n], dtype=np.float64), np.asarray(y[:n]),
                     lam=s["lam"], seed=s["seed"], fd_coords=s["fd_coords"],
                     thresholds=GradcheckThresholds(**s["thresholds"]))


def run_overfit(X, y, s: dict, log=print) -> dict:
    n = s["n_images"]
    return overfit(s["variants"], np.asarray(X[:n]), np.asarray(y[:n]), seed=s["seed"],
                   steps=s["steps"], eta_max=s["eta_max"], init_tolerance=s["init_tolerance"],
                   loss_bound=s["loss_bound"], dtype=s.get("dtype", "float64"),
                   init_scale_tolerance=s.get("init_scale_tolerance", 1.5), log=log)


def run_trajectory(X, y, s: dict) -> dict:
    """Rows [0, n_images) train; the next `heldout` rows (if set) score the trained networks."""
    n, n_held = s["n_images"], s.get("heldout", 0)
    if n_held and X.shape[0] < n + n_held:
        raise ValueError(f"trajectory gate: n_images {n} + heldout {n_held} rows needed, "
                         f"the training split has {X.shape[0]}")
    held = {"X_heldout": np.asarray(X[n:n + n_held], dtype=np.float64),
            "y_heldout": np.asarray(y[n:n + n_held])} if n_held else {}
    return trajectory(s["variants"], np.asarray(X[:n], dtype=np.float64), np.asarray(y[:n]),
                      X_eval=held["X_heldout"] if n_held else np.asarray(X[n:2 * n], dtype=np.float64),
                      lam=s["lam"], seed=s["seed"], steps=s["steps"], batch_size=s["batch_size"],
                      n_s=s["n_s"], eta_min=s["eta_min"], eta_max=s["eta_max"],
                      tolerance=s["tolerance"],
                      float32_tolerance=s.get("float32_tolerance", 1e-4), **held)


GATES = {"gradcheck": run_gradcheck, "overfit": run_overfit, "trajectory": run_trajectory,
         "stacked": stacked_gate}


def run_gate(name: str, X, y, settings: dict, log=None) -> dict:
    """Run one gate; an exception inside it (a crash, divergence) is a failure too."""
    kwargs = {"log": log} if (name == "overfit" and log is not None) else {}
    try:
        return GATES[name](X, y, settings, **kwargs)
    except Exception as exc:  # a planted bug may crash the gate rather than fail a figure
        msg = f"{name}: raised {type(exc).__name__}: {exc}"
        return {"gate": name, "passed": False, "failures": [msg], "variants": []}

"""The only figures typed into the report: published reference results, always shown labelled
"published", never as something this study computed.

One entry per final model they sit beside (matched by model name). `accuracy` is a (low, high)
range of test accuracy as a fraction (low == high for a single figure); `point` a single figure
the source quotes inside that range, with its `lam`.
"""
from __future__ import annotations

PUBLISHED_BY_MODEL = {
    "linear": {"network": "linear softmax classifier", "accuracy": (0.3930, 0.3930)},
    "mlp50": {"network": "two-layer network, m = 50", "accuracy": (0.513, 0.518)},
    "bonus": {"network": "two-layer network with the bonus improvements", "accuracy": (0.4977, 0.4977),
              "lam": 1.07e-3},
    "deep3": {"network": "3-layer network with batch norm", "accuracy": (0.536, 0.538),
              "point": 0.5376, "lam": 0.005},
    "deep9": {"network": "9-layer network with batch norm", "accuracy": (0.5083, 0.5083)},
    "deep9_nobn": {"network": "9-layer network without batch norm", "accuracy": (0.4635, 0.4635)},
}


def published_text(entry: dict | None) -> str | None:
    """'51.30–51.80%', '53.60–53.80% (53.76% at λ = 5.00e-03)', '49.77% (λ = 1.07e-03)'; None
    without an entry."""
    if not entry:
        return None
    lo, hi = entry["accuracy"]
    text = f"{100 * lo:.2f}%" if lo == hi else f"{100 * lo:.2f}–{100 * hi:.2f}%"
    if entry.get("point") is not None:
        text += f" ({100 * entry['point']:.2f}% at λ = {entry['lam']:.2e})"
    elif entry.get("lam") is not None:
        text += f" (λ = {entry['lam']:.2e})"
    return text

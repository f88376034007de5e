"""What every workflow stage script needs, without depending on Snakemake:
logging into the rule's log file, BLAS threads, and the gate/code-hash contract."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from threadpoolctl import threadpool_limits

from .nn import code_hash


def log_to(path):
    """Send prints and tracebacks to the rule's log, line-buffered so progress shows live."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "w", buffering=1)
    sys.stdout = sys.stderr = stream
    return stream


def limit_threads(n: int):
    """BLAS (and torch, when loaded) use exactly the rule's threads."""
    limiter = threadpool_limits(limits=int(n))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(n))
    return limiter


class UnverifiedCode(RuntimeError):
    """The model code differs from the code the gates verified."""


def require_verified(evidence_paths) -> str:
    """The current model code hash, after checking every gate passed on this very code."""
    current = code_hash()
    for p in evidence_paths:
        ev = json.loads(Path(p).read_text())
        if not ev.get("passed"):
            raise UnverifiedCode(f"gate evidence {p} records a failure: {ev.get('failures')}")
        if ev.get("code_hash") != current:
            raise UnverifiedCode(
                f"the model code (hash {current[:12]}) is not the code the gates verified "
                f"({str(ev.get('code_hash'))[:12]} in {p}); rerun the gates "
                f"(snakemake --forcerun gate_gradcheck gate_overfit gate_trajectory)")
    return current

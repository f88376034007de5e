"""What every workflow stage script needs, without depending on Snakemake:
logging into the rule's log file, errors that reach the console, BLAS threads,
and the gate/code-hash contract."""
from __future__ import annotations

import json
import os
import re
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path

from threadpoolctl import threadpool_limits

from . import code_hash, code_hashes


def log_to(path):
    """Send prints and tracebacks to the rule's log, line-buffered so progress shows live."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "w", buffering=1)
    sys.stdout = sys.stderr = stream
    return stream


# Marks the one-line summary a failed stage writes as its log's last line (see failure_lines).
FAILURE_MARK = "STAGE FAILED: "


def _one_line(text: str) -> str:
    """``text`` on one line: line breaks become " | " so nothing scrolls off the console."""
    return re.sub(r"\s*\n\s*", " | ", str(text).strip())


def failure_line(rule: str, exc: BaseException) -> str:
    """``"<rule>: <ExceptionType>: <message>"``; a ``SystemExit("why")`` is ``"<rule>: why"``."""
    if isinstance(exc, SystemExit):
        return f"{rule}: {_one_line(exc.code)}"
    message = _one_line(exc)
    return f"{rule}: {type(exc).__name__}: {message}" if message else f"{rule}: {type(exc).__name__}"


@contextmanager
def console_errors(rule: str, log_path=None):
    """Run a stage so that its failure is one line on the console, and the traceback in the log.

    Inside a stage script sys.stdout/err are the rule's log (log_to), so an
    uncaught error would reach only the log and the console would say just
    "Error in rule X". On an exception (or ``SystemExit("message")``) this
    prints the traceback to sys.stderr (the log), ends the log with
    FAILURE_MARK + the line, writes the line ``"<rule>: <Type>: <message>"`` to
    the real console (sys.__stderr__), and exits with status 1. Ctrl-C and
    ``SystemExit(0)`` pass through unchanged. ``log_path`` is named on the
    console so the traceback is one click away.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            raise  # a deliberate exit status, not an error message
        _report_failure(rule, e, log_path)
        raise SystemExit(1) from None
    except BaseException as e:  # noqa: BLE001 -- every error must reach the console
        _report_failure(rule, e, log_path)
        raise SystemExit(1) from None


def _report_failure(rule, exc, log_path):
    """Traceback and marked line to sys.stderr (the log); the line alone to the real console."""
    line = failure_line(rule, exc)
    if not isinstance(exc, SystemExit):
        traceback.print_exception(exc, file=sys.stderr)
    print(FAILURE_MARK + line, file=sys.stderr, flush=True)
    console = sys.__stderr__
    if console is not None and console is not sys.stderr:
        where = f" (traceback in {log_path})" if log_path else ""
        print(line + where, file=console, flush=True)


def failure_lines(log_root, since: float | None = None) -> list[str]:
    """The one-line failures recorded in the logs under ``log_root`` (files changed at or after ``since``).

    For a workflow's ``onerror:`` handler, so that the console ends with what
    went wrong rather than only "Exiting because a job execution failed".
    ``since`` (a time.time() from ``onstart:``) skips logs of earlier runs.
    """
    lines = []
    for dirpath, _dirs, files in os.walk(log_root):
        for name in sorted(files):
            path = Path(dirpath) / name
            try:
                if since is not None and path.stat().st_mtime < since:
                    continue
                text = path.read_text(errors="replace")
            except OSError:
                continue  # a log being rotated or removed: nothing to report from it
            lines += [ln[len(FAILURE_MARK):] for ln in text.splitlines() if ln.startswith(FAILURE_MARK)]
    return sorted(lines)


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
    current = code_hash("nn")
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


# The code groups that shape a training result (the report's code does not).
SHAPING_GROUPS = ("data", "model", "study")


def still_verified(verified_hash: str) -> dict:
    """After a job trained: the model code is still the code the gates verified (an edit while
    it ran would make its result unverified); returns the provenance a result records,
    {code_hash, code_hashes} with the hash of every group that shapes it."""
    if code_hash("nn") != verified_hash:
        raise UnverifiedCode("the model code changed while this job ran")
    return {"code_hash": verified_hash,
            "code_hashes": {g: h for g, h in code_hashes().items() if g in SHAPING_GROUPS}}

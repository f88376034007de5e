"""handbackprop: a hand-written NumPy neural-network package for a reproducible CIFAR-10 study.

The package's code is grouped by what it shapes, so the workflow can make each group an input
of exactly the rules it affects, and every output can say which code produced it:

- ``data``: download, the restricted unpickler, splits and normalisation (the data rules);
- ``model``: the verified core ``nn`` and the ``gates`` that verify it (the gate rules; training
  jobs refuse to run on model code the gates did not pass);
- ``study``: what the config means, one training run, the tables of runs, and the run-file and
  stage helpers they write through (training, table and summary rules);
- ``report``: reading, checking and rendering the results (the report rule).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

CODE_GROUPS = {
    "data": ["data/*.py"],
    "model": ["nn/*.py", "gates/*.py"],
    "study": ["study/*.py", "stage.py", "atomic.py", "runfiles.py"],
    "report": ["report/*.py", "report/templates/**/*.j2"],
}


def code_files(group: str) -> list[Path]:
    """The source files of one group, sorted; or one module, given as its path in the package."""
    if group.endswith(".py") and (PACKAGE_DIR / group).is_file():
        return [PACKAGE_DIR / group]
    if group not in CODE_GROUPS:
        raise KeyError(f"unknown code group {group!r}; groups: {sorted(CODE_GROUPS)}")
    return sorted(p for pattern in CODE_GROUPS[group] for p in PACKAGE_DIR.glob(pattern))


def code_hash(group: str) -> str:
    """sha256 over one group's files (paths relative to the package, and bytes)."""
    h = hashlib.sha256()
    for path in code_files(group):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def code_hashes() -> dict[str, str]:
    return {g: code_hash(g) for g in CODE_GROUPS}

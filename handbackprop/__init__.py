"""handbackprop: a hand-written NumPy neural-network package for a reproducible CIFAR-10 study.

Which rules an edit reruns: each rule's `code` input is its script's import closure
(`script_code`), so exactly the rules whose code can run the edited file rerun.

Which code produced an output: every file belongs to one group, and every output records each
group's hash (`code_hashes`); `code_hash("nn")` is what the gates verify:

- ``common``: the package root, atomic writes, run files and stage helpers;
- ``data``: download, the restricted unpickler, splits and normalisation;
- ``model``: the verified core ``nn`` and the ``gates`` that verify it;
- ``check``: the backprop checker for a user's own layers (``handbackprop check``);
- ``study``: what the config means, runs, run kinds, tables, surfaces, statistics;
- ``audit``: every figure rescored and every choice recomputed before the report;
- ``report``: reading and rendering the results.
"""
from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

CODE_GROUPS = {
    "common": ["__init__.py", "atomic.py", "stage.py", "runfiles.py"],
    "data": ["data/*.py"],
    "model": ["nn/*.py", "gates/*.py"],
    "check": ["check/*.py"],
    "study": ["study/*.py"],
    "audit": ["audit/*.py"],
    "report": ["report/*.py", "report/templates/**/*.j2"],
}

# Files a module reads at run time besides its imports (they shape its output as code does).
READS = {"report/render.py": ["report/templates/**/*.j2"]}


def code_files(group: str) -> list[Path]:
    """The source files of one group, sorted; or one module, given as its path in the package
    (`report/audit.py`); or one subpackage's modules, given as its folder (`nn`)."""
    if group.endswith(".py") and (PACKAGE_DIR / group).is_file():
        return [PACKAGE_DIR / group]
    if group not in CODE_GROUPS and (PACKAGE_DIR / group / "__init__.py").is_file():
        return sorted((PACKAGE_DIR / group).glob("*.py"))
    if group not in CODE_GROUPS:
        raise KeyError(f"unknown code group {group!r}; groups: {sorted(CODE_GROUPS)}")
    return sorted(p for pattern in CODE_GROUPS[group] for p in PACKAGE_DIR.glob(pattern))


def code_hash(group: str) -> str:
    """sha256 over one group's files (paths relative to the package, and bytes). The one code
    fingerprint of the project: `code_hash("nn")` is what the gates verify and every training
    output records; `code_hashes()` says which version of each group shaped an output."""
    h = hashlib.sha256()
    for path in code_files(group):
        h.update(str(path.relative_to(PACKAGE_DIR)).encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def code_hashes() -> dict[str, str]:
    return {g: code_hash(g) for g in CODE_GROUPS}


def _module_file(name: str) -> Path | None:
    """The file of a `handbackprop[.x[.y]]` module, or None outside the package."""
    parts = name.split(".")
    if parts[0] != PACKAGE_DIR.name:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module an `import` statement anywhere in `path` may load
    (inside functions too: a lazy import shapes the output as much as a top-level one)."""
    if path.is_relative_to(PACKAGE_DIR):
        rel = path.relative_to(PACKAGE_DIR).with_suffix("")
        package = [PACKAGE_DIR.name, *rel.parts[:-1]] if rel.name != "__init__" else [PACKAGE_DIR.name, *rel.parts[:-1]]
    else:
        package = []
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)  # `from . import stage`
    # importing a.b.c runs a/__init__.py and a/b/__init__.py first
    return {".".join(n.split(".")[: i + 1]) for n in names for i in range(n.count(".") + 1)}


def script_code(script) -> list[Path]:
    """Every package file a script can execute or read: the transitive closure of its imports
    within the package, plus the files those modules read (READS). A rule takes exactly these
    as its `code` input, so an edit reruns the rules whose code runs it, and no other."""
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        path = todo.pop()
        for name in _imported_modules(path):
            f = _module_file(name)
            if f is not None and f not in seen:
                seen.add(f)
                todo.append(f)
    for f in list(seen):
        for pattern in READS.get(str(f.relative_to(PACKAGE_DIR)), []):
            seen.update(PACKAGE_DIR.glob(pattern))
    return sorted(seen)

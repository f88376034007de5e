"""The report rule's named inputs (name -> path or list of paths), as the report reads them.

The rule names every file the report reads (workflow/rules/report.smk); the report takes them
by name and never rebuilds a path from the config. A name the rule does not give, or a file it
names that is absent, is an error that says which input.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping


class MissingInput(KeyError):
    def __str__(self):
        return str(self.args[0])


class Inputs:
    def __init__(self, named: Mapping):
        # Snakemake's Namedlist or a plain dict: name -> str | list[str]
        keys = named.keys()
        self.named = {k: named[k] for k in keys}

    def _get(self, name: str):
        if name not in self.named:
            raise MissingInput(f"report: no input named '{name}' (the report rule's inputs: "
                               f"{', '.join(sorted(self.named)) or 'none'})")
        return self.named[name]

    def many(self, name: str) -> list[Path]:
        """Every file of input `name`, in the rule's order; each must exist."""
        value = self._get(name)
        paths = [Path(p) for p in ([value] if isinstance(value, (str, Path)) else value)]
        for p in paths:
            if not p.exists():
                raise MissingInput(f"report: input '{name}': {p} does not exist")
        return paths

    def one(self, name: str) -> Path:
        paths = self.many(name)
        if len(paths) != 1:
            raise MissingInput(f"report: input '{name}' must be one file, got {len(paths)}")
        return paths[0]

    def optional(self, name: str) -> Path | None:
        """One file, or None when the rule gives none (an experiment the config leaves out)."""
        paths = self.many(name)
        return paths[0] if paths else None

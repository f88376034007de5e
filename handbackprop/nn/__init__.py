"""The verified core: layers, network, schedule, optimisers, augmentation, training loop.

Everything in this subpackage is what the gates verify; `code_hash()` fingerprints
it so a training output can prove it ran the code the gates passed.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent


def source_files() -> list[Path]:
    return sorted(SOURCE_DIR.glob("*.py"))


def code_hash() -> str:
    """sha256 over this subpackage's source files (names and bytes)."""
    h = hashlib.sha256()
    for path in source_files():
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()

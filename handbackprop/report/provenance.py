"""Provenance of a report: the git checkout, the machine, package versions and the config."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = ("numpy", "pandas", "matplotlib", "jinja2", "torch", "snakemake", "threadpoolctl", "pyyaml")


def _git(repo: Path, *args) -> tuple[str | None, str]:
    """(stdout, "") on success, (None, why) otherwise."""
    try:
        p = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    if p.returncode != 0:
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"git exited {p.returncode}"
        return None, f"{why} (in {repo})"
    return p.stdout.rstrip("\n"), ""  # keep porcelain's leading status columns


def collect_git(repo: Path) -> dict:
    commit, why = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {"available": False, "commit": None, "dirty": None, "changed": [], "reason": why}
    status, _ = _git(repo, "status", "--porcelain", "--untracked-files=no")
    changed = [line[3:] for line in (status or "").splitlines() if line.strip()]
    return {"available": True, "commit": commit.strip(), "short": commit.strip()[:12],
            "branch": _git(repo, "rev-parse", "--abbrev-ref", "HEAD")[0],
            "dirty": bool(changed), "changed": changed}


def collect_versions() -> list[dict]:
    out = [{"package": "python", "version": platform.python_version()}]
    for name in PACKAGES:
        try:
            v = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            v = None
        out.append({"package": name, "version": v})
    return out


def collect_machine() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: ")) and ":" in line:
                value = line.split(":", 1)[1].strip()
                if value and not value.isdigit():
                    cpu = value
                    break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 ** 2
    except (OSError, ValueError, IndexError):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {"cpu": cpu or platform.processor() or "unknown", "logical_cores": os.cpu_count(),
            "usable_cores": usable, "memory_gb": mem_gb, "platform": platform.platform(),
            "python": sys.version.split()[0], "blas": collect_blas()}


def collect_blas() -> list[dict]:
    """Every BLAS library loaded in this process (NumPy's, SciPy's, torch's), with the kernel
    it dispatched to for this CPU: float32 sums are rounded in the kernel's order, so results are
    bit-identical only for the same kernel and thread count."""
    import numpy  # noqa: F401  (loads NumPy's BLAS, which the study trains with)
    from threadpoolctl import threadpool_info

    return [{"library": i.get("internal_api"), "version": i.get("version"),
             "kernel": i.get("architecture") or "–", "threading": i.get("threading_layer") or "–",
             "file": Path(i.get("filepath", "")).name, "max_threads": i.get("num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def _plain(value):
    """Mappings as dicts, sequences as lists, all the way down: Snakemake reads a --configfile
    whose lists hold mappings into OrderedDicts, which yaml.safe_dump refuses."""
    from collections.abc import Mapping

    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_text(config: dict) -> str:
    config = _plain(config)
    try:
        import yaml
        return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    except ImportError:  # the report env may lack PyYAML: JSON is YAML too
        return json.dumps(config, indent=2)


def collect_provenance(config: dict, repo: Path, data_md5) -> dict:
    return {"config": config, "config_text": config_text(config), "git": collect_git(repo),
            "versions": collect_versions(), "machine": collect_machine(), "data_md5": data_md5}

"""Rendering: the report's sections, number formats and Jinja2 environment.

Each section is one partial, ``templates/sections/{id}.j2``, written once for both outputs: it
builds its tables and sentences from the building blocks of ``templates/macros/html.j2`` or
``macros/md.j2`` (same macro names), chosen by the page that includes it. A new section is an
entry in SECTIONS, one partial, and (if it needs new data) one reader in collect.py.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class Section:
    id: str  # anchor and partial name
    title: str
    shown: Callable[[dict], bool] = lambda ctx: True


SECTIONS = (
    Section("summary", "Summary"),
    Section("data", "Data"),
    Section("gates", "Gates"),
    Section("audit", "Audit"),
    Section("schedule", "Learning-rate schedule"),
    Section("lr_range", "Learning-rate range tests", lambda ctx: bool(ctx.get("lr_range"))),
    Section("searches", "λ searches"),
    Section("final", "Final training"),
    Section("bonus", "Bonus experiments", lambda ctx: bool(ctx.get("bonus"))),
    Section("costs", "Where the time goes", lambda ctx: bool(ctx.get("costs"))),
    Section("provenance", "Provenance"),
)


# Number formats, shared by both outputs (the tests format numbers the same way).
def pct(x, digits=2):
    """0.3725 -> '37.25%'."""
    return "–" if x is None or _nan(x) else f"{100 * float(x):.{digits}f}%"


def pm(mean, std, digits=2):
    """Mean ± std of fractions as percentages: '37.25% ± 1.06'."""
    return f"{pct(mean, digits)} ± {100 * float(std):.{digits}f}"


def sci(x, digits=2):
    return "–" if x is None or _nan(x) else f"{float(x):.{digits}e}"


def lam(x):
    """A λ as the workflow prints it: '1e-05', '0.000215'."""
    return "–" if x is None else f"{float(x):.3g}"


def num(x, digits=4):
    return "–" if x is None or _nan(x) else f"{float(x):.{digits}g}"


def fixed(x, digits=1):
    return "–" if x is None or _nan(x) else f"{float(x):.{digits}f}"


def yesno(ok):
    return "pass" if ok else "FAIL"


def _nan(x):
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def arch(spec: dict) -> str:
    """A model spec in a few words: 'hidden 500, dropout 0.3, augmentation, nesterov'."""
    if spec.get("module"):  # a user's own network: its module names it
        words = [f"user model {spec['module']}"]
    else:
        words = [f"hidden {'-'.join(map(str, spec['hidden']))}" if spec.get("hidden") else "linear"]
    if spec.get("batch_norm"):
        words.append("batch norm")
    if spec.get("init") == "he":
        words.append("He init")
    elif spec.get("init") is not None:
        words.append(f"init σ {spec['init']:g}")
    if spec.get("dropout"):
        words.append(f"dropout {spec['dropout']}")
    if spec.get("flip") or spec.get("max_shift"):
        words.append("augmentation")
    if spec.get("optimizer") and spec["optimizer"] != "sgd":
        words.append(spec["optimizer"])
    return ", ".join(words)


def per_param(errors: dict) -> str:
    return ", ".join(f"{p} {sci(e)}" for p, e in errors.items())


def truncate_hash(h) -> str:
    return str(h)[:12]


def provenance_sentence(mc: dict) -> str:
    """What the metrics provenance check did, in one sentence."""
    kinds = ", ".join(f"{k['checked']} {k['kind']}" for k in mc["by_kind"])
    if not mc["n_checked"]:
        return "no training run was rescored."
    verdict = (f"all {mc['n_figures']} train/val/test figures in their metrics.json matched the rescored "
               "saved weights exactly" if mc["all_match"]
               else f"{len(mc['failures'])} run(s) did NOT match their metrics.json")
    diverged = len(mc.get("diverged") or [])
    skipped = f"; {diverged} diverged run(s) not rescored" if diverged else ""
    return f"{mc['n_checked']} of {mc['n_runs']} training runs rechecked ({kinds}{skipped}): {verdict}."


def mdcell(x) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    return " ".join(str(x).split()).replace("|", "\\|")


def mdrule(head, align: str) -> str:
    return "|" + "|".join("---:" if align[i:i + 1] == "r" else "---" for i in range(len(head))) + "|"


def environment(autoescape: bool) -> jinja2.Environment:
    # Chainable undefined on purpose: optional outputs (ensemble, bonus tables, git) may be absent.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=autoescape,
                             undefined=jinja2.ChainableUndefined)
    env.filters.update(pct=pct, sci=sci, lam=lam, num=num, fixed=fixed, yesno=yesno, arch=arch,
                       per_param=per_param, truncate_hash=truncate_hash,
                       provenance_sentence=provenance_sentence, mdcell=mdcell, mdrule=mdrule)
    env.globals.update(pm=pm)
    return env


def render(ctx: dict, figures: dict | None) -> tuple[str, str]:
    """(html, markdown). The HTML escapes everything; the Markdown is plain text."""
    sections = [s for s in SECTIONS if s.shown(ctx)]
    html = environment(True).get_template("report.html.j2").render(
        **ctx, fig=figures or {}, sections=sections, macros="macros/html.j2")
    md = environment(False).get_template("report.md.j2").render(
        **ctx, fig={}, sections=sections, macros="macros/md.j2")
    return html, re.sub(r"\n{3,}", "\n\n", md)  # the partials' blank lines, squeezed

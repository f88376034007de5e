"""Render the collected context into report.html (self-contained) and report.md (text only)."""
from __future__ import annotations

import math
import time
from pathlib import Path

import jinja2

from ..atomic import write_text
from . import figures as figs
from .collect import collect

TEMPLATES = Path(__file__).resolve().parent / "templates"


# Number formats, shared by both templates (the tests format numbers the same way).
def pct(x, digits=2):
    """0.3725 -> '37.25%'."""
    return "–" if x is None or _nan(x) else f"{100 * float(x):.{digits}f}%"


def pm(mean, std, digits=2):
    """Mean ± std of fractions as percentages: '37.25% ± 1.06'."""
    return f"{pct(mean, digits)} ± {100 * float(std):.{digits}f}"


def sci(x, digits=2):
    return "–" if x is None or _nan(x) else f"{float(x):.{digits}e}"


def lam(x):
    """A lambda as the workflow prints it: '1e-05', '0.000215'."""
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


def environment() -> jinja2.Environment:
    # Lenient undefined on purpose: optional outputs (ensemble, bonus tables, git) may be absent.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(pct=pct, sci=sci, lam=lam, num=num, fixed=fixed, yesno=yesno)
    env.globals.update(pm=pm)
    return env


def render(ctx: dict, figures: dict | None) -> tuple[str, str]:
    """(html, markdown). The HTML escapes everything; the Markdown is plain text."""
    env = environment()
    env.autoescape = True
    html = env.get_template("report.html.j2").render(**ctx, fig=figures or {})
    env_md = environment()
    md = env_md.get_template("report.md.j2").render(**ctx)
    return html, md


def build_report(results_dir, config: dict, html_path, md_path, repo_dir=None, log=print,
                 run_paths=None) -> dict:
    t0 = time.perf_counter()
    ctx = collect(results_dir, config, repo_dir, run_paths)
    t1 = time.perf_counter()
    figures = figs.make_figures(ctx)
    t2 = time.perf_counter()
    html, md = render(ctx, figures)
    write_text(html_path, html)
    write_text(md_path, md)
    log(f"report: collect {t1 - t0:.2f} s, figures {t2 - t1:.2f} s, render {time.perf_counter() - t2:.2f} s; "
        f"{len(html) / 1e6:.2f} MB html, {len(md) / 1e3:.1f} kB md")
    return ctx

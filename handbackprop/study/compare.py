"""Do two studies agree? Every model's headline figure of one results folder against the other's,
each difference against the uncertainty both summaries state.

    python -m handbackprop.study.compare RESULTS_A RESULTS_B [--level 0.95]

Per model present in both (final/{model}/summary.json): the difference of the mean test
accuracies, its standard error sqrt(SE_A² + SE_B²) from each summary's headline interval (its
`se`: the final seeds and the λ selection; a summary written before the headline interval has
the seeds' std/sqrt(n) only, and the table says so), a Student-t bound with the smaller of the two
df (the conservative choice, as in surface.headline_interval), and agree when |difference| is
within it. The chosen λ of the two studies is shown beside it with whether each lies in the other
study's flat band (information, not part of the verdict: on a flat surface λ may move freely).

Exit code: 0 when every shared model agrees, 1 when any does not, 2 when there is nothing to
compare.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from scipy import stats


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def stated_uncertainty(summary: dict) -> dict:
    """The (se, df, what) a summary states for its mean test accuracy."""
    h = summary.get("headline")
    if h and h.get("se") is not None:
        return {"se": h["se"], "df": h["df"], "what": " + ".join(h["components"])}
    accs = summary["test_accuracy"]
    if len(accs) < 2:
        return {"se": None, "df": None, "what": "none (one seed)"}
    return {"se": summary["test_accuracy_std"] / math.sqrt(len(accs)), "df": len(accs) - 1,
            "what": "final seeds only (no headline interval recorded)"}


def compare_summaries(a: dict, b: dict, level: float = 0.95) -> dict:
    """One model's comparison (see the module docstring)."""
    ua, ub = stated_uncertainty(a), stated_uncertainty(b)
    diff = b["test_accuracy_mean"] - a["test_accuracy_mean"]
    out = {"model": a["model"], "mean_a": a["test_accuracy_mean"], "mean_b": b["test_accuracy_mean"],
           "difference": diff, "uncertainty_a": ua, "uncertainty_b": ub, "level": level,
           "lam_a": a.get("lam"), "lam_b": b.get("lam")}
    ses = [u for u in (ua, ub) if u["se"] is not None]
    if not ses:
        out.update(se=None, df=None, bound=None, agree=None, z=None)
        return out
    se = math.sqrt(sum(u["se"] ** 2 for u in ses))
    df = min(u["df"] for u in ses)
    bound = float(stats.t.ppf((1 + level) / 2, df)) * se
    out.update(se=se, df=df, bound=bound, agree=bool(abs(diff) <= bound),
               z=diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff)))
    return out


def _in_band(lam: float | None, table: dict | None) -> bool | None:
    band = ((table or {}).get("surface") or {}).get("band_lam")
    if lam is None or not band:
        return None
    return bool(band[0] * (1 - 1e-9) <= lam <= band[1] * (1 + 1e-9))


def compare_results(dir_a, dir_b, level: float = 0.95) -> list[dict]:
    """Every model with a final summary in both results folders, in name order."""
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    models = sorted({p.parent.name for p in dir_a.glob("final/*/summary.json")}
                    & {p.parent.name for p in dir_b.glob("final/*/summary.json")})
    rows = []
    for model in models:
        a, b = (_read(d / "final" / model / "summary.json") for d in (dir_a, dir_b))
        row = compare_summaries(a, b, level)
        # whose fine search gave the λ: recorded in the headline, else the spec's lam_from
        lam_model = ((a.get("headline") or {}).get("lam_model")
                     or (a.get("spec") or {}).get("lam_from") or model)
        ta, tb = (_read(d / "search" / lam_model / "fine.json") for d in (dir_a, dir_b))
        row["lam_b_in_band_a"], row["lam_a_in_band_b"] = _in_band(row["lam_b"], ta), _in_band(row["lam_a"], tb)
        rows.append(row)
    return rows


def _yn(v) -> str:
    return "–" if v is None else ("yes" if v else "no")


def format_table(rows: list[dict]) -> str:
    head = (f"{'model':<12} {'A %':>7} {'B %':>7} {'B−A':>7} {'±bound':>7} {'z':>6} {'agree':>5}  "
            f"{'λ A':>9} {'λ B':>9} {'B in A band':>11} {'A in B band':>11}  uncertainty A | B")
    lines = [head, "-" * len(head)]
    for r in rows:
        bound = f"{100 * r['bound']:7.2f}" if r["bound"] is not None else f"{'–':>7}"
        z = f"{r['z']:6.2f}" if r["z"] is not None else f"{'–':>6}"
        lam = lambda v: f"{v:9.3g}" if v is not None else f"{'–':>9}"  # noqa: E731
        lines.append(f"{r['model']:<12} {100 * r['mean_a']:7.2f} {100 * r['mean_b']:7.2f} "
                     f"{100 * r['difference']:+7.2f} {bound} {z} {_yn(r['agree']):>5}  "
                     f"{lam(r['lam_a'])} {lam(r['lam_b'])} {_yn(r['lam_b_in_band_a']):>11} "
                     f"{_yn(r['lam_a_in_band_b']):>11}  "
                     f"{r['uncertainty_a']['what']} | {r['uncertainty_b']['what']}")
    return "\n".join(lines)


def verdict(rows: list[dict], level: float = 0.95) -> tuple[int, str]:
    """Exit code and the sentence: 0 every shared model agrees, 1 some do not, 2 nothing."""
    pct = f"{100 * level:g}%"
    if not rows:
        return 2, "no model has a final summary in both results folders: nothing to compare"
    bad = [r["model"] for r in rows if r["agree"] is False]
    unknown = [r["model"] for r in rows if r["agree"] is None]
    text = (f"{len(rows) - len(bad) - len(unknown)} of {len(rows)} model(s) agree within their stated "
            f"{pct} uncertainty")
    if bad:
        text += "; outside it: " + ", ".join(bad)
    if unknown:
        text += "; no stated uncertainty to compare: " + ", ".join(unknown)
    return (1 if bad or unknown else 0), text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results_a", type=Path)
    ap.add_argument("results_b", type=Path)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--json", type=Path, help="also write the rows and the verdict here")
    args = ap.parse_args(argv)
    rows = compare_results(args.results_a, args.results_b, args.level)
    code, text = verdict(rows, args.level)
    if rows:
        print(format_table(rows))
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "verdict": text, "exit_code": code}, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())

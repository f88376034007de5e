"""The checks the report makes, run by the workflow's `audit` rule into ``{results}/report/audit.json``.

Three checks, over every training run this config asks for (the rule's inputs, never a glob):

- **code hashes**: every run and summary records the model-code hash the gates verified;
- **schedule**: η at every recorded step equals ``cyclic_lr`` recomputed from the run's config;
- **metrics provenance** (rescore.py): the saved weights, rescored on the run's split, give
  exactly the train_*, val_* and test_* figures of its metrics.json.

A metrics difference fails the audit (and so the report) naming the run and the field; the
hash and schedule findings are reported, as the report always did. ``audit(...)`` returns
plain data; ``check(...)`` raises on a finding.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import numpy as np

from ..data.splits import load_split
from .. import code_hash
from ..nn.schedule import cyclic_lr
from ..study.kinds import AUDIT_GROUPS, RUN_KINDS
from . import rescore

# Each run records its kind and split (study/kinds.py); the audit groups runs by the kind's
# group and checks each on the split its kind trains on.
KINDS = AUDIT_GROUPS


# Kinds rescored in full whatever report.audit_sample says.
ALWAYS = ("final",)


class AuditFailed(RuntimeError):
    """A reported figure that its own run's weights do not reproduce."""


def read_json(path):
    return json.loads(Path(path).read_text())


def kind_of(metrics: dict, where) -> str:
    """A run's audit group, from the kind it recorded; its recorded split must be its kind's."""
    kind = metrics.get("kind")
    if kind not in RUN_KINDS:
        raise ValueError(f"{where}: records no known run kind ({kind!r}; kinds: {', '.join(RUN_KINDS)}): "
                         "rerun it so its metrics.json says what it is")
    if metrics.get("split") != RUN_KINDS[kind].split:
        raise ValueError(f"{where}: a {kind} run trains on the {RUN_KINDS[kind].split} split, but records "
                         f"{metrics.get('split')!r}")
    return RUN_KINDS[kind].group


def misplaced(metrics: dict, rel) -> str | None:
    """Why a run's folder is not where its recorded kind puts runs (a metrics.json copied or
    moved from another run), or None."""
    kind = metrics.get("kind")
    template = RUN_KINDS[kind].folder if kind in RUN_KINDS else None
    if template is None:
        return None
    pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
    pattern = re.sub(r"\{[a-z]+\}", "[^/]+", pattern)
    if re.fullmatch(pattern, str(rel)):
        return None
    return f"its metrics.json records a {kind} run, whose folder is {template}, but it lies in {rel}"


def relative(path, R: Path) -> Path:
    """A run's folder relative to the results directory."""
    return Path(path).resolve().parent.relative_to(Path(R).resolve())


def sample(paths: list, cap: int | None) -> list:
    """At most `cap` of the paths, evenly spread over the sorted list (first and last included);
    all of them when cap is None. Deterministic: the same runs for the same config."""
    paths = sorted(paths, key=str)
    if cap is None or cap >= len(paths):
        return paths
    if cap < 1:
        raise ValueError(f"report.audit_sample must be at least 1 (or null for every run), got {cap}")
    idx = np.unique(np.round(np.linspace(0, len(paths) - 1, cap)).astype(int))
    return [paths[i] for i in idx]


# ------------------------------------------------------------------------------ code hashes
def code_hash_check(gate_paths, outputs: dict[str, dict]) -> dict:
    """Every output's recorded model-code hash against the hash the gates verified.

    outputs: {name: metrics or summary dict}.
    """
    gate_hashes = {Path(p).stem: read_json(p).get("code_hash") for p in gate_paths}
    distinct = set(gate_hashes.values())
    verified = next(iter(distinct)) if len(distinct) == 1 else None
    mismatched = sorted(k for k, m in outputs.items() if m.get("code_hash") != verified)
    groups: dict[str, set] = {}
    for m in outputs.values():
        for g, h in (m.get("code_hashes") or {}).items():
            groups.setdefault(g, set()).add(h)
    now = code_hash("nn")
    return {"verified": verified, "gates": gate_hashes, "gates_agree": len(distinct) == 1,
            "n_runs": len(outputs), "all_match": verified is not None and not mismatched,
            "mismatched": mismatched, "checkout": now, "checkout_matches": now == verified,
            # Which code of each group produced the outputs: one hash per group when all agree.
            "groups": {g: sorted(h) for g, h in sorted(groups.items())}}


# --------------------------------------------------------------------------------- schedule
def schedule_of(metrics: dict) -> dict:
    """η at every step of a run, from the training code's own schedule function."""
    tc = metrics["train_config"]
    steps = np.arange(int(metrics["steps"]))
    eta = cyclic_lr(steps, tc["eta_min"], tc["eta_max"], int(metrics["n_s"]))
    return {"step": steps.tolist(), "eta": np.atleast_1d(eta).tolist(), "n_s": int(metrics["n_s"]),
            "eta_min": tc["eta_min"], "eta_max": tc["eta_max"], "steps": int(metrics["steps"])}


def recorded_eta(history_path) -> list[tuple[int, float]]:
    with open(history_path, newline="") as fh:
        return [(int(float(r["step"])), float(r["eta"])) for r in csv.DictReader(fh)
                if r.get("eta") not in (None, "")]


def schedule_check(metrics: dict, history_path) -> dict:
    """Largest |recorded η − recomputed η| over the run's recorded steps (the last record, at
    step == steps, is after the final update and has no η of its own in the schedule)."""
    sched = schedule_of(metrics)
    eta = sched["eta"]
    diffs = [abs(eta[s] - e) for s, e in recorded_eta(history_path) if 0 <= s < len(eta) and not math.isnan(e)]
    return {"n_s": sched["n_s"], "steps": sched["steps"], "eta_min": sched["eta_min"],
            "eta_max": sched["eta_max"], "points": len(diffs), "max_abs_diff": max(diffs, default=None)}


# --------------------------------------------------------------------------------- the audit
def audit(results_dir, run_paths, gate_paths, summary_paths=(), cap: int | None = None, log=print) -> dict:
    """Every check over the given runs; returns plain data (audit.json). Raises nothing on a finding.

    run_paths: metrics.json of every training run this config asks for; the metrics check
    rescores at most `cap` of each kind (None: all), the other checks read every run.
    """
    R = Path(results_dir)
    runs = {}
    for p in run_paths:
        rel = relative(p, R)
        m = read_json(p)
        runs[str(rel)] = {"path": Path(p), "kind": kind_of(m, rel), "metrics": m,
                          "misplaced": misplaced(m, rel)}
    outputs = {k: r["metrics"] for k, r in runs.items()}
    for p in summary_paths:
        outputs[str(relative(p, R) / Path(p).stem)] = read_json(p)

    # A diverged search point recorded where it stopped: no final figures to rescore, no schedule
    # to its end; counted, not checked.
    diverged = sorted(k for k, r in runs.items() if r["metrics"].get("diverged"))
    runs_trained = {k: r for k, r in runs.items() if not r["metrics"].get("diverged")}
    schedules = {k: schedule_check(r["metrics"], r["path"].with_name("history.csv"))
                 for k, r in runs_trained.items()}
    worst = max((s["max_abs_diff"] for s in schedules.values() if s["max_abs_diff"] is not None), default=None)

    by_kind = {kind: sorted(k for k, r in runs_trained.items() if r["kind"] == kind) for kind in KINDS}
    # Every final run is rescored whatever the cap: their figures are the headline. The cap
    # bounds the audit's cost on the many search and bonus runs (rescoring reads every row).
    chosen = {kind: keys if kind in ALWAYS else sample(keys, cap) for kind, keys in by_kind.items()}
    checked, splits = [], {}
    for kind, keys in chosen.items():
        split_name = KINDS[kind]
        for key in keys:
            r = runs[key]
            if split_name not in splits:
                splits[split_name] = load_split(R / "data" / split_name)
            split = splits[split_name]
            why = r["misplaced"] or rescore.split_mismatch(r["metrics"], split, split_name)
            diffs = [] if why else rescore.differences(r["metrics"], rescore.rescore(r["path"].parent, r["metrics"], split))
            row = {"run": key, "kind": kind, "split": split_name,
                   "fields": sorted(rescore.recorded_fields(r["metrics"])),
                   "differences": diffs, "split_mismatch": why, "ok": not diffs and not why}
            checked.append(row)
            log(f"audit: {key} ({kind}, {split_name} split): "
                f"{'all ' + str(len(row['fields'])) + ' figures match' if row['ok'] else 'MISMATCH'}")
    failures = [r for r in checked if not r["ok"]]
    metrics_check = {
        "cap": cap, "tolerance": 0.0, "all_match": not failures, "failures": failures,
        "n_runs": len(runs), "n_checked": len(checked), "diverged": diverged,
        "n_figures": sum(len(r["fields"]) for r in checked),
        "by_kind": [{"kind": kind, "runs": len(by_kind[kind]), "checked": len(chosen[kind]),
                     "split": KINDS[kind],
                     "skipped": len(by_kind[kind]) - len(chosen[kind]),
                     "why_skipped": (f"report.audit_sample = {cap}: at most {cap} runs of this kind, "
                                     "evenly spread, are rescored (each reads every row of its split)"
                                     if len(chosen[kind]) < len(by_kind[kind]) else "")}
                    for kind in KINDS if by_kind[kind]],
        "checked": checked,
    }
    return {
        "passed": not failures,
        "code_hashes": code_hash_check(gate_paths, outputs),
        "schedule": {"runs": schedules, "n_runs": len(schedules), "max_abs_diff": worst},
        "metrics": metrics_check,
    }


def failure_message(result: dict) -> str:
    lines = []
    for r in result["metrics"]["failures"]:
        if r["split_mismatch"]:
            lines.append(f"run {r['run']}: not trained on the {r['split']} split ({r['split_mismatch']})")
        for d in r["differences"]:
            lines.append(f"run {r['run']}: {d['field']} is {d['recorded']!r} in metrics.json, but its saved "
                         f"weights rescore to {d['rescored']!r} on the {r['split']} split")
    return (f"metrics provenance check failed: {len(result['metrics']['failures'])} of "
            f"{result['metrics']['n_checked']} rescored runs differ from their metrics.json\n  " + "\n  ".join(lines))


def check(result: dict) -> dict:
    """The audit result, or AuditFailed naming every run and field that differs."""
    if not result["passed"]:
        raise AuditFailed(failure_message(result))
    return result

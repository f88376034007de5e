"""The report's audit on small runs trained here: saved weights rescore to exactly the figures in
metrics.json, and a planted wrong figure, a wrong split or a wrong test figure fails the audit
naming the run and the field. (tests/report/test_report.py runs the audit rule on the quick profile.)"""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from conftest import SPEC, make_split
from handbackprop.atomic import write_json
from handbackprop.data.splits import load_split
from handbackprop.audit import rescore
from handbackprop.audit import runs as audit
from handbackprop.report.benchmarks import collect_benchmarks, stage_of
from handbackprop.report.render import SECTIONS
from handbackprop.runfiles import write_run
from handbackprop.study import kinds, runs



KIND_OF_FOLDER = {"final": "final", "ablation": "ablation", "aug_vs_lambda": "aug_vs_lambda"}


def train_into(R: Path, rel: str, split: str, spec=SPEC, dtype="float32", lam=1e-3, seed=1, test=False):
    """One training run written exactly as the workflow's train_run.py writes it (with BLAS
    limited to the one thread the metrics record, as the rule's `threads:` does)."""
    with threadpool_limits(limits=1):
        net, result, metrics = runs.run(R / "data" / split, spec, lam, 1, seed, dtype, test,
                                        log=lambda s: None)
    parts = Path(rel).parts
    kind = parts[2] if parts[0] == "search" else KIND_OF_FOLDER[parts[1] if parts[0] == "bonus" else parts[0]]
    metrics.update(threads=1, code_hash="h", rule="test", **kinds.recorded(kind, R / "data" / split, "m"))
    d = R / rel
    write_run({"history": d / "history.csv", "weights": d / "weights.npz", "metrics": d / "metrics.json"},
              net, result, metrics)
    return d / "metrics.json"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A results folder with the two splits (of different sizes) and one run of every kind."""
    R = tmp_path_factory.mktemp("audit") / "results"
    make_split(R / "data" / "search", 60, 20, 30, seed=0)
    make_split(R / "data" / "final", 70, 10, 30, seed=1)
    paths = [
        train_into(R, "search/mlp/coarse/lam_1.00e-03/seed1", "search"),
        train_into(R, "search/lin/fine/lam_1.00e-02/seed2", "search", spec={**SPEC, "hidden": []}, lam=1e-2),
        train_into(R, "final/mlp/seed1", "final", test=True),
        train_into(R, "final/mlp64/seed3", "final", dtype="float64", seed=3, test=True),
        train_into(R, "bonus/ablation/no_dropout/seed1", "final", spec={**SPEC, "dropout": 0.3}, test=True),
        train_into(R, "bonus/aug_vs_lambda/aug/lam_1.00e-04/seed2", "search",
                   spec={**SPEC, "flip": True, "max_shift": 2}, lam=1e-4, seed=2),
    ]
    return R, paths


@pytest.fixture
def copy(results, tmp_path):
    """A private copy of the results to plant wrong figures in."""
    R, paths = results
    dest = tmp_path / "results"
    shutil.copytree(R, dest)
    return dest, [dest / Path(p).relative_to(R) for p in paths]


def edit(metrics_path, **changes):
    m = json.loads(Path(metrics_path).read_text())
    m.update(changes)
    write_json(metrics_path, m)
    return m


def test_saved_weights_rescore_to_exactly_the_recorded_figures(results):
    R, paths = results
    res = audit.audit(R, paths, gate_paths=[], log=lambda s: None)
    mc = res["metrics"]
    assert res["passed"] and mc["all_match"] and mc["n_checked"] == len(paths) == mc["n_runs"]
    assert [(k["kind"], k["split"], k["checked"]) for k in mc["by_kind"]] == [
        ("search", "search", 2), ("final", "final", 2), ("ablation", "final", 1), ("aug", "search", 1)]
    by_run = {r["run"]: r for r in mc["checked"]}
    final_fields = set(by_run["final/mlp/seed1"]["fields"])
    assert {"train_accuracy", "train_cost", "val_accuracy", "val_loss", "test_accuracy", "test_loss"} <= final_fields
    assert not any(f.startswith("test_") for f in by_run["search/mlp/coarse/lam_1.00e-03/seed1"]["fields"])
    assert audit.check(res) is res


def test_rescoring_recomputes_independently_of_the_file(results):
    """The comparison is against numbers computed now, from the weights and the split's rows."""
    R, paths = results
    m = json.loads(Path(paths[2]).read_text())
    split = load_split(R / "data" / "final")
    got = rescore.rescore(Path(paths[2]).parent, m, split)
    assert got["train_accuracy"] == m["train_accuracy"] and got["test_cost"] == m["test_cost"]
    # train_* is scored on every training row (70 here), not the history's 20-row subset.
    assert m["n_train"] == 70 and got["train_accuracy"] * 70 == pytest.approx(round(got["train_accuracy"] * 70))
    # Scored on other rows, the same weights give other figures: the check can fail.
    assert rescore.rescore(Path(paths[2]).parent, m, {**split, "X_val": split["X_test"][:10],
                                                      "y_val": split["y_test"][:10]})["val_loss"] != m["val_loss"]


def test_a_planted_wrong_val_accuracy_fails_naming_run_and_field(copy):
    R, paths = copy
    m = edit(paths[0], val_accuracy=json.loads(paths[0].read_text())["val_accuracy"] + 0.01)
    res = audit.audit(R, paths, gate_paths=[], log=lambda s: None)
    assert not res["passed"]
    (bad,) = res["metrics"]["failures"]
    assert bad["run"] == "search/mlp/coarse/lam_1.00e-03/seed1"
    assert [d["field"] for d in bad["differences"]] == ["val_accuracy"]
    with pytest.raises(audit.AuditFailed) as e:
        audit.check(res)
    msg = str(e.value)
    assert "search/mlp/coarse/lam_1.00e-03/seed1: val_accuracy" in msg and repr(m["val_accuracy"]) in msg
    assert "1 of 6 rescored runs" in msg


def test_a_test_figure_and_a_train_figure_off_by_one_ulp_fail(copy):
    R, paths = copy
    m = json.loads(paths[4].read_text())
    edit(paths[4], test_loss=float(np.nextafter(m["test_loss"], np.inf)))
    m64 = json.loads(paths[3].read_text())
    edit(paths[3], train_cost=float(np.nextafter(m64["train_cost"], -np.inf)))
    with pytest.raises(audit.AuditFailed) as e:
        audit.check(audit.audit(R, paths, gate_paths=[], log=lambda s: None))
    assert "bonus/ablation/no_dropout/seed1: test_loss" in str(e.value)
    assert "final/mlp64/seed3: train_cost" in str(e.value)


def test_metrics_of_another_split_or_another_runs_weights_fail(copy):
    R, paths = copy
    # A final run's figures reported for a search run: the split sizes give it away.
    shutil.copy(paths[2], paths[1])
    # Another run's weights under a run's figures: rescored, they give other numbers.
    shutil.copy(paths[5].with_name("weights.npz"), paths[0].with_name("weights.npz"))
    res = audit.audit(R, paths, gate_paths=[], log=lambda s: None)
    bad = {r["run"]: r for r in res["metrics"]["failures"]}
    # the copied metrics.json says it is a final run: its folder contradicts it
    assert "records a final run, whose folder is final/{model}/seed{seed}, but it lies in search/lin" \
        in bad["search/lin/fine/lam_1.00e-02/seed2"]["split_mismatch"]
    assert {d["field"] for d in bad["search/mlp/coarse/lam_1.00e-03/seed1"]["differences"]} >= {"val_loss", "train_loss"}
    with pytest.raises(audit.AuditFailed, match="not trained on the final split"):
        audit.check(res)


def test_sample_caps_each_kind_evenly_and_deterministically():
    paths = [f"search/m/coarse/lam_{i}/seed1/metrics.json" for i in range(10)]
    assert audit.sample(paths, None) == sorted(paths)
    picked = audit.sample(list(reversed(paths)), 3)
    assert picked == [paths[0], paths[5], paths[9]] or picked == [paths[0], paths[4], paths[9]]
    assert picked == audit.sample(paths, 3)
    assert audit.sample(paths, 50) == sorted(paths)
    with pytest.raises(ValueError, match="audit_sample"):
        audit.sample(paths, 0)


def test_capped_audit_rescores_at_most_cap_runs_of_each_kind_but_every_final(results):
    R, paths = results
    mc = audit.audit(R, paths, gate_paths=[], cap=1, log=lambda s: None)["metrics"]
    # the final runs carry the headline figures: all of them are rescored whatever the cap
    assert [(k["kind"], k["runs"], k["checked"]) for k in mc["by_kind"]] == [
        ("search", 2, 1), ("final", 2, 2), ("ablation", 1, 1), ("aug", 1, 1)]
    assert mc["n_checked"] == 5 and mc["cap"] == 1
    why = {k["kind"]: k["why_skipped"] for k in mc["by_kind"]}
    assert "report.audit_sample = 1" in why["search"] and why["final"] == ""


def test_a_run_is_grouped_by_the_kind_it_records_and_a_wrong_split_is_named():
    assert audit.kind_of({"kind": "fine", "split": "search"}, "r") == "search"
    assert audit.kind_of({"kind": "init", "split": "final"}, "r") == "init"
    with pytest.raises(ValueError, match="elsewhere/x/seed1: records no known run kind"):
        audit.kind_of({"kind": "mystery", "split": "search"}, "elsewhere/x/seed1")
    with pytest.raises(ValueError, match="a final run trains on the final split, but records 'search'"):
        audit.kind_of({"kind": "final", "split": "search"}, "r")
    with pytest.raises(ValueError, match="a coarse run trains on the search split"):
        kinds.recorded("coarse", "results/data/final", "linear")


def test_schedule_check_finds_a_recorded_eta_that_differs(copy):
    R, paths = copy
    ok = audit.schedule_check(json.loads(paths[0].read_text()), paths[0].with_name("history.csv"))
    assert ok["points"] >= 2 and ok["max_abs_diff"] == 0.0
    hist = paths[0].with_name("history.csv")
    lines = hist.read_text().splitlines()
    col = lines[0].split(",").index("eta")
    row = lines[1].split(",")
    row[col] = str(float(row[col]) + 1e-3)
    hist.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    bad = audit.schedule_check(json.loads(paths[0].read_text()), hist)
    assert bad["max_abs_diff"] == pytest.approx(1e-3)


def test_code_hashes_name_the_outputs_that_differ(tmp_path):
    gates = []
    for g in ("gradcheck", "overfit"):
        write_json(tmp_path / f"{g}.json", {"code_hash": "abc", "passed": True})
        gates.append(tmp_path / f"{g}.json")
    out = audit.code_hash_check(gates, {"a": {"code_hash": "abc", "code_hashes": {"study": "s1"}},
                                        "b": {"code_hash": "old", "code_hashes": {"study": "s2"}}})
    assert out["verified"] == "abc" and out["gates_agree"] and not out["all_match"]
    assert out["mismatched"] == ["b"] and out["groups"] == {"study": ["s1", "s2"]}


def test_benchmark_stage_is_the_folder_or_the_one_job_rule(tmp_path):
    base = tmp_path / "benchmarks"
    files = {"search/mlp50/coarse/lam_1.93e-03_seed11.tsv": "search/mlp50/coarse",
             "final/bonus/seed2.tsv": "final/bonus", "gate_overfit.tsv": "gate_overfit",
             "bonus/aug_vs_lambda/aug_lam_1.00e-04_seed1.tsv": "bonus/aug_vs_lambda"}
    for rel, stage in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text("s\th:m:s\tmax_rss\tcpu_time\n2.5\t0:00:02\t100.0\t1.0\n")
        assert stage_of(base / rel, base) == stage
    # A leftover of another config in the same folder is not counted: only the files given are.
    (base / "search/old/coarse").mkdir(parents=True)
    (base / "search/old/coarse/l0_seed1.tsv").write_text("s\tmax_rss\n99\t1\n")
    b = collect_benchmarks([base / rel for rel in files], base)
    assert b["total_jobs"] == 4 and b["files"] == 4 and b["total_seconds"] == pytest.approx(10.0)
    assert "search/old/coarse" not in {r["stage"] for r in b["rows"]}


def test_every_section_has_exactly_one_partial_shared_by_both_formats():
    from handbackprop.report.render import TEMPLATES as root
    assert {p.stem for p in (root / "sections").glob("*.j2")} == {s.id for s in SECTIONS}
    # Both pages include the same partials; only the building blocks differ, with the same names.
    names = [set(re.findall(r"{% macro (\w+)\(", (root / "macros" / f).read_text())) for f in ("html.j2", "md.j2")]
    assert names[0] == names[1]

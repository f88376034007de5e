"""The quick profile end to end, and rerunning exactly what a change affects (dry runs)."""
import io
import json
import math
import os
import re

import numpy as np
import pytest
import yaml

from conftest import QUICK, REPO, copy_repo, load_config, planned_jobs, snakemake

from handbackprop.study import plan

REPO_CONFIG = REPO / "config.yaml"

GATES = {"gate_gradcheck", "gate_overfit", "gate_trajectory"}
TRAINING = {"coarse_run", "fine_run", "final_run", "recipe_run", "ablation_run", "aug_lambda_run", "init_run",
            "search_stack", "aug_lambda_stack"}


def overlay(tmp_path, data):
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(data))
    return (QUICK, path)


def test_quick_profile_produces_every_stage(quick_results):
    r = quick_results
    for gate in ("gradcheck", "overfit", "trajectory"):
        ev = json.loads((r / "gates" / f"{gate}.json").read_text())
        assert ev["passed"]
    hashes = {json.loads((r / "gates" / f"{g}.json").read_text())["code_hash"]
              for g in ("gradcheck", "overfit", "trajectory")}
    assert len(hashes) == 1
    for model in ("linear", "mlp50", "bonus", "deep3", "deep9"):
        coarse = json.loads((r / "search" / model / "coarse.json").read_text())
        fine = json.loads((r / "search" / model / "fine.json").read_text())
        # the fine grid is centred on the coarse surface's fitted choice, within the coarse range
        centre = coarse["surface"]["log10_lam"]
        fine_l = [row["log10_lam"] for row in fine["rows"]]
        assert min(fine_l) <= centre + 1e-9 and max(fine_l) >= centre - 1e-9
        summary = json.loads((r / "final" / model / "summary.json").read_text())
        assert summary["lam"] == pytest.approx(fine["final_lam"])
        assert summary["headline"]["low"] <= summary["test_accuracy_mean"] <= summary["headline"]["high"]
        if model == "mlp50":  # the quick profile's one search with seed replicates
            assert "λ selection" in summary["headline"]["components"]  # the choice's noise is covered
        assert summary["code_hash"] in hashes
        if model != "deep9":  # 9 layers get 20 steps here: trained, not necessarily learned
            assert summary["test_accuracy_mean"] > 0.2  # the synthetic classes are learnable (chance: 0.1)
        run = json.loads((r / "final" / model / "seed1" / "metrics.json").read_text())
        assert sum(map(sum, run["confusion"])) == 200  # every test image scored once
        # every λ ran at each of the model's search seeds (quick: mlp50's per-model override)
        seeds = [1, 2] if model == "mlp50" else [1]
        assert coarse["seeds"] == fine["seeds"] == seeds
        assert all(row["n"] + row["n_diverged"] == len(seeds) for row in coarse["rows"] + fine["rows"])
        assert coarse["best"]["lam"] in coarse["indistinguishable"]
        # a snapshot ensemble per seed, of the run's cycle ends (quick: 1 cycle, the final net)
        snap = summary["snapshot_ensemble"]
        assert [row["members"] for row in snap["per_seed"]] == [1, 1]
        assert snap["test_accuracy"] == summary["test_accuracy"]
    assert "ensemble" in json.loads((r / "final" / "bonus" / "summary.json").read_text())
    # deep9 without batch norm trains at deep9's λ; the init experiment at deep3's
    nobn = json.loads((r / "final" / "deep9_nobn" / "summary.json").read_text())
    assert nobn["lam"] == json.loads((r / "search" / "deep9" / "fine.json").read_text())["final_lam"]
    assert "batch_norm" not in nobn["spec"] or not nobn["spec"]["batch_norm"]
    with np.load(r / "final" / "deep3" / "seed1" / "weights.npz") as w:  # running statistics saved
        assert {"gamma1", "beta1", "mean1", "var1", "gamma2", "mean2"} <= set(w.files)
    init = json.loads((r / "bonus" / "init_sensitivity.json").read_text())
    assert {(row["batch_norm"], row["sigma"]) for row in init["rows"]} == {
        (True, 0.1), (True, 1e-4), (False, 0.1), (False, 1e-4)}
    assert init["statement"].startswith("Initialisation sensitivity")
    # The bonus finals train the recipe the recipe search chose; the ablation switches off the
    # improvements that recipe uses (dropout only when the chosen recipe has it).
    recipe = json.loads((r / "bonus" / "recipe.json").read_text())
    assert recipe["chosen"] in {row["candidate"] for row in recipe["rows"]} and len(recipe["rows"]) >= 2
    final_spec = json.loads((r / "final" / "bonus" / "seed1" / "metrics.json").read_text())["spec"]
    assert all(final_spec[k] == v for k, v in recipe["recipe"].items())
    abl = json.loads((r / "bonus" / "ablation.json").read_text())
    variants = {row["variant"] for row in abl["rows"]}
    assert {"all", "all + ensemble", "all_off", "no_augmentation"} <= variants
    assert ("no_dropout" in variants) == (final_spec["dropout"] > 0)
    avl = json.loads((r / "bonus" / "aug_vs_lambda.json").read_text())
    shift = avl["shift"]
    assert shift["n_seeds"] == 3 and shift["ci_low"] <= shift["mean_shift_log10"] <= shift["ci_high"]
    if shift["n_at_edge"]:  # an optimum pinned to the grid's edge is a bound: no verdict, counted
        assert shift["verdict"] == "no verdict: optima at the grid's edge"
        assert f"{shift['n_at_edge']} of the 6 fitted optima sit at the grid's edge" in shift["statement"]
    else:
        assert shift["verdict"] in {"smaller", "larger", "no shift detectable at this budget"}
        assert (shift["verdict"] == "no shift detectable at this budget") == (shift["ci_low"] <= 0 <= shift["ci_high"])
    bugs = json.loads((r / "gates" / "bug_table.json").read_text())
    assert len(bugs["rows"]) >= 9


def test_second_run_does_nothing(quick_run):
    proc = snakemake(quick_run, "-n")
    assert planned_jobs(proc) == {}
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_forcerun_fine_search_reruns_fine_and_after_only(quick_run):
    jobs = planned_jobs(snakemake(quick_run, "-n", "--forcerun", "fine_run"))
    assert {"fine_run", "search_table", "final_run", "final_summary", "report"} <= set(jobs)
    # the fine tables of the searched models; the coarse ones stand
    assert jobs["search_table"] == len(load_config()["search"]["models"])
    assert not (GATES | {"coarse_run", "download", "preprocess", "preprocess_search"}) & set(jobs)


def test_changing_coarse_range_reruns_search_not_gates(quick_run, tmp_path):
    jobs = planned_jobs(snakemake(quick_run, "-n", configfiles=overlay(
        tmp_path, {"search": {"coarse": {"l_min": -4.5}}})))
    # The coarse tables are checkpoints: what follows them is planned once they have run.
    assert {"coarse_run", "search_table", "final_summary", "report"} <= set(jobs)
    assert not (GATES | {"download", "preprocess", "preprocess_search", "aug_lambda_run"}) & set(jobs)


def test_changing_validation_size_reruns_preprocess_not_download(quick_run, tmp_path):
    jobs = planned_jobs(snakemake(quick_run, "-n", configfiles=overlay(
        tmp_path, {"data": {"splits": {"final": {"n_val": 120, "seed": 1}}}})))
    assert jobs.get("preprocess") == 1  # the final split only
    assert "final_run" in jobs
    assert not ({"download", "make_synthetic", "coarse_run"} | GATES) & set(jobs)


def planned_after_edit(repo, rel):
    """Rules a dry run plans after appending a comment to one package file (then restored).
    Snakemake 9 compares input checksums, so the edit must change the content."""
    path = repo / rel
    source, before = path.read_text(), path.stat()
    try:
        path.write_text(source + "\n# an edit\n")
        return planned_jobs(snakemake(repo, "-n"))
    finally:
        path.write_text(source)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


DATA = {"make_synthetic", "download", "preprocess", "preprocess_search"}


def test_editing_the_model_package_reruns_gates_and_everything_after(quick_run):
    jobs = planned_after_edit(quick_run, "handbackprop/nn/layers.py")
    assert GATES | {"gate_bug_table", "coarse_run", "search_table", "report"} <= set(jobs)
    assert not DATA & set(jobs)
    assert planned_jobs(snakemake(quick_run, "-n")) == {}  # restored: nothing to do again


def test_editing_the_study_code_reruns_searches_and_finals_not_gates_or_data(quick_run):
    jobs = planned_after_edit(quick_run, "handbackprop/study/grids.py")
    # The coarse tables are checkpoints: what follows them is planned once they have run.
    assert {"coarse_run", "search_table", "report"} <= set(jobs)
    assert not (GATES | DATA | {"gate_bug_table"}) & set(jobs)


def test_editing_the_report_code_reruns_only_the_report(quick_run):
    jobs = planned_after_edit(quick_run, "handbackprop/report/figures.py")
    assert jobs == {"report": 1, "all": 1}


def test_editing_the_data_code_reruns_preprocessing_and_everything_after(quick_run):
    jobs = planned_after_edit(quick_run, "handbackprop/data/preprocess.py")
    assert {"preprocess", "gate_gradcheck", "coarse_run", "report"} <= set(jobs)
    assert (jobs["preprocess"], jobs["preprocess_search"]) == (1, 1)
    assert not {"download", "make_synthetic"} & set(jobs)  # no refetch for a preprocessing edit


def test_runs_are_found_by_lam_and_trained_at_exactly_the_planned_value(quick_results):
    """A run's folder names its λ; the λ it trained at is the table's exact float."""
    for model in ("linear", "mlp50", "bonus", "deep3", "deep9"):
        coarse = json.loads((quick_results / "search" / model / "coarse.json").read_text())
        fine = json.loads((quick_results / "search" / model / "fine.json").read_text())
        for label, lam in coarse["fine_grid"].items():
            for seed in fine["seeds"]:
                run = json.loads((quick_results / "search" / model / "fine" / label / f"seed{seed}" /
                                  "metrics.json").read_text())
                assert run["lam"] == lam and run["seed"] == seed and label == f"lam_{lam:.2e}"
        for seed in (1, 2):
            final = json.loads((quick_results / "final" / model / f"seed{seed}" / "metrics.json").read_text())
            assert final["lam"] == fine["final_lam"]
    # The ablation trains at its model's final λ; the aug-vs-λ runs at offsets around its model's.
    bonus_lam = json.loads((quick_results / "search" / "bonus" / "fine.json").read_text())["final_lam"]
    for p in (quick_results / "bonus" / "ablation").glob("*/seed*/metrics.json"):
        assert json.loads(p.read_text())["lam"] == bonus_lam
    avl = {json.loads(p.read_text())["log10_lam"]
           for p in (quick_results / "bonus" / "aug_vs_lambda").glob("*/lam_*/seed*/metrics.json")}
    offsets = yaml.safe_load(QUICK.read_text())["bonus"]["aug_vs_lambda"]["offsets"]
    centre = math.log10(json.loads((quick_results / "search" / "mlp50" / "fine.json").read_text())["final_lam"])
    assert sorted(avl) == pytest.approx(sorted(centre + o for o in offsets))


PLANTED = {
    # gate that must fail -> (file, correct line, buggy line)
    "gradcheck": ("handbackprop/nn/layers.py", "return dout * (out > 0)", "return dout * (out >= 0)"),
    "overfit": ("handbackprop/nn/train.py", "return np.asarray(X[idx], dtype=dtype), y[idx]",
                "return np.asarray(X[idx], dtype=dtype), y[np.roll(idx, 1)]"),
    "trajectory": ("handbackprop/nn/schedule.py", "t = np.asarray(step) % (2 * n_s)",
                   "t = (np.asarray(step) + 1) % (2 * n_s)"),
}


@pytest.fixture(scope="module")
def bug_repo(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("bug_repo"))


@pytest.mark.parametrize("gate", ["gradcheck", "overfit", "trajectory"])
def test_planted_bug_fails_the_dag_and_nothing_downstream_runs(bug_repo, gate):
    rel, good, bad = PLANTED[gate]
    path = bug_repo / rel
    source = path.read_text()
    assert good in source
    path.write_text(source.replace(good, bad))
    try:
        proc = snakemake(bug_repo, "--omit-from", "gate_bug_table", check=False)
    finally:
        path.write_text(source)
    results = bug_repo / "results" / "quick"
    assert proc.returncode != 0
    log = (results / "logs" / f"gate_{gate}.log").read_text()
    assert f"{gate} gate failed" in log
    assert not (results / "gates" / f"{gate}.json").exists()
    assert not (results / "search").exists() and not (results / "final").exists()
    assert not list(results.glob("search/*/coarse/*/*/metrics.json"))
    if gate == "gradcheck":
        assert "W1" in log and "max_rel" in log


def test_a_deleted_run_is_rebuilt_by_a_plain_rerun_with_what_depends_on_it(quick_run):
    """An interrupted --forcerun deletes its jobs' outputs; the report depends on every run file,
    so a plain rerun notices the hole instead of saying "Nothing to be done"."""
    run = quick_run / "results" / "quick" / "final" / "mlp50" / "seed2"
    before = json.loads((run / "metrics.json").read_text())
    for f in run.iterdir():
        f.unlink()
    jobs = planned_jobs(snakemake(quick_run, "-n"))
    assert jobs == {"final_run": 1, "final_summary": 1, "audit": 1, "report": 1, "all": 1}
    snakemake(quick_run)
    after = json.loads((run / "metrics.json").read_text())
    timings = {"seconds", "eval_seconds", "step_seconds", "eval_fraction"}  # the clock's, not the run's
    assert {k: v for k, v in after.items() if k not in timings} == \
        {k: v for k, v in before.items() if k not in timings}
    assert planned_jobs(snakemake(quick_run, "-n")) == {}


def test_a_deleted_search_run_is_retrained_by_its_stage_job_and_comes_back_equal(quick_run):
    """A search run is one λ of its stage's job (search.smk: one job per model, stage and seed,
    whose folder is temporary). Deleting the run reruns that job, which trains the stage's every
    λ again, and copies out the missing run only; the run comes back equal (same seed, same stack)."""
    stage = quick_run / "results" / "quick" / "search" / "mlp50" / "coarse"
    folder = sorted(stage.glob("lam_*/seed2"))[1]
    before = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in folder.iterdir()}
    # the stage job's benchmark, which the report's cost table reads: put back as found at the end
    bench = quick_run / "results" / "quick" / "benchmarks" / "search" / "mlp50" / "coarse_seed2_stack.tsv"
    bench_before = (bench.read_bytes(), bench.stat().st_mtime_ns)
    siblings = {p: p.stat().st_mtime_ns for p in stage.glob("lam_*/seed*/*") if p.parent != folder}
    assert json.loads(before["metrics.json"][0])["stacked"] is True  # mlp50 is plain SGD
    for f in folder.iterdir():
        f.unlink()
    target = str((folder / "metrics.json").relative_to(quick_run))
    assert planned_jobs(snakemake(quick_run, "-n", target)) == {"search_stack": 1, "coarse_run": 1}
    snakemake(quick_run, "-p", target)  # a flag first: --configfile would take the target as a file
    timings = {"seconds", "eval_seconds", "step_seconds", "eval_fraction"}  # the clock's, not the run's
    old, new = json.loads(before["metrics.json"][0]), json.loads((folder / "metrics.json").read_text())
    assert {k: v for k, v in new.items() if k not in timings} == {k: v for k, v in old.items() if k not in timings}
    assert (folder / "history.csv").read_bytes() == before["history.csv"][0]
    with np.load(folder / "weights.npz") as z:
        assert z.files and all(np.array_equal(z[k], np.load(io.BytesIO(before["weights.npz"][0]))[k])
                               for k in z.files)
    assert {p: p.stat().st_mtime_ns for p in siblings} == siblings  # the others were not copied again
    assert not list(stage.parent.glob("*.stack"))  # the stage job's folder is gone again
    for name, (_, mtime) in before.items():  # leave the shared run as found: nothing downstream is newer
        os.utime(folder / name, ns=(mtime, mtime))
    bench.write_bytes(bench_before[0])
    os.utime(bench, ns=(bench_before[1], bench_before[1]))
    assert planned_jobs(snakemake(quick_run, "-n")) == {}


HEADLINE = {"gate_user_model", "lr_range", "search_stack", "coarse_run", "fine_run", "search_table",
            "recipe_run", "recipe_table", "final_run", "final_summary"}
BONUS = {"aug_lambda_stack", "aug_lambda_run", "ablation_run", "init_run"}


def scheduling_rounds(log: str) -> list[dict]:
    """The jobs of one Snakemake log: {rule, jobid, inputs, outputs, round started, round its
    finish was seen}. A round is one "Select jobs to execute..." decision: the jobs it starts
    were chosen together, from what was ready at that moment."""
    jobs, by_id, rnd = [], {}, 0
    lines = log.splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("Select jobs to execute"):
            rnd += 1
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):$", ln)
        if m:
            block = {}
            for b in lines[i + 1:i + 14]:
                key, _, val = b.strip().partition(": ")
                if key in ("input", "output", "jobid"):
                    block[key] = val
                if key == "jobid":
                    break
            job = {"rule": m.group(1), "jobid": block.get("jobid"), "round": rnd, "done": None,
                   "inputs": set(filter(None, block.get("input", "").split(", "))),
                   "outputs": set(filter(None, block.get("output", "").split(", ")))}
            jobs.append(job)
            by_id[job["jobid"]] = job
        m = re.match(r"Finished jobid: (\d+)", ln)
        if m and m.group(1) in by_id:
            by_id[m.group(1)]["done"] = rnd  # ready for the next round's choice
    return jobs


def test_no_bonus_job_takes_a_core_a_headline_job_was_ready_for(quick_run):
    """On 2 cores the headline chain (priority 10, range tests 20) goes first: whenever a bonus
    job (priority 0) was started, no headline job that was already ready (every input made by an
    earlier finished job) waited for a later round. Bonus jobs fill cores the headline chain
    cannot use (say, while one model's last search stage runs alone), so "every final before any
    bonus job" is not what priority promises. Ordered by priority, not by a fake input, so the
    bonus runs stay visible to the rerun check (test_consistency.py)."""
    logs = sorted((quick_run / ".snakemake" / "log").glob("*.snakemake.log"))
    jobs = scheduling_rounds(next(p.read_text() for p in logs if "rule final_summary:" in p.read_text()))
    made_by = {out: j for j in jobs for out in j["outputs"]}
    assert {j["rule"] for j in jobs} >= {"final_run", "init_run", "ablation_run", "aug_lambda_stack"}

    def ready_round(job):  # the first round after its last producer finished (0: from the start)
        producers = [made_by[f] for f in job["inputs"] if f in made_by and made_by[f] is not job]
        return max((p["done"] for p in producers), default=0)

    waited = [(b["rule"], b["round"], h["rule"], ready_round(h), h["round"])
              for b in jobs if b["rule"] in BONUS
              for h in jobs if h["rule"] in HEADLINE and ready_round(h) < b["round"] < h["round"]]
    assert waited == [], waited  # (bonus rule, its round, headline rule, ready since, started)
    finals = [j["round"] for j in jobs if j["rule"] == "final_run"]
    assert finals and all(j["round"] >= ready_round(j) for j in jobs)  # the reading is consistent


def test_rerunning_the_finals_does_not_rerun_the_bonus_experiments(quick_run):
    jobs = planned_jobs(snakemake(quick_run, "-n", "--forcerun", "final_run"))
    assert {"final_run", "final_summary", "report"} <= set(jobs)
    assert not {"aug_lambda_run", "ablation_run"} & set(jobs)


# ----------------------------------------------------------------- learning-rate range tests
def test_every_training_job_trains_at_its_range_tests_eta_or_the_fixed_one(quick_results):
    cfg = yaml.safe_load((REPO_CONFIG).read_text())
    quick = yaml.safe_load(QUICK.read_text())
    fixed = {m: quick["models"].get(m, {}).get("eta_max", cfg["models"][m].get("eta_max"))
             for m in cfg["models"]
             if "eta_max" in cfg["models"][m] or "eta_max" in quick["models"].get(m, {})}
    assert set(fixed) == {"mlp50", "bonus", "deep3", "deep9", "deep9_nobn"}
    ranges = {p.stem: json.loads(p.read_text()) for p in (quick_results / "lr_range").glob("*.json")}
    assert set(ranges) == {"linear", "mlp50", "bonus", "deep3", "deep9", "deep9_nobn"}
    for name, r in ranges.items():
        etas = [rec["eta"] for rec in r["records"]]
        assert etas == sorted(etas) and len(set(etas)) == len(etas)
        assert (quick_results / "lr_range" / f"{name}.csv").exists()

    def check(run_dir, range_model):
        m = json.loads((run_dir / "metrics.json").read_text())
        b = ranges[range_model]["bounds"]
        tc = m["train_config"]
        if range_model in fixed:
            assert m["eta_source"] == "config" and tc["eta_max"] == fixed[range_model]
        else:
            assert m["eta_source"] == "range_test"
            assert (tc["eta_min"], tc["eta_max"]) == (b["eta_min"], b["eta_max"])
        assert (m["eta"]["eta_min"], m["eta"]["eta_max"]) == (tc["eta_min"], tc["eta_max"])

    for model in ("linear", "mlp50", "bonus", "deep3", "deep9"):
        for stage in ("coarse", "fine"):
            for run in (quick_results / "search" / model / stage).glob("lam_*/seed*"):
                check(run, model)
    for model in ("linear", "mlp50", "bonus", "deep3", "deep9", "deep9_nobn"):
        check(quick_results / "final" / model / "seed1", model)  # deep9_nobn: its own test, deep9's λ
    check(next((quick_results / "bonus" / "ablation").glob("*/seed1")), "bonus")
    check(next((quick_results / "bonus" / "aug_vs_lambda" / "aug").glob("lam_*/seed1")), "mlp50")
    check(next((quick_results / "bonus" / "init_sensitivity").glob("*/seed1")), "deep3")


def planned_models(proc) -> set[str]:
    """The `model` wildcard of every job a dry run plans."""
    return {m.group(1) for m in re.finditer(r"wildcards: .*?\bmodel=([A-Za-z0-9_]+)", proc.stdout + proc.stderr)}


def test_changing_one_models_range_test_reruns_its_searches_only(quick_run, tmp_path):
    proc = snakemake(quick_run, "-n", configfiles=overlay(
        tmp_path, {"lr_range": {"per_model": {"linear": {"epochs": 3}}}}))
    jobs = planned_jobs(proc)
    assert jobs["lr_range"] == 1
    assert jobs["coarse_run"] == 4  # linear's 4 coarse λ × 1 seed
    assert jobs["search_stack"] == 1  # ... trained by one job
    assert planned_models(proc) == {"linear"}  # no other model's range test, search or final
    assert not (GATES | DATA | {"aug_lambda_run", "ablation_run", "init_run"}) & set(jobs)
    # the training defaults' η, which no model of this config trains with (linear takes its range
    # test's, the others fix their own), reruns no training job
    jobs = planned_jobs(snakemake(quick_run, "-n", configfiles=overlay(
        tmp_path, {"training": {"eta_max": 0.2}})))
    assert not (TRAINING | {"lr_range"}) & set(jobs), jobs
    # a model whose eta_max config fixes does not read its range test: rerunning it reruns nothing else
    jobs = planned_jobs(snakemake(quick_run, "-n", configfiles=overlay(
        tmp_path, {"lr_range": {"per_model": {"deep3": {"epochs": 3}}}})))
    assert jobs.get("lr_range") == 1
    assert not TRAINING & set(jobs), jobs

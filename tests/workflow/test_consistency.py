"""One invocation leaves results consistent: every file a config asks for is a target, a change
leaves nothing stale behind a checkpoint, a moved project plans nothing, one process writes a
results folder, and every recorded choice is recomputed by the audit from its runs.

The scenarios share the session's finished quick run, each on its own copy (mtimes kept)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import outputs
import pytest
from conftest import QUICK, REPO, SNAKEMAKE, load_config, planned_jobs, snakemake

from handbackprop import CODE_GROUPS, PACKAGE_DIR, code_files, script_code
from handbackprop.atomic import lock_results
from handbackprop.audit import selections
from handbackprop.study import plan, resolve

TIMINGS = outputs.TIMING_KEYS


@pytest.fixture
def run_copy(quick_run, tmp_path):
    """A private copy of the finished quick run (repository, results and .snakemake)."""
    dest = tmp_path / "copy"
    shutil.copytree(quick_run, dest, symlinks=True)
    return dest


def results_of(workdir: Path) -> Path:
    return workdir / "results" / "quick"


def without_timings(d: dict) -> dict:
    return {k: v for k, v in d.items() if k not in TIMINGS}


# ------------------------------------------------------------------------------ code groups
def test_every_package_file_is_in_exactly_one_code_group():
    files = [p for p in PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    owners = {p: [g for g in CODE_GROUPS if p in code_files(g)] for p in files}
    assert {str(p): g for p, g in owners.items() if len(g) != 1} == {}


SCRIPTS = sorted((REPO / "workflow" / "scripts").glob("*.py"))

# Runs every import statement of each script in a child forked from one fresh interpreter (so
# numpy and torch load once) and prints the package files Python actually loaded, per script.
PROBE = """
import ast, json, os, sys
sys.path.insert(0, sys.argv[1])
import numpy, torch  # heavy and outside the package: loaded once, before the forks
out = {}
for script in sys.argv[2:]:
    r, w = os.pipe()
    if os.fork() == 0:
        for node in ast.walk(ast.parse(open(script).read())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                exec(compile(ast.Module([node], []), script, "exec"))
        files = sorted(m.__file__ for m in list(sys.modules.values())
                       if m.__name__.split(".")[0] == "handbackprop" and getattr(m, "__file__", None))
        os.write(w, json.dumps(files).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out[script] = json.loads(f.read())
    os.wait()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def loaded_by_script():
    out = subprocess.run([sys.executable, "-c", PROBE, str(REPO), *map(str, SCRIPTS)],
                         capture_output=True, text=True, check=True,
                         env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}).stdout
    return {Path(k): {Path(f).resolve() for f in v} for k, v in json.loads(out).items()}


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_rules_code_input_covers_every_module_its_script_loads(script, loaded_by_script):
    """Independent of the static walk (handbackprop.script_code), which gives each rule its
    `code` input: what Python loads for the script's imports must all be in it."""
    loaded = loaded_by_script[script]
    assert loaded, "the probe loaded no package module"
    assert sorted(map(str, loaded - set(script_code(script)))) == []


def test_templates_are_code_of_the_report_and_ship_in_the_wheel(tmp_path):
    templates = sorted((PACKAGE_DIR / "report" / "templates").rglob("*.j2"))
    assert len(templates) > 2
    assert set(templates) <= set(script_code(REPO / "workflow" / "scripts" / "report.py"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    import zipfile
    (wheel,) = tmp_path.glob("handbackprop-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".j2")}
    assert shipped == {str(t.relative_to(REPO)) for t in templates}
    # and the shipped copy renders: every template compiles with its includes and macros
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    probe = ("import sys; sys.path.insert(0, sys.argv[1])\n"
             "from handbackprop.report import render\n"
             "assert render.TEMPLATES.is_relative_to(sys.argv[1]), render.TEMPLATES\n"
             "env = render.environment('html')\n"
             "for name in env.list_templates(): env.get_template(name)\n")
    subprocess.run([sys.executable, "-c", probe, str(tmp_path / "site")], check=True)


# ------------------------------------------------------------------------------ config meaning
def test_the_quick_profile_screens_its_own_recipe_candidates_only():
    assert set(plan.recipe_candidates(load_config())) == {"configured", "dropout_0.3"}


def test_a_recipe_candidates_bad_value_is_reported_under_its_own_key():
    cfg = load_config({"bonus": {"recipe": {"candidates": [{"name": "huge", "batch_size": 10_000}]}}})
    with pytest.raises(plan.ConfigError) as err:
        plan.validate(cfg)
    assert err.value.key == "bonus.recipe.candidates.huge.batch_size"


def test_a_truncated_recipe_names_its_file(tmp_path):
    bad = tmp_path / "recipe.json"
    bad.write_text('{"recipe": {"dropout": 0.')
    with pytest.raises(ValueError, match=f"{bad}: not valid JSON"):
        resolve.layered({"dropout": 0.0}, str(bad))


# ------------------------------------------------------------------------------ the DAG
def test_a_moved_project_plans_nothing(quick_run, tmp_path):
    moved = tmp_path / "somewhere" / "else"
    shutil.copytree(quick_run, moved, symlinks=True)
    assert planned_jobs(snakemake(moved, "-n")) == {}


def test_a_study_code_edit_leaves_nothing_stale_after_one_invocation(run_copy):
    """The bonus runs sit behind the recipe and search checkpoints; before, the first
    invocation skipped them and a second one was needed."""
    R = results_of(run_copy)
    ablation = R / "bonus" / "ablation" / "all_off" / "seed1" / "metrics.json"
    aug = next((R / "bonus" / "aug_vs_lambda" / "aug").glob("*/seed1/metrics.json"))
    before = {p: json.loads(p.read_text()) for p in (ablation, aug)}
    before_table = json.loads((R / "bonus" / "ablation.json").read_text())
    grids = run_copy / "handbackprop" / "study" / "grids.py"
    grids.write_text(grids.read_text() + "\n# an edit that changes no result\n")
    snakemake(run_copy)
    assert planned_jobs(snakemake(run_copy, "-n")) == {}
    for p, old in before.items():
        new = json.loads(p.read_text())
        assert new["code_hashes"]["study"] != old["code_hashes"]["study"], f"{p} was not rerun"
        keep = lambda d: {k: v for k, v in without_timings(d).items() if k != "code_hashes"}
        assert keep(new) == keep(old)
    assert json.loads((R / "bonus" / "ablation.json").read_text())["text"] == before_table["text"]


def test_deleted_outputs_of_every_kind_are_rebuilt_by_a_plain_run(run_copy):
    R = results_of(run_copy)
    victims = [R / "final" / "bonus" / "seed1" / "snapshots.npz", R / "search" / "linear" / "coarse.csv",
               R / "bonus" / "ablation.csv"]
    for v in victims:
        v.unlink()
    jobs = planned_jobs(snakemake(run_copy, "-n"))
    assert {"final_run", "search_table", "ablation_table"} <= set(jobs), jobs
    assert not {"gate_gradcheck", "coarse_run", "fine_run"} & set(jobs), jobs  # nothing upstream
    snakemake(run_copy)
    assert [v for v in victims if not v.exists()] == []
    assert planned_jobs(snakemake(run_copy, "-n")) == {}


def test_a_deleted_gate_table_is_a_target_too(run_copy):
    """gradcheck.md is the gate's own output: deleting it reruns the gate (and so the study)."""
    (results_of(run_copy) / "gates" / "gradcheck.md").unlink()
    assert "gate_gradcheck" in planned_jobs(snakemake(run_copy, "-n"))


def test_a_second_process_on_the_same_results_folder_is_refused(run_copy):
    R = results_of(run_copy)
    held = lock_results(R)  # as another checkout's run pointing its `results:` here would
    try:
        proc = snakemake(run_copy, check=False)
    finally:
        held.close()
    assert proc.returncode != 0
    assert f"results folder {R.relative_to(run_copy)} is in use by pid" in proc.stdout + proc.stderr


def test_stale_temps_anywhere_in_the_results_are_swept(run_copy):
    R = results_of(run_copy)
    orphan = R / "search" / "a_model_no_config_asks_for" / ".metrics.json.tmp-999999999"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("half a file")
    snakemake(run_copy)
    assert not orphan.exists()


# ------------------------------------------------------------------------------ one invocation, clean results
# What a clean run of the same code and config would give (tests/outputs.py), code hashes aside:
# the scenarios edit code on purpose. The report (it names the code and its own timings) and the
# Markdown tables (renderings of the JSON beside them) are left out; logs and benchmarks are timings.
NOT_RESULTS = frozenset({"logs", "benchmarks", "report"})
VOLATILE = TIMINGS | {"code_hashes", "code_hash"}


def assert_same_results(workdir: Path, clean: Path):
    mine = outputs.outputs(results_of(workdir), NOT_RESULTS, skip_suffixes=(".md",))
    theirs = outputs.outputs(clean, NOT_RESULTS, skip_suffixes=(".md",))
    assert mine.keys() == theirs.keys(), (sorted(mine.keys() - theirs.keys()),
                                          sorted(theirs.keys() - mine.keys()))
    differ = {rel: d for rel in mine
              if (d := outputs.difference(rel, mine[rel], workdir, theirs[rel], clean.parents[1],
                                          ignore_keys=VOLATILE, ignore_columns=VOLATILE,
                                          names=("scenario", "clean")))}
    assert differ == {}, f"{len(differ)} files differ from the clean run:\n" + "\n".join(
        f"== {rel}\n{d}" for rel, d in list(differ.items())[:5])


def assert_one_invocation_is_enough(workdir: Path, clean: Path, *args, configfiles=(QUICK,)):
    snakemake(workdir, *args, configfiles=configfiles)
    leftover = planned_jobs(snakemake(workdir, "-n", configfiles=configfiles))
    assert leftover == {}, f"a second invocation would still run {leftover}"
    assert_same_results(workdir, clean)


def test_a_model_code_edit_leaves_nothing_stale_after_one_invocation(run_copy, quick_results):
    layers = run_copy / "handbackprop" / "nn" / "layers.py"
    layers.write_text(layers.read_text() + "\n# an edit that changes no result\n")
    assert_one_invocation_is_enough(run_copy, quick_results)
    some_final = results_of(run_copy) / "final" / "bonus" / "seed1" / "metrics.json"
    old = json.loads((quick_results / "final" / "bonus" / "seed1" / "metrics.json").read_text())
    assert json.loads(some_final.read_text())["code_hashes"]["model"] != old["code_hashes"]["model"]


def test_a_config_value_changed_and_changed_back_leaves_the_clean_results(run_copy, quick_results):
    """bonus.recipe's candidate sits before the recipe checkpoint, and everything of the bonus
    model after it: there and back, each in one invocation, must end where a clean run ends."""
    cfg = load_config()
    candidates = cfg["bonus"]["recipe"]["candidates"]
    changed = [{**c, "dropout": round(c.get("dropout", 0.0) + 0.1, 3)} for c in candidates]
    overlay = run_copy / "changed.yaml"
    overlay.write_text(json.dumps({"bonus": {"recipe": {"candidates": changed}}}))
    recipe = results_of(run_copy) / "bonus" / "recipe.json"
    before = json.loads(recipe.read_text())
    snakemake(run_copy, configfiles=(QUICK, overlay))
    assert planned_jobs(snakemake(run_copy, "-n", configfiles=(QUICK, overlay))) == {}
    assert json.loads(recipe.read_text()) != before  # the changed candidate was trained
    assert_one_invocation_is_enough(run_copy, quick_results)


def test_a_changed_recipe_run_reaches_every_bonus_run_in_one_invocation(run_copy, quick_results):
    """A recipe run retrained (its metrics deleted here) re-enters the recipe checkpoint; the
    bonus finals and the ablation behind it must rerun in the same invocation."""
    R = results_of(run_copy)
    run = next(p for p in sorted((R / "bonus" / "recipe").glob("*/seed*")) if p.is_dir())
    ablation = next((R / "bonus" / "ablation").glob("*/seed1/metrics.json"))
    ablation_before = ablation.stat().st_mtime_ns
    (run / "metrics.json").unlink()
    assert_one_invocation_is_enough(run_copy, quick_results)
    assert ablation.stat().st_mtime_ns > ablation_before, "the ablation run behind the recipe was not rerun"


def _started_outputs(workdir: Path) -> list[str]:
    """The outputs Snakemake has marked as being written (its `incomplete` records, whose names
    are the base64 of each output path, split in chunks prefixed '@' when long)."""
    from base64 import urlsafe_b64decode

    root = workdir / ".snakemake" / "incomplete"
    outputs = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f == "migration_underway":
                continue
            rel = Path(dirpath, f).relative_to(root)
            b64 = "".join(part.lstrip("@") for part in rel.parts)
            outputs.append(urlsafe_b64decode(b64).decode())
    return outputs


def _kill_during(workdir: Path, output_part: str, *args, whole_run: bool = False) -> list[str]:
    """Start the workflow and, while a job writing an output whose path contains `output_part`
    runs, kill -9 that job's processes (every process below Snakemake, as the OOM killer or a
    lost node would), or with `whole_run` Snakemake too (a power loss). Return the outputs that
    were marked as being written at the kill."""
    import psutil

    cmd = [SNAKEMAKE, "--snakefile", str(workdir / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "--configfile", str(QUICK), *args]
    with open(workdir / "killed_run.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        marked = []
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                marked = [o for o in _started_outputs(workdir) if output_part in o]
                jobs = psutil.Process(proc.pid).children(recursive=True) if marked else []
                if jobs:
                    for job in jobs:
                        job.kill()
                    break
                time.sleep(0.01)
        finally:
            if whole_run or proc.poll() is None and time.monotonic() >= deadline:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=300)
    text = (workdir / "killed_run.log").read_text()
    assert marked, f"no job writing {output_part} was caught running:\n{text[-3000:]}"
    assert proc.returncode != 0, f"the run survived the kill of its job:\n{text[-3000:]}"
    return marked


# checkpoint forced to rerun -> a piece of the path of the output its job writes (a plain rule's
# job is killed in the power-loss scenario below)
KILLED_IN = {"recipe_table": "bonus/recipe.json", "search_table": "/coarse.json"}


@pytest.mark.parametrize("rule", sorted(KILLED_IN))
def test_a_kill_9_of_a_rules_job_recovers_in_one_plain_invocation(run_copy, quick_results, rule):
    """Checkpoints included: Snakemake sees its job die and stops; one plain invocation rebuilds
    the job's outputs and everything after them, identical to a clean run."""
    _kill_during(run_copy, KILLED_IN[rule], "--forcerun", rule)
    assert_one_invocation_is_enough(run_copy, quick_results)


def test_a_power_loss_during_a_final_run_recovers_after_unlock(run_copy, quick_results):
    """Snakemake killed with its job leaves its own directory lock, which it asks to clear with
    --unlock (it cannot tell a dead holder from a live one); after that, one plain invocation."""
    marked = _kill_during(run_copy, "final/", "--forcerun", "final_run", whole_run=True)
    assert any("final/" in o for o in marked)
    blocked = snakemake(run_copy, check=False)
    assert blocked.returncode != 0 and "--unlock" in blocked.stdout + blocked.stderr
    snakemake(run_copy, "--unlock")
    assert_one_invocation_is_enough(run_copy, quick_results)


# ------------------------------------------------------------------------------ the audit of choices
@pytest.fixture
def quick_copy(quick_results, tmp_path):
    dest = tmp_path / "quick"
    shutil.copytree(quick_results, dest)
    return dest


def edit_json(path: Path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def audit_of(R):
    return selections.audit_selections(R, plan.selection_plan(load_config()))


def test_the_finished_quick_run_passes_the_audit_of_choices(quick_results):
    result = audit_of(quick_results)
    assert result["passed"], selections.failure_message(result)
    assert len(result["checked"]) >= 3


def _set_fine_grid(d):
    first = next(iter(d["fine_grid"]))
    d["fine_grid"][first] = 0.5


CHOICES = {
    # edited file, edit, what the finding names, the file it names (None: the edited one)
    "a hand-edited fine grid": ("search/linear/coarse.json", _set_fine_grid, "fine_grid", None),
    "a typed-over final λ": ("search/mlp50/fine.json", lambda d: d.update(final_lam=0.123),
                             "final_lam", None),
    "a recipe that names another candidate": ("bonus/recipe.json", lambda d: d.update(chosen="nobody"),
                                              "chosen", None),
    "a final metrics.json edited upwards": ("final/mlp50/seed1/metrics.json",
                                            lambda d: d.update(test_accuracy=0.99),
                                            "test_accuracy per seed", "final/mlp50/summary.json"),
    "a run whose folder names another λ": ("search/linear/coarse/{first}/seed1/metrics.json",
                                           lambda d: d.update(lam=0.5), "λ of the run in folder", None),
}


@pytest.mark.parametrize("case", sorted(CHOICES))
def test_a_recorded_choice_its_runs_contradict_fails_the_audit_naming_the_file(quick_copy, case):
    rel, change, what, named = CHOICES[case]
    first = sorted(p.name for p in (quick_copy / "search" / "linear" / "coarse").iterdir())[0]
    path = quick_copy / rel.format(first=first)
    edit_json(path, change)
    named = quick_copy / named if named else path
    result = audit_of(quick_copy)
    assert not result["passed"]
    assert any(f["file"] == str(named) and f["what"].startswith(what) for f in result["findings"]), \
        result["findings"]
    assert str(named) in selections.failure_message(result)

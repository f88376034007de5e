"""The workflow on a real SLURM cluster gives, bit for bit, what it gives locally.

Run by tests/workflow/slurm/run_slurm_test.sh, which brings up a single-node SLURM and sets SLURM_CONF;
`pytest -m slurm` alone skips unless `sinfo` reaches a cluster with an idle node.

A subset of the quick profile runs through profiles/slurm -- data, the four gates, the linear
model's range test, coarse and fine lambda searches (one job per stage), final runs and summary
(16 jobs; the per-λ copies out of a stage's job are local rules) -- and the
same targets run locally with --cores 2. Every output file is then compared (tests/outputs.py):

* JSON: equal after canonical re-serialisation (floats compared through their exact repr);
* CSV, Markdown, .md5, tarballs: byte-identical text/bytes (except the excluded CSV column);
* .npy/.npz: every array with the same name, dtype, shape and bytes.

Excluded, because they legitimately differ between two runs of the same code and data:

* the wall-clock timings -- JSON keys ``seconds`` (runs, search rows, final summaries),
  ``elapsed_s`` (preprocessing stats) and ``seconds_mean``; the search tables' ``seconds``
  CSV column;
* the absolute working directory, which appears in ``url`` (download.json) and ``source``
  (stats.json) as a file:// URL: it is replaced by a placeholder, the rest of the string is
  still compared;
* logs/ and benchmarks/ (timings, process ids, engine messages);
* the results folder's lock file, which names the process that holds it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import outputs
import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
QUICK = REPO / "config" / "quick.yaml"

PROFILE = REPO / "profiles" / "slurm"
RESULTS = Path("results") / "quick"
TARGETS = [str(RESULTS / "final" / "linear" / "summary.json")]
# The rules those targets pull in; each must have run as a SLURM job (the per-λ copies out of
# a search stage's job, coarse_run and fine_run, are local rules).
EXPECTED_RULES = {"make_synthetic", "download", "preprocess", "preprocess_search", "gate_gradcheck", "gate_overfit",
                  "gate_trajectory", "gate_stacked", "lr_range", "search_stack", "search_table", "final_run",
                  "final_summary"}
LOCAL_RULES = {"coarse_run", "fine_run"}  # a few file copies each: they run beside Snakemake


def _cluster_ready() -> str | None:
    """None if sinfo reaches a cluster with an idle node, else why not."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "SLURM client commands not installed"
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return f"sinfo failed: {proc.stderr.strip()}"
    if "idle" not in proc.stdout.split():
        return f"no idle node (sinfo: {proc.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def cluster():
    why = _cluster_ready()
    if why:
        if os.environ.get("HANDBACKPROP_SLURM_REQUIRED") == "1":
            pytest.fail(f"SLURM cluster not usable: {why}")
        pytest.skip(f"SLURM cluster not usable: {why} (run tests/workflow/slurm/run_slurm_test.sh)")


def _start(cmd, workdir: Path):
    """Popen with stdout/stderr in files next to the working directory (no pipe to fill)."""
    out = open(workdir.with_suffix(".stdout"), "w+")
    err = open(workdir.with_suffix(".stderr"), "w+")
    return subprocess.Popen(cmd, stdout=out, stderr=err, text=True), out, err


def _finish(proc, out, err, cmd, timeout, extra=""):
    proc.wait(timeout=timeout)
    out.seek(0), err.seek(0)
    stdout, stderr = out.read(), err.read()
    out.close(), err.close()
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                             f"{stdout[-4000:]}\n{stderr[-8000:]}\n{extra()[-8000:] if extra else ''}")
    return stderr


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The targets through profiles/slurm and, at the same time (from the same checkout, so the
    same code), on the local executor with --cores 2. Returns (slurm workdir, its snakemake log,
    local workdir)."""
    slurm_dir = tmp_path_factory.mktemp("slurm_run")
    local_dir = tmp_path_factory.mktemp("local_run")
    common = [SNAKEMAKE, *TARGETS, "--snakefile", str(REPO / "Snakefile")]
    slurm_cmd = [*common, "--directory", str(slurm_dir), "--profile", str(PROFILE),
                 # This test cluster has no accounting database: sacct cannot report job states.
                 "--slurm-status-command", "squeue",
                 "--slurm-init-seconds-before-status-checks", "5",  # see docs/cluster.md
                 "--slurm-keep-successful-logs",  # the evidence checked below
                 "--configfile", str(QUICK)]
    local_cmd = [*common, "--directory", str(local_dir), "--cores", "2", "--configfile", str(QUICK)]

    def slurm_logs():
        return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}"
                         for p in sorted((slurm_dir / ".snakemake" / "slurm_logs").rglob("*.log")))

    started = time.monotonic()
    slurm = _start(slurm_cmd, slurm_dir)
    local = _start(local_cmd, local_dir)
    try:
        local_log = _finish(*local, local_cmd, timeout=600)
        print(f"local run: {time.monotonic() - started:.0f} s")
        slurm_log = _finish(*slurm, slurm_cmd, timeout=600, extra=slurm_logs)
        print(f"SLURM run: {time.monotonic() - started:.0f} s")
    finally:
        for proc, _, _ in (slurm, local):
            if proc.poll() is None:  # a timeout or a failure of the other run
                proc.terminate()  # snakemake cancels its SLURM jobs on SIGTERM
                proc.wait(timeout=60)
    assert "Finished jobid" in local_log
    return slurm_dir, slurm_log, local_dir


@pytest.fixture(scope="module")
def slurm_run(runs):
    return runs[0], runs[1]


@pytest.fixture(scope="module")
def local_run(runs):
    return runs[2]


def test_jobs_ran_under_slurm(slurm_run):
    workdir, log = slurm_run
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    # data 4, gates 4, the range test, 2 search stages and their 2 tables, 2 final runs, the summary
    assert len(submitted) == 16, f"expected 16 SLURM submissions, saw {len(submitted)}:\n{log[-3000:]}"
    local = set(re.findall(r"^localrule (\w+):", log, re.M))
    assert "Rule: " in log and local == LOCAL_RULES, f"jobs of {local - LOCAL_RULES} ran on the submitting host"
    slurm_ids = set(submitted.values())
    assert len(slurm_ids) == len(submitted), "two jobs share a SLURM job id"

    # The plugin writes one log per SLURM job: .snakemake/slurm_logs/rule_<rule>/<wc>/<id>.log
    logdir = workdir / ".snakemake" / "slurm_logs"
    logs = {p.stem: p for p in logdir.rglob("*.log")}
    assert slurm_ids <= set(logs), f"SLURM jobs without a log: {sorted(slurm_ids - set(logs))}"
    rules = {p.relative_to(logdir).parts[0].removeprefix("rule_") for p in logs.values()}
    assert rules == EXPECTED_RULES
    for jid in slurm_ids:
        text = logs[jid].read_text()
        assert "Finished jobid" in text or "steps (100%) done" in text, \
            f"SLURM job {jid} log does not show the job finishing:\n{text[-2000:]}"

    # And slurmctld itself records each of them as completed with exit code 0.
    for jid in slurm_ids:
        out = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True,
                             text=True, timeout=30).stdout
        assert "JobState=COMPLETED" in out and "ExitCode=0:0" in out, out


# ----------------------------------------------------------------------------- comparison
def _outputs(workdir: Path) -> dict[str, Path]:
    return outputs.outputs(workdir / RESULTS)


def _difference(rel: str, a: Path, wa: Path, b: Path, wb: Path) -> str | None:
    return outputs.difference(rel, a, wa, b, wb, names=("local", "slurm"))


def test_slurm_results_identical_to_local(slurm_run, local_run):
    slurm_dir, _ = slurm_run
    local = _outputs(local_run)
    remote = _outputs(slurm_dir)
    assert local.keys() == remote.keys(), \
        f"only local: {sorted(local.keys() - remote.keys())}; only SLURM: {sorted(remote.keys() - local.keys())}"
    kinds = {Path(r).suffix for r in local}
    assert {".json", ".csv", ".npy", ".npz"} <= kinds
    assert any(r.startswith("gates/") for r in local) and "search/linear/fine.json" in local
    differences = {}
    for rel in local:
        d = _difference(rel, local[rel], local_run, remote[rel], slurm_dir)
        if d:
            differences[rel] = d
    assert not differences, "SLURM results differ from the local run:\n" + "\n".join(
        f"== {rel}\n{d}" for rel, d in differences.items())
    print(f"{len(local)} output files identical (timings and the working directory excluded)")

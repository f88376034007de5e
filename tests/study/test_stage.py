"""Stage scripts' errors reach the console as one line; the log keeps the traceback."""
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from handbackprop import stage

REPO = Path(__file__).resolve().parents[2]


def _run(tmp_path, body):
    """Run ``body`` as a stage inside console_errors("demo") with its output logged; (proc, log text)."""
    log = tmp_path / "logs" / "demo.log"
    script = tmp_path / "stage_script.py"
    script.write_text(textwrap.dedent("""\
        import sys
        from handbackprop import stage
        stage.log_to(sys.argv[1])
        with stage.console_errors("demo", sys.argv[1]):
            print("started")
        """) + textwrap.indent(textwrap.dedent(body), "    "))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(log)], capture_output=True, text=True,
                          env=env, timeout=60)
    return proc, log.read_text()


@pytest.mark.parametrize("body, line", [
    ("raise ValueError('n_val 6000 is not below the 5000 training images')",
     "demo: ValueError: n_val 6000 is not below the 5000 training images"),
    ("raise SystemExit('gradcheck gate failed: W1 error 3e-2')",
     "demo: gradcheck gate failed: W1 error 3e-2"),
    ("raise KeyError('data')", "demo: KeyError: 'data'"),
    ("raise RuntimeError('first line\\n  second line\\n')", "demo: RuntimeError: first line | second line"),
    ("raise OSError", "demo: OSError"),
])
def test_error_is_one_console_line_and_a_logged_traceback(tmp_path, body, line):
    proc, log = _run(tmp_path, body)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"{line} (traceback in {tmp_path / 'logs' / 'demo.log'})"]
    assert proc.stdout == ""  # progress stays in the log
    assert log.startswith("started\n") and log.splitlines()[-1] == stage.FAILURE_MARK + line
    if "SystemExit" not in body:
        assert "Traceback (most recent call last)" in log


@pytest.mark.parametrize("body, code", [("pass", 0), ("raise SystemExit(3)", 3), ("sys.exit(0)", 0)])
def test_success_and_deliberate_exit_status_are_left_alone(tmp_path, body, code):
    proc, log = _run(tmp_path, body)
    assert proc.returncode == code and proc.stderr == ""
    assert stage.FAILURE_MARK not in log


def test_failure_lines_reads_only_this_runs_logs(tmp_path):
    old = tmp_path / "logs" / "old.log"
    old.parent.mkdir()
    old.write_text(f"x\n{stage.FAILURE_MARK}old_rule: ValueError: stale\n")
    os.utime(old, (time.time() - 3600,) * 2)
    since = time.time() - 60
    _run(tmp_path, "raise ValueError('bad eta_min')")
    (tmp_path / "logs" / "sub").mkdir()
    (tmp_path / "logs" / "sub" / "ok.log").write_text("all good\n")
    assert stage.failure_lines(tmp_path / "logs", since=since) == ["demo: ValueError: bad eta_min"]
    assert len(stage.failure_lines(tmp_path / "logs")) == 2


class _Named(dict):
    """The attribute-and-key access of Snakemake's named lists."""
    __getattr__ = dict.__getitem__


def test_download_script_without_network_says_how_to_use_a_local_copy(tmp_path, refused_url):
    """The real workflow script, wrapped, against a host that refuses: one line naming url and fix."""
    log = tmp_path / "logs" / "download.log"
    log.parent.mkdir()  # Snakemake creates it before the job starts
    runner = tmp_path / "run_download.py"
    runner.write_text(textwrap.dedent(f"""\
        import runpy, sys, types
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_stage import _Named
        sm = types.SimpleNamespace(
            rule="download", log=[{str(log)!r}], scriptdir={str(REPO / "workflow" / "scripts")!r},
            params=_Named(url={refused_url!r}, md5="", retries=0, timeout_s=2), input=_Named(),
            output=_Named(tarball={str(tmp_path / "c.tar.gz")!r},
                          provenance={str(tmp_path / "download.json")!r}))
        runpy.run_path({str(REPO / "workflow" / "scripts" / "download.py")!r},
                       init_globals={{"snakemake": sm}}, run_name="__main__")
        """))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(runner)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"download: SourceUnreachable: the source {refused_url} is unreachable")
    assert "point data.url at it" in line and "config/shared-jpeg.yaml" in line
    assert "Traceback" in log.read_text() and not (tmp_path / "c.tar.gz").exists()


@pytest.mark.parametrize("script", sorted((REPO / "workflow" / "scripts").glob("*.py")),
                         ids=lambda p: p.name)
def test_every_stage_script_runs_its_work_inside_console_errors(script):
    """Everything after the log redirection is inside the wrapper, so no error escapes it."""
    import ast

    body = ast.parse(script.read_text()).body
    last = body[-1]
    assert isinstance(last, ast.With), f"{script.name} does not end in a with block"
    call = last.items[0].context_expr
    assert ast.unparse(call) == "stage.console_errors(snakemake.rule, snakemake.log[0])"
    # Before the wrapper: only the docstring, imports, sys.path/log/thread set-up.
    for node in body[:-1]:
        text = ast.unparse(node)
        assert isinstance(node, (ast.Import, ast.ImportFrom)) or text.startswith(
            ("'", '"', "sys.path.insert(", "sys.stderr = sys.stdout = open(", "stage.log_to(",
             "stage.limit_threads(")), f"{script.name}: {text!r} runs outside console_errors"

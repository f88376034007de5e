"""The final report: every section present, every number matching the output it comes from, a fast
report-only rerun, a build without the bonus outputs, and a headless-Chromium check of the HTML."""
import base64
import fcntl
import html as htmllib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, planned_jobs, snakemake
from handbackprop.report import build_report
from handbackprop.report.build import lam, pct, pm, sci
from handbackprop.report.collect import PUBLISHED
from handbackprop.report.provenance import collect_git

SECTIONS = ("summary", "data", "gates", "audit", "schedule", "searches", "final", "bonus", "provenance")


# ------------------------------------------------------------------------------ helpers
def read(p):
    return json.loads(Path(p).read_text())


def text_of(fragment: str) -> str:
    """Visible text: tags removed, entities unescaped, whitespace collapsed."""
    fragment = re.sub(r'<img[^>]*>', " ", fragment)
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", " ", fragment)))


def sections(page: str) -> dict:
    """{section id: visible text of that <section>}."""
    out = {}
    for m in re.finditer(r'<section id="([^"]+)">(.*?)</section>', page, re.S):
        out[m.group(1)] = text_of(m.group(2))
    return out


def png_size(uri: str) -> tuple[int, int]:
    assert uri.startswith("data:image/png;base64,")
    raw = base64.b64decode(uri.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">II", raw[16:24])


@pytest.fixture(scope="module")
def page(quick_results):
    return (quick_results / "report" / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def md(quick_results):
    return (quick_results / "report" / "report.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def sec(page):
    return sections(page)


@pytest.fixture(scope="module")
def run_config(md):
    """The config the run used, as the report's provenance section dumps it."""
    return yaml.safe_load(re.search(r"```yaml\n(.*?)```", md, re.S).group(1))


# ------------------------------------------------------------------------------ content
def test_every_section_present_in_both_forms(page, md, sec):
    assert set(SECTIONS) <= set(sec), sorted(sec)
    for heading in ("## Summary", "## Data", "## Gates", "## Audit", "## Learning-rate schedule", "## λ searches",
                    "## Final training", "## Bonus experiments", "## Provenance"):
        assert heading in md
    assert "data:image" not in md and "<img" not in md  # the Markdown is text-only by design


def test_summary_accuracies_lambdas_published_and_gates(quick_results, sec, md, run_config):
    s = sec["summary"]
    for model in run_config["final"]["models"]:
        summ = read(quick_results / "final" / model / "summary.json")
        acc = pm(summ["test_accuracy_mean"], summ["test_accuracy_std"])
        assert re.search(rf"{re.escape(model)} .*?{re.escape(lam(summ['lam']))} .*?{re.escape(acc)}", s), model
        assert acc in md
        for a in summ["test_accuracy"]:
            assert pct(a) in s
        if "ensemble" in summ:
            assert f"{pct(summ['ensemble']['test_accuracy'])} ({summ['ensemble']['members']} members)" in s
    # The published figures, labelled as published and not mistaken for ours.
    assert "Published reference (not computed here)" in s
    for key in ("linear_test_accuracy", "bonus_test_accuracy"):
        assert pct(PUBLISHED[key]) in s
    assert "39.30%" in s and "49.77%" in s and "1.07e-03" in s
    gates = [read(quick_results / "gates" / f"{g}.json") for g in ("gradcheck", "overfit", "trajectory")]
    assert all(g["passed"] for g in gates) and "every gate passed" in s


def test_every_training_run_hash_equals_the_verified_hash(quick_results, sec):
    verified = {read(quick_results / "gates" / f"{g}.json")["code_hash"]
                for g in ("gradcheck", "overfit", "trajectory")}
    assert len(verified) == 1
    (h,) = verified
    runs = sorted(quick_results.glob("*/**/metrics.json"))
    assert runs and all(read(p)["code_hash"] == h for p in runs)
    assert f"verified by the gates: {h}" in sec["summary"]
    assert re.search(rf"All {len(runs) + len(list(quick_results.glob('final/*/summary.json')))} training outputs"
                     r".*record this same hash", sec["summary"])
    assert h in sec["provenance"]


def test_data_section(quick_results, sec):
    d = sec["data"]
    dl = read(quick_results / "data" / "download.json")
    assert dl["md5"] in d and dl["url"] in d
    for split in ("search", "final"):
        st = read(quick_results / "data" / split / "stats.json")
        assert f"{split} {st['n_train']} {st['n_val']} {st['n_test']}" in d
        for part, counts in st["class_counts"].items():
            assert f"{split} / {part} " + " ".join(map(str, counts)) in d
    assert " ".join(read(quick_results / "data" / "final" / "stats.json")["label_names"]) in d


def test_gates_section(quick_results, sec):
    g = sec["gates"]
    gc = read(quick_results / "gates" / "gradcheck.json")
    for v in gc["variants"]:
        for name, f in v["params"].items():
            assert (f"{v['variant']} {name} {'×'.join(map(str, f['shape']))} {sci(f['max_rel'])} "
                    f"{sci(f['norm_rel'])} {sci(f['fd_norm_rel'])} pass") in g
        assert f"{v['variant']} {v['cost']:.10f} {v['torch_cost']:.10f} {sci(v['cost_rel'])}" in g
    t = gc["thresholds"]
    assert f"thresholds {sci(t['max_rel'], 0)} {sci(t['norm_rel'], 0)} {sci(t['fd_norm_rel'], 0)}" in g
    for v in read(quick_results / "gates" / "overfit.json")["variants"]:
        assert f"{v['variant']} {v['n_images']} {v['steps']} {v['initial_cost']:.4g} {v['ln10']:.4g}" in g
        assert sci(v["final_loss"]) in g
    for v in read(quick_results / "gates" / "trajectory.json")["variants"]:
        assert f"{v['variant']} {v['optimizer']} {v['steps']} {sci(v['max_cost_rel'])}" in g
    bugs = read(quick_results / "gates" / "bug_table.json")
    for r in bugs["rows"]:
        caught = ", ".join(r["caught_by"]) if r["caught_by"] else "—"
        assert re.search(rf"{re.escape(r['bug'])} .*? {r['gradcheck']} {r['overfit']} {r['trajectory']} "
                         rf"{re.escape(caught)}", g), r["bug"]
    for b in bugs["uncaught"]:
        assert f"Not caught by any gate: {b}" in g or b in g.split("Not caught by any gate:")[1]


def test_schedule_is_exact(quick_results, sec, run_config):
    from handbackprop.nn.schedule import cyclic_lr

    s = sec["schedule"]
    for model in run_config["final"]["models"]:
        m = read(quick_results / "final" / model / f"seed{run_config['final']['seeds'][0]}" / "metrics.json")
        tc = m["train_config"]
        assert f"{model} {tc['eta_min']} {tc['eta_max']} {m['n_s']} {m['steps']}" in s
        hist = (quick_results / "final" / model / f"seed{run_config['final']['seeds'][0]}" / "history.csv")
        lines = [line.split(",") for line in hist.read_text().splitlines()]
        col = {k: i for i, k in enumerate(lines[0])}
        for row in lines[1:]:
            step = int(float(row[col["step"]]))
            if step < m["steps"]:
                assert cyclic_lr(step, tc["eta_min"], tc["eta_max"], m["n_s"]) == pytest.approx(float(row[col["eta"]]),
                                                                                               abs=1e-15)


def test_searches_section(quick_results, sec, run_config):
    s = sec["searches"]
    for model in run_config["search"]["models"]:
        fine = read(quick_results / "search" / model / "fine.json")
        assert f"{model}: chosen λ = {lam(fine['best']['lam'])} (validation accuracy " \
               f"{pct(fine['best']['val_accuracy'])})" in s
        for stage in ("coarse", "fine"):
            t = read(quick_results / "search" / model / f"{stage}.json")
            for r in t["rows"]:
                assert f"{lam(r['lam'])} {r['log10_lam']:.3f} {pct(r['val_accuracy'])}" in s
        # The final runs used that lambda.
        assert read(quick_results / "final" / model / "summary.json")["lam"] == fine["best"]["lam"] \
            if model in run_config["final"]["models"] else True


def test_final_and_bonus_sections(quick_results, sec, page, run_config):
    f = sec["final"]
    for model in run_config["final"]["models"]:
        for seed in run_config["final"]["seeds"]:
            m = read(quick_results / "final" / model / f"seed{seed}" / "metrics.json")
            assert (f"{seed} {lam(m['lam'])} {m['steps']} {pct(m['train_accuracy'])} {pct(m['val_accuracy'])} "
                    f"{pct(m['test_accuracy'])}") in f
    assert 'alt="weights linear"' in page  # the linear model's weight images
    b = sec["bonus"]
    for r in read(quick_results / "bonus" / "ablation.json")["rows"]:
        assert f"{r['variant']} {pm(r['test_accuracy_mean'], r['test_accuracy_std'])}" in b
    avl = read(quick_results / "bonus" / "aug_vs_lambda.json")
    assert text_of(htmllib.escape(avl["shift"]["statement"])) in b


def test_provenance_section(quick_run, quick_results, sec, run_config):
    p = sec["provenance"]
    # The workflow's own checkout: the quick run's private copy has no .git, which must be said.
    commit = subprocess.run(["git", "-C", str(quick_run), "rev-parse", "HEAD"], capture_output=True, text=True)
    if commit.returncode == 0:
        assert commit.stdout.strip() in p
        assert "dirty" in p or "clean" in p
    else:
        assert "git commit not available: " in p
    assert read(quick_results / "data" / "download.json")["md5"] in p
    assert "numpy" in p and "matplotlib" in p and "logical cores" in p
    tsvs = list((quick_results / "benchmarks").glob("**/*.tsv"))
    jobs = sum(len(t.read_text().strip().splitlines()) - 1 for t in tsvs)
    assert re.search(rf"\ball {jobs} ", p)
    assert "gate_gradcheck" in p and "peak RSS (MB)" in p
    assert run_config["results"] == "results/quick"


def test_html_is_self_contained(page):
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) >= 15
    for uri in imgs:
        w, h = png_size(uri)
        assert w > 50 and h > 50
    assert not re.search(r'(?:src|href)="(?!data:|#)', page)  # no external file or request
    assert "<script" not in page and "<link" not in page and "@import" not in page


def test_no_git_checkout_is_reported_gracefully(tmp_path):
    git = collect_git(tmp_path)
    assert (git["available"], git["commit"], git["dirty"]) == (False, None, None) and git["reason"]


def test_builds_without_bonus_outputs(quick_results, run_config, tmp_path):
    cfg = {**run_config, "bonus": {}}
    out = tmp_path / "report"
    build_report(quick_results, cfg, out / "report.html", out / "report.md", log=lambda *a: None)
    page = (out / "report.html").read_text()
    assert "bonus" not in sections(page) and "## Bonus experiments" not in (out / "report.md").read_text()
    assert "summary" in sections(page)


# ------------------------------------------------------------------------------ audit
def test_audit_rescored_every_run_of_every_kind_and_the_report_says_so(quick_results, sec, md):
    a = read(quick_results / "report" / "audit.json")
    runs = sorted(quick_results.glob("*/**/metrics.json"))
    mc = a["metrics"]
    assert a["passed"] and mc["all_match"] and not mc["failures"]
    # The quick profile rescores every run (report.audit_sample: null), of all four kinds.
    assert mc["n_checked"] == mc["n_runs"] == len(runs)
    assert {k["kind"]: k["checked"] for k in mc["by_kind"]} == {
        "search": len(list(quick_results.glob("search/**/metrics.json"))),
        "final": len(list(quick_results.glob("final/**/metrics.json"))),
        "ablation": len(list(quick_results.glob("bonus/ablation/**/metrics.json"))),
        "aug": len(list(quick_results.glob("bonus/aug_vs_lambda/**/metrics.json")))}
    assert all(r["ok"] and r["fields"] for r in mc["checked"])
    sentence = (f"{mc['n_checked']} of {mc['n_runs']} training runs rechecked "
                f"({', '.join(str(k['checked']) + ' ' + k['kind'] for k in mc['by_kind'])}): all {mc['n_figures']} "
                "train/val/test figures in their metrics.json matched the rescored saved weights exactly")
    assert sentence in sec["summary"] and sentence in sec["audit"] and sentence in md
    assert f"The audit recomputed η for all {len(runs)} training runs" in sec["schedule"]
    assert a["schedule"]["max_abs_diff"] == 0.0


def test_audit_rule_fails_naming_a_planted_wrong_figure(quick_run, tmp_path):
    """The real rule, in a copy of the finished run: one run's val_accuracy edited (its file time
    kept, so nothing upstream reruns), then the audit job must fail and name the run and field."""
    work = tmp_path / "copy"
    shutil.copytree(quick_run, work, symlinks=True)
    results = work / "results" / "quick"
    run = results / "search" / "mlp50" / "fine"
    target = sorted(run.glob("*/seed*/metrics.json"))[0]
    stat = target.stat()
    m = read(target)
    m["val_accuracy"] = m["val_accuracy"] + 0.01
    target.write_text(json.dumps(m))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = snakemake(work, "--forcerun", "audit", "--until", "audit", "--rerun-triggers", "mtime", "--nolock",
                     check=False)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log[-3000:]
    assert set(re.findall(r"^\s*(?:local)?rule (\w+):", log, re.M)) == {"audit"}, log[-3000:]
    why = (results / "logs" / "audit.log").read_text()
    name = str(target.parent.relative_to(results))
    assert "AuditFailed" in why and f"run {name}: val_accuracy is {m['val_accuracy']!r} in metrics.json" in why
    assert not (results / "report" / "audit.json").exists()  # a failed audit leaves no audit.json


# ------------------------------------------------------------------------------ rerun
def test_rerunning_only_the_report_is_fast_and_reruns_nothing_else(quick_run):
    # In the run itself: a copy elsewhere would rerun everything (the gates' code inputs are absolute
    # paths). The report is regenerated from the same outputs, so the run is left as it was.
    work = quick_run
    results = work / "results" / "quick"
    report = results / "report" / "report.html"
    before = report.stat().st_mtime_ns
    upstream = {p: p.stat().st_mtime_ns for p in results.glob("**/*")
                if p.is_file() and not {"report", "logs"} & set(p.relative_to(results).parts)}
    # Precondition: the finished run is up to date, the report included (its params are stable).
    assert planned_jobs(snakemake(work, "--dry-run")) == {}
    t0 = time.monotonic()
    proc = snakemake(work, "--forcerun", "report", "--until", "report")
    elapsed = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    ran = set(re.findall(r"^\s*(?:local)?rule (\w+):", log, re.M))
    assert ran == {"report"}, log[-3000:]
    assert report.stat().st_mtime_ns > before
    assert {p: p.stat().st_mtime_ns for p in upstream} == upstream
    assert elapsed < 120, f"report-only rerun took {elapsed:.0f} s"
    took = re.search(r"figures ([\d.]+) s", (results / "logs" / "report.log").read_text())
    assert took and float(took.group(1)) < 60


# ------------------------------------------------------------------------------ browser
def _chromium():
    for c in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.path.exists(c):
            return c
    return None


def _high_fd(fd: int) -> int:
    """``fd`` moved to a number >= 10, so moving the pipe ends onto 3 and 4 cannot clobber one."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class CDP:
    """Chrome DevTools Protocol over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out,
    NUL-terminated JSON): no websocket client needed."""

    def __init__(self, binary, profile):
        to_chrome_r, self._w = map(_high_fd, os.pipe())
        self._r, from_chrome_w = map(_high_fd, os.pipe())
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,1600",
                f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        # A tiny Python shim moves our pipe ends onto fds 3 and 4, then becomes Chromium.
        shim = ("import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); "
                "os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])")
        self.proc = subprocess.Popen([sys.executable, "-c", shim, str(to_chrome_r), str(from_chrome_w), *args],
                                     pass_fds=(to_chrome_r, from_chrome_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id = 0
        self.events: list[dict] = []
        self._replies: dict[int, dict] = {}
        self._cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b""
        with os.fdopen(self._r, "rb", buffering=0) as fh:
            while chunk := fh.read(65536):
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    msg = json.loads(raw)
                    with self._cv:
                        if "id" in msg:
                            self._replies[msg["id"]] = msg
                        else:
                            self.events.append(msg)
                        self._cv.notify_all()

    def send(self, method, params=None, session=None, timeout=30):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        with self._cv:
            if not self._cv.wait_for(lambda: self._id in self._replies, timeout):
                raise TimeoutError(method)
            reply = self._replies.pop(self._id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def wait_event(self, method, session, timeout=30):
        with self._cv:
            ok = self._cv.wait_for(lambda: any(e["method"] == method and e.get("sessionId") == session
                                               for e in self.events), timeout)
        if not ok:
            raise TimeoutError(method)

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(quick_results, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium not installed")
    report = quick_results / "report" / "report.html"
    cdp = CDP(binary, tmp_path / "profile")
    try:
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            cdp.send(f"{domain}.enable", session=sid)
        cdp.send("Emulation.setDeviceMetricsOverride",
                 {"width": 1280, "height": 1600, "deviceScaleFactor": 1, "mobile": False}, session=sid)
        cdp.send("Page.navigate", {"url": report.as_uri()}, session=sid)
        cdp.wait_event("Page.loadEventFired", sid)
        result = cdp.send("Runtime.evaluate", {
            "expression": "Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))"
                          ".then(() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]))",
            "awaitPromise": True, "returnByValue": True}, session=sid)["result"]["value"]
        shot = cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)["data"]
        metrics = cdp.send("Page.getLayoutMetrics", session=sid)["cssContentSize"]
        full = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
            "x": 0, "y": 0, "width": 1280, "height": min(metrics["height"], 16000), "scale": 0.5}},
            session=sid)["data"]
        time.sleep(0.2)  # let late console events arrive
    finally:
        cdp.close()
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "report.png").write_bytes(base64.b64decode(shot))
    (artifacts / "report-full.png").write_bytes(base64.b64decode(full))

    assert len(result) >= 15
    broken = [alt for alt, complete, width in result if not complete or width <= 0]
    assert not broken, broken
    errors = [e for e in cdp.events
              if (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
              or e["method"] == "Runtime.exceptionThrown"
              or (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert not errors, errors

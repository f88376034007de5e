"""Shared fixtures and helpers: a small synthetic CIFAR tarball, a configurable loopback HTTP server,
the merged quick config, a small preprocessed split, and the quick profile run once per session."""
import copy
import http.server
import json
import socket
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

# Make the repository importable even when the package is not installed in the venv.
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from handbackprop.data.synthetic import make_synthetic_tarball  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_tarball(tmp_path_factory):
    """A small CIFAR-format tarball (20 train / 5 test images per class): (path, md5)."""
    path = tmp_path_factory.mktemp("synthetic") / "cifar-10-python.tar.gz"
    md5 = make_synthetic_tarball(path, per_class_train=20, per_class_test=5, seed=0)
    return path, md5


@dataclass
class Route:
    """How the test server answers one path.

    ``status`` is sent (with an empty body) unless it is 200; ``fail_first``
    requests are answered with ``fail_status`` before the normal answer;
    ``truncate_to`` sends a Content-Length for the whole body but only that many
    bytes, then closes the connection.
    """
    body: bytes = b""
    status: int = 200
    fail_first: int = 0
    fail_status: int = 503
    truncate_to: int | None = None
    requests: int = 0


@dataclass
class TestServer:
    """Handle the test uses: configure routes, build URLs, read request counts."""
    __test__ = False  # not a test class, despite the name
    port: int
    routes: dict = field(default_factory=dict)

    def route(self, path, **kwargs):
        """Register ``path`` (e.g. "/a.tar.gz") with Route options; return its full URL."""
        self.routes[path] = Route(**kwargs)
        return self.url(path)

    def url(self, path):
        """Full http URL of ``path`` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path):
        """How many requests ``path`` has received."""
        return self.routes[path].requests


def _make_handler(state):
    """A request handler class bound to the server's route table."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            route = state.routes.get(self.path)
            if route is None:
                self._empty(404)
                return
            with _lock:
                route.requests += 1
                n = route.requests
            if n <= route.fail_first:
                self._empty(route.fail_status)
            elif route.status != 200:
                self._empty(route.status)
            else:
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                sent = route.body if route.truncate_to is None else route.body[:route.truncate_to]
                self.wfile.write(sent)
                self.close_connection = True

        def _empty(self, status):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format, *args):
            # Keep pytest output clean; request counts are what tests check.
            pass

    return Handler


_lock = threading.Lock()


@pytest.fixture
def http_server():
    """A ThreadingHTTPServer on 127.0.0.1 (free port) in a thread; shut down after the test."""
    state = TestServer(port=0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    state.port = server.server_address[1]
    # A short poll interval so shutdown() returns quickly at teardown.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def refused_url():
    """A URL on a port nothing listens on: bind to get a free port, then close it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"


# --------------------------------------------------------------------------- workflow runs
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
QUICK = REPO / "config" / "quick.yaml"


def copy_repo(dest: Path) -> Path:
    """A private checkout (tracked and untracked, not ignored files) to run or edit freely."""
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def snakemake(workdir, *args, configfiles=(QUICK,), snakefile=None, check=True, timeout=900):
    """Run the workflow with `workdir` as its working directory (results land there).

    The Snakefile is the one in `workdir` when it is a copy of the repository
    (so its model code is the copy's), else the repository's.
    """
    import subprocess

    if snakefile is None:
        snakefile = workdir / "Snakefile" if (Path(workdir) / "Snakefile").exists() else REPO / "Snakefile"
    cmd = [SNAKEMAKE, "--snakefile", str(snakefile), "--directory", str(workdir), "--cores", "2",
           "--configfile", *map(str, configfiles), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def planned_jobs(proc) -> dict[str, int]:
    """Rule name -> job count from a dry run's 'Job stats' table ({} when nothing to do)."""
    jobs, in_table = {}, False
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
            continue
        if in_table:
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] != "total":
                    jobs[parts[0]] = int(parts[1])
            elif parts and not set(parts[0]) <= {"-"}:
                in_table = False
    return jobs


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """The quick profile run once, end to end, in a private copy of the repository.

    Returns that copy (also the working directory); results are under
    <copy>/results/quick. Tests must leave it as they found it.
    """
    workdir = copy_repo(tmp_path_factory.mktemp("quick_run"))
    snakemake(workdir)
    return workdir


@pytest.fixture(scope="session")
def quick_results(quick_run):
    return quick_run / "results" / "quick"


# ------------------------------------------------------------------ helpers shared by test modules
def load_config(*overlays):
    """config.yaml with the quick profile and `overlays` merged on top, as Snakemake does."""
    def merge(base, over):
        for k, v in over.items():
            base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    for over in (yaml.safe_load((REPO / "config" / "quick.yaml").read_text()), *overlays):
        cfg = merge(cfg, copy.deepcopy(over))
    return cfg


# A small two-layer spec for runs trained in tests.
SPEC = {"hidden": [8], "dropout": 0.0, "batch_size": 10, "eta_min": 1e-5, "eta_max": 0.05, "n_s": 4,
        "points_per_cycle": 2, "train_eval_size": 20, "divergence_factor": 10}


def make_split(directory: Path, n_train: int, n_val: int, n_test: int, seed: int):
    """A preprocessed split folder (the files load_split reads) with random, class-dependent rows."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    means = rng.normal(0, 1, (10, 3072))
    for part, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        y = rng.integers(0, 10, n)
        np.save(directory / f"X_{part}.npy", (means[y] + rng.normal(0, 1, (n, 3072))).astype(np.float32))
        np.save(directory / f"y_{part}.npy", y.astype(np.int64))
    np.savez(directory / "norm.npz", mean=np.zeros(3072), std=np.ones(3072))
    (directory / "stats.json").write_text(json.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def report_inputs(results: Path, config: dict, benchmarks=False) -> dict:
    """The report rule's named inputs for a finished results folder (its names: report.smk), for
    tests that build a report outside Snakemake. benchmarks=False: no cost or benchmark table."""
    from handbackprop.study import plan

    R, bonus = Path(results), config.get("bonus") or {}
    finals = [R / "final" / m / f"seed{s}" for m in config["final"]["models"] for s in config["final"]["seeds"]]
    gates = {g: R / "gates" / f"{g}.json" for g in ("gradcheck", "overfit", "trajectory", "stacked", "bug_table")}
    users = dict.fromkeys(m for m in config["search"]["models"] + config["final"]["models"]
                          if config["models"][m].get("module"))
    return {
        "audit": R / "report" / "audit.json", **gates,
        "user_gates": [R / "gates" / "user" / f"{m}.json" for m in users],
        "searches": [R / "search" / m / f"{st}.json" for m in config["search"]["models"] for st in ("coarse", "fine")],
        "finals": [R / "final" / m / "summary.json" for m in config["final"]["models"]],
        "lr_range": [R / "lr_range" / f"{m}.json" for m in plan.range_models(config)],
        "final_runs": [d / "metrics.json" for d in finals],
        "histories": [d / "history.csv" for d in finals],
        "weights": [d / "weights.npz" for d in finals],
        **{name: [R / "bonus" / f"{name}.json"] if bonus.get(name) else []
           for name in ("recipe", "ablation", "aug_vs_lambda", "init_sensitivity")},
        "init_histories": sorted((R / "bonus" / "init_sensitivity").glob("*/seed*/history.csv")),
        "benchmarks": sorted((R / "benchmarks").rglob("*.tsv")) if benchmarks else [],
        "runs": sorted(R.rglob("metrics.json")),
        "machine_gemm": [R / "report" / "machine_gemm.json"] if benchmarks else [],
        "download": R / "data" / "download.json",
        "search_stats": R / "data" / "search" / "stats.json",
        "final_stats": R / "data" / "final" / "stats.json",
        "norm": R / "data" / "final" / "norm.npz",
        "X_train": R / "data" / "final" / "X_train.npy",
        "y_train": R / "data" / "final" / "y_train.npy",
    }

"""The study's cost table: GEMM flops of a run and the machine's GEMM rates (study/roofline.py, which
bench/bench_epoch.py's roofline shares), the stage grouping,
the roofline ratio, the report section, and the evaluation time a training run records."""
import json
import math
import time

import numpy as np
import pytest
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from handbackprop.nn.network import build_network
from handbackprop.nn.train import TrainConfig, train
from handbackprop.report import costs
from handbackprop.report.render import environment
from handbackprop.study import roofline
from handbackprop.study.runs import time_split

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------ flops
def tiny_metrics(**kw):
    """A finished run of a 6→4→3 network: 10 training rows in batches of 4, 5 steps, 3 val rows."""
    m = {"diverged": False, "n_train": 10, "n_val": 3, "steps": 5, "n_s": 5, "cycles": 1,
         "spec": {"hidden": [4], "batch_size": 4, "points_per_cycle": 10, "train_eval_size": 6},
         "train_config": {"batch_size": 4, "points_per_cycle": 10, "train_eval_size": 6},
         "dtype": "float32", "threads": 1}
    m.update(kw)
    return m


def test_flops_of_a_hand_computed_tiny_run():
    g = roofline.run_gemms(tiny_metrics(), input_dim=6, n_classes=3)
    # 5 steps of batches 4, 4, 2 | 4, 4: 18 rows. Per row: layer 1 forward + dW = 2·(2·6·4) = 96,
    # layer 2 forward + dW + dx = 3·(2·4·3) = 72.
    assert g["flops"]["train"] == 18 * (96 + 72)
    # record_steps(5, n_s=5, 10 per cycle): every step, 0..5 -> 6 records of min(10, 6) + 3 rows;
    # a forward pass is 2·6·4 + 2·4·3 = 72 flops a row.
    assert (g["records"], g["record_rows"]) == (6, 9)
    assert g["flops"]["record_eval"] == 6 * 9 * 72
    assert g["flops"]["end_eval"] == 10 * 72  # all training rows, no test rows
    with_test = roofline.run_gemms(tiny_metrics(test_accuracy=0.5, confusion=[[2, 1, 0], [0, 3, 0], [1, 0, 0]]),
                                input_dim=6, n_classes=3)
    assert with_test["flops"]["end_eval"] == (10 + 7) * 72
    assert g["flops"]["total"] == 18 * 168 + 6 * 9 * 72 + 10 * 72


def test_a_diverged_run_counts_its_steps_up_to_the_divergence():
    m = tiny_metrics(diverged=True, steps=None, divergence={"step": 2})
    g = roofline.run_gemms(m, input_dim=6, n_classes=3)
    assert g["steps"] == 3 and g["flops"]["train"] == (4 + 4 + 2) * 168
    assert g["records"] == 3 and g["flops"]["end_eval"] == 0  # records at steps 0, 1, 2


def test_the_default_config_keeps_record_point_evaluation_under_the_bound():
    """Issue 15: evaluation at record points costs at most 10 % of a run. Counted in GEMM flops
    (measured time shares are lower: the steps also pay for non-GEMM passes), for every kind of
    training run config.yaml asks for, on the real split sizes."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    shares = roofline.config_eval_shares(config)
    assert len(shares) >= len(config["final"]["models"])
    over = [(s["where"], round(s["share"], 3)) for s in shares if not s["share"] <= costs.EVAL_BOUND]
    assert not over, over
    # the same study with 10 records a cycle of 10,000 training rows would not be
    old = {**config, "training": {**config["training"], "train_eval_size": 10000, "points_per_cycle": 10}}
    assert max(s["share"] for s in roofline.config_eval_shares(old)) > costs.EVAL_BOUND


@pytest.mark.parametrize("hidden", [[], [50], [50, 30, 20]])
def test_step_gemms_count_what_torch_autograd_multiplies(hidden):
    """Our count of one step's GEMM flops equals torch's FlopCounterMode over the forward and
    backward of the same network (images that need no gradient: no dx for the first layer)."""
    rows = 7
    shapes = roofline.layer_shapes(hidden, input_dim=32, n_classes=10)
    layers = [torch.nn.Linear(i, o, dtype=torch.float64) for i, o in shapes]
    x = torch.randn(rows, 32, dtype=torch.float64)
    with FlopCounterMode(display=False) as fc:
        h = x
        for k, layer in enumerate(layers):
            h = layer(h)
            if k < len(layers) - 1:
                h = torch.relu(h)
        torch.nn.functional.cross_entropy(h, torch.zeros(rows, dtype=torch.long)).backward()
    assert sum(g["flops"] for g in roofline.step_gemms(shapes, rows)) == fc.get_total_flops()


BENCH_DIR = ROOT / "bench"


def torch_step_flops(shapes, rows):
    """torch's FlopCounterMode over the forward and backward of a ReLU network of these layers."""
    layers = [torch.nn.Linear(i, o, dtype=torch.float32) for i, o in shapes]
    with FlopCounterMode(display=False) as fc:
        h = torch.randn(rows, shapes[0][0], dtype=torch.float32)  # another test may change the default dtype
        for k, layer in enumerate(layers):
            h = layer(h)
            if k < len(layers) - 1:
                h = torch.relu(h)
        torch.nn.functional.cross_entropy(h, torch.zeros(rows, dtype=torch.long)).backward()
    return fc.get_total_flops()


def test_the_bench_roofline_times_the_study_flop_model(monkeypatch):
    """bench/bench_epoch.py's roofline times, per step of each bench model, exactly the GEMMs the
    study's flop model counts (the matmuls its epoch runs, recorded: shapes and flops, in order),
    and that model is pinned to torch autograd's own count: a change to either side alone fails."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    import bench_epoch

    for model, hidden in bench_epoch.MODELS.items():
        study = roofline.step_gemms(roofline.layer_shapes(hidden), bench_epoch.BATCH)
        assert bench_epoch.step_gemms(hidden) == study, model
        assert sum(g["flops"] for g in study) == torch_step_flops(roofline.layer_shapes(hidden), bench_epoch.BATCH)
        bench = bench_epoch.Roofline(hidden, "float32")
        timed, matmul = [], np.matmul
        monkeypatch.setattr(np, "matmul", lambda a, b, out: timed.append((a.shape, b.shape)) or matmul(a, b, out=out))
        bench.run_epoch([None])  # one step
        monkeypatch.setattr(np, "matmul", matmul)
        got = [(sorted((a[0], a[1], b[1])), 2 * a[0] * a[1] * b[1]) for a, b in timed]
        want = [(sorted((g["rows"], g["in"], g["out"])), g["flops"]) for g in study]
        assert got == want, model


def test_training_rows_follow_the_shuffle_stream():
    from handbackprop.nn.train import shuffle_stream

    stream = shuffle_stream(0, 10, 4)
    assert roofline.training_rows(10, 4, 7) == sum(len(next(stream)) for _ in range(7))


# ---------------------------------------------------------------------------- machine
def test_machine_gemm_json_shape():
    shapes = {"layers": [[3072, 10], [10, 10]], "batch_rows": [100], "dtype": "float32"}
    m = roofline.measure_machine_gemm(shapes, threads=(1,), eval_rows=200, log=lambda s: None)
    m = json.loads(json.dumps(m))  # what the rule writes
    assert m["threads"] == [1] and m["dtypes"] == ["float32", "float64"] and m["eval_rows"] == 200
    keys = {(r["threads"], r["dtype"], r["op"], r["in"], r["out"]) for r in m["gemms"]}
    want = {(1, d, op, i, o) for d in ("float32", "float64") for i, o in shapes["layers"]
            for op in ("forward", "dW", "dx", "eval") if not (op == "dx" and i == 3072)}
    assert keys == want and len(m["gemms"]) == len(want)  # no dx for the first layer
    for r in m["gemms"]:
        rows = 200 if r["op"] == "eval" else 100
        assert r["rows"] == rows and r["seconds"] > 0
        assert r["gflops"] == pytest.approx(2 * rows * r["in"] * r["out"] / r["seconds"] / 1e9)
    for d in ("float32", "float64"):
        assert m["peak_gflops"]["1"][d] == max(r["gflops"] for r in m["gemms"] if r["dtype"] == d)


def test_study_shapes_cover_every_training_run_of_the_config():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    s = roofline.study_shapes(config)
    assert [3072, 500] in s["layers"] and [500, 10] in s["layers"] and [3072, 10] in s["layers"]
    assert [20, 10] in s["layers"]  # deep9's
    assert s["batch_rows"] == [100] and s["layers"] == sorted(s["layers"])


def machine(rate_1, rate_2, shapes=((6, 4), (4, 3))):
    rows = [{"threads": t, "dtype": "float32", "op": op, "rows": 100, "in": i, "out": o, "gflops": r}
            for t, r in ((1, rate_1), (2, rate_2)) for i, o in shapes for op in ("forward", "dW", "dx", "eval")]
    return {"threads": [1, 2], "gemms": rows, "peak_gflops": {"1": {"float32": rate_1}, "2": {"float32": rate_2}}}


def test_roofline_seconds_and_the_best_rate_up_to_the_jobs_threads():
    m = tiny_metrics()
    flops = roofline.run_gemms(m, input_dim=6, n_classes=3)["flops"]["total"]
    # The run's shapes are 3072-wide by default: give the machine those.
    shapes = roofline.layer_shapes([4])
    total = roofline.run_gemms(m)["flops"]["total"]
    assert total != flops
    r1 = roofline.roofline_seconds(m, machine(2.0, 3.0, shapes))
    assert r1["total"] == pytest.approx(total / 2e9) and r1["unmeasured"] == 0  # 1 thread: 1-thread rate
    r2 = roofline.roofline_seconds({**m, "threads": 2}, machine(2.0, 3.0, shapes))
    assert r2["total"] == pytest.approx(total / 3e9)
    # 2 threads slower than 1 on these shapes: the job is held to the faster one
    assert roofline.roofline_seconds({**m, "threads": 2}, machine(4.0, 1.0, shapes))["total"] == pytest.approx(total / 4e9)
    # a shape nobody measured takes the peak rate, and says so
    other = roofline.roofline_seconds(m, machine(5.0, 5.0, shapes=((1, 1),)))
    assert other["total"] == pytest.approx(total / 5e9) and other["unmeasured"] > 0


# ----------------------------------------------------------------------------- stages
BENCH = {  # relative path: (s, cpu_time)
    "download.tsv": (2.0, 1.0), "preprocess_search.tsv": (3.0, 2.5),
    "gate_gradcheck.tsv": (4.0, 4.0), "gate_bug_table.tsv": (10.0, 9.0),
    "lr_range/mlp50.tsv": (7.0, 6.0),
    "search/mlp50/coarse/lam_1.00e-03_seed1.tsv": (20.0, 19.0),
    "search/mlp50/fine/lam_2.00e-03_seed1.tsv": (30.0, 29.0),
    "search/linear/coarse/lam_1.00e-03_seed1.tsv": (5.0, 5.0),
    "final/linear/seed1.tsv": (40.0, 70.0),
    "bonus/aug_vs_lambda/aug_lam_1.00e-03_seed1.tsv": (8.0, 8.0),
    "bonus/ablation/no_dropout_seed1.tsv": (50.0, 90.0),
    "bonus/init_sensitivity/bn_sigma_1e-01_seed1.tsv": (9.0, 9.0),
    "audit.tsv": (6.0, 6.0), "machine_gemm.tsv": (5.0, 9.0),
}


def write_bench(base, rel, s, cpu, end):
    p = base / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                 f"{s}\t0:00:00\t100.0\t1\t1\t1\t0\t0\t0\t{cpu}\n")
    import os
    os.utime(p, (end, end))
    return p


def test_stage_grouping_of_a_constructed_benchmark_list(tmp_path):
    base = tmp_path / "benchmarks"
    paths = [write_bench(base, rel, s, cpu, 1000.0 + 10 * i) for i, (rel, (s, cpu)) in enumerate(BENCH.items())]
    benches = [costs.read_benchmark(p, base) for p in paths]
    t = costs.cost_table(benches, [], search_models=["linear", "mlp50"])
    order = [r["stage"] for r in t["rows"]]
    assert order == ["data", "gates", "lr range", "search linear", "search mlp50", "finals", "bonus: ablation",
                     "bonus: aug vs λ", "bonus: init sensitivity", "report"]
    by = {r["stage"]: r for r in t["rows"]}
    assert (by["search mlp50"]["jobs"], by["search mlp50"]["wall_s"], by["search mlp50"]["cpu_s"]) == (2, 50.0, 48.0)
    assert (by["report"]["jobs"], by["report"]["wall_s"], by["report"]["cpu_s"]) == (2, 11.0, 15.0)
    assert by["gates"]["wall_s"] == 14.0 and by["data"]["jobs"] == 2
    assert t["total"]["jobs"] == len(BENCH) and t["total"]["wall_s"] == sum(s for s, _ in BENCH.values())
    assert t["total"]["cpu_s"] == sum(c for _, c in BENCH.values())
    # first start: download ends at 1000 after 2 s; last end: the init run at 1000 + 10·11 (the
    # audit and machine_gemm after it are the report stage's, which may run any time later)
    assert t["span_s"] == pytest.approx(1000.0 + 10 * 11 - (1000.0 - 2.0))
    late = costs.read_benchmark(write_bench(base, "machine_gemm.tsv", 5.0, 9.0, 99999.0), base)
    assert costs.cost_table([*benches[:-1], late], [])["span_s"] == t["span_s"]
    # a run file groups with its benchmark file: the same leading folders
    assert costs.stage_key("search/mlp50/coarse/lam_1.00e-03/seed1/metrics.json") == "search mlp50"
    assert costs.stage_key("bonus/aug_vs_lambda/aug/lam_1.00e-03/seed1/metrics.json") == "bonus: aug vs λ"
    assert costs.stage_key("final/bonus/seed2/metrics.json") == "finals"


def two_finals_and_a_gate(base):
    """Benchmarks of two final jobs (40 s and 60 s, ending at 2000) and a gate (5 s, ending at 1500),
    and the machine their runs are costed on."""
    paths = [write_bench(base, "final/linear/seed1.tsv", 40.0, 70.0, 2000.0),
             write_bench(base, "final/linear/seed2.tsv", 60.0, 100.0, 2000.0),
             write_bench(base, "gate_overfit.tsv", 5.0, 5.0, 1500.0)]
    return [costs.read_benchmark(p, base) for p in paths], machine(1.0, 1.0, roofline.layer_shapes([4]))


def final_runs(mach, **per_seed):
    """The two final runs, seed i with each key of `per_seed` set to its i-th value."""
    return [costs.run_costs({**tiny_metrics(), **{k: v[i - 1] for k, v in per_seed.items()}},
                            f"final/linear/seed{i}/metrics.json", mach) for i in (1, 2)]


def test_roofline_ratio_and_eval_bound_in_the_table(tmp_path):
    benches, mach = two_finals_and_a_gate(tmp_path / "benchmarks")
    runs = final_runs(mach, eval_fraction=(0.05, 0.25))
    t = costs.cost_table(benches, runs)
    fin = next(r for r in t["rows"] if r["stage"] == "finals")
    roof = 2 * roofline.roofline_seconds(tiny_metrics(), mach)["total"]
    assert fin["roofline_s"] == pytest.approx(roof)
    assert fin["ratio"] == pytest.approx(roof / 100.0)  # roofline over the finals' 40 + 60 s
    assert fin["eval_fraction_mean"] == pytest.approx(0.15) and fin["eval_fraction_max"] == 0.25
    assert fin["over_bound"] and t["total"]["over_bound"]
    gates = next(r for r in t["rows"] if r["stage"] == "gates")
    assert gates["ratio"] is None and not gates["over_bound"]
    assert t["total"]["ratio"] == pytest.approx(roof / 100.0)  # training jobs only: the gate is not in it
    ok = costs.cost_table(benches, [{**r, "eval_fraction": 0.05} for r in runs])
    assert not ok["total"]["over_bound"]


def test_time_outside_the_loops_and_the_elapsed_floor_on_the_cores(tmp_path):
    """Outside the loop = the stage's wall seconds less its runs' loop seconds; the elapsed floor
    = the roofline seconds over the cores, against first start to last end."""
    benches, mach = two_finals_and_a_gate(tmp_path / "benchmarks")  # the gate starts first (1500 - 5)
    runs = final_runs(mach, seconds=(30.0, 45.0))
    t = costs.cost_table(benches, runs, cores=2)
    fin = next(r for r in t["rows"] if r["stage"] == "finals")
    assert fin["loop_s"] == 75.0 and fin["outside_share"] == pytest.approx(25.0 / 100.0)
    assert next(r for r in t["rows"] if r["stage"] == "gates")["outside_share"] is None  # no runs
    assert t["total"]["outside_share"] == pytest.approx(0.25)  # training stages only
    roof = 2 * roofline.roofline_seconds(tiny_metrics(), mach)["total"]
    assert t["span_s"] == pytest.approx(2000.0 - 1495.0)
    assert t["total"]["elapsed_floor_s"] == pytest.approx(roof / 2)
    assert t["total"]["elapsed_ratio"] == pytest.approx(roof / 2 / 505.0)
    # a diverged run records no loop time: the stage cannot say, rather than say too much
    diverged = [runs[0], {**runs[1], "seconds": None}]
    assert next(r for r in costs.cost_table(benches, diverged)["rows"] if r["stage"] == "finals")["outside_share"] is None
    # without cores (a cluster executor) there is no floor to state
    assert costs.cost_table(benches, runs)["total"]["elapsed_ratio"] is None


# ----------------------------------------------------------------------------- report
def render_costs(table, md):
    env = environment(not md)
    tpl = env.from_string('{% include "sections/costs.j2" %}')
    return tpl.render(costs=table, fig={}, macros="macros/md.j2" if md else "macros/html.j2")


def test_the_report_section_renders_the_table(tmp_path):
    base = tmp_path / "benchmarks"
    paths = [write_bench(base, rel, s, cpu, 1000.0 + i) for i, (rel, (s, cpu)) in enumerate(BENCH.items())]
    mach = machine(1.0, 1.0, roofline.layer_shapes([4]))
    runs = [costs.run_costs({**tiny_metrics(), "eval_fraction": 0.125, "eval_seconds": 1.0, "seconds": 8.0},
                            "final/linear/seed1/metrics.json", mach)]
    table = costs.cost_table([costs.read_benchmark(p, base) for p in paths], runs, ["linear", "mlp50"])
    table["machine"] = {"peak_gflops": {"1": {"float32": 80.0, "float64": 40.0}}, "eval_rows": 1000, "n_gemms": 8}
    md = render_costs(table, md=True)
    html = render_costs(table, md=False)
    assert md == render_costs(table, md=True)  # no clock read: the same numbers, the same text
    assert "| search mlp50 | 2 | 50.0 | 48.0 |" in md
    assert "| lr range | 1 | 7.0 | 6.0 |" in md
    assert f"| all | {len(BENCH)} | {sum(s for s, _ in BENCH.values()):.1f} |" in md
    assert "12.5% / 12.5% **> 10%**" in md and "over the bound in finals" in md
    assert '<span class="bad">&gt; 10%</span>' in html and "search mlp50" in html
    assert "| 1 | 80.0 | 40.0 |" in md
    assert "from the first job's start to the last job's end" in md
    assert "Elapsed against the limit" not in md  # no cores given
    table = costs.cost_table([costs.read_benchmark(p, base) for p in paths], runs, ["linear", "mlp50"], cores=2)
    table["machine"] = {"peak_gflops": {"1": {"float32": 80.0, "float64": 40.0}}, "eval_rows": 1000, "n_gemms": 8}
    md = render_costs(table, md=True)
    assert "spread over the 2 cores the study ran on" in md
    assert f"{table['total']['elapsed_ratio'] * 100:.0f}% of its elapsed time is that floor" in md
    # the finals' one job took 40 s, its run's loop 8 s: 80 % outside the loop
    assert "| finals | 1 | 40.0 | 70.0 | 1 |" in md and "| 80% |" in md
    # the whole report lists the section when the context has a cost table
    from handbackprop.report.render import SECTIONS
    s = next(s for s in SECTIONS if s.id == "costs")
    assert s.shown({"costs": table}) and not s.shown({"costs": None})


# ------------------------------------------------------------------ evaluation time
def test_a_run_records_its_evaluation_time_apart_from_its_steps(monkeypatch):
    """eval_seconds is the time of the record-point evaluations: a slowed evaluate() shows up in
    it, and not in the rest of the loop."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 3072)).astype(np.float32), rng.integers(0, 10, 300)
    net = build_network(3072, [8], seed=0)
    delay = 0.02
    real = net.evaluate

    def slow(*a, **k):
        time.sleep(delay)
        return real(*a, **k)

    monkeypatch.setattr(net, "evaluate", slow)
    cfg = TrainConfig(lam=1e-3, cycles=1, batch_size=50, points_per_cycle=4)
    r = train(net, X[:250], y[:250], X[250:], y[250:], cfg, log=lambda s: None)
    calls = 2 * len(r.history)  # the training subset and the validation rows at every record
    assert r.eval_seconds >= calls * delay
    assert r.eval_seconds <= r.seconds
    split = time_split(r)
    assert split["eval_seconds"] + split["step_seconds"] == pytest.approx(r.seconds, abs=1e-12)
    assert 0.0 <= split["eval_fraction"] <= 1.0
    assert split["eval_fraction"] == pytest.approx(r.eval_seconds / r.seconds)
    assert split["step_seconds"] < r.seconds - calls * delay + 1e-9  # the sleeps are not step time


def test_metrics_carry_the_time_split(tmp_path):
    """runs.run writes eval_seconds, step_seconds and eval_fraction into a run's metrics."""
    from handbackprop.study import runs

    rng = np.random.default_rng(1)
    split = tmp_path / "split"
    split.mkdir()
    for part, n in (("train", 200), ("val", 50), ("test", 50)):
        np.save(split / f"X_{part}.npy", rng.normal(size=(n, 3072)).astype(np.float32))
        np.save(split / f"y_{part}.npy", rng.integers(0, 10, n))
    np.savez(split / "norm.npz", mean=np.zeros(3072), std=np.ones(3072))
    (split / "stats.json").write_text(json.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    spec = {"hidden": [8], "batch_size": 50, "points_per_cycle": 4, "train_eval_size": 100}
    _, _, m = runs.run(split, spec, 1e-3, 1, 1, "float32", True, log=lambda s: None)
    assert {"eval_seconds", "step_seconds", "eval_fraction"} <= set(m)
    assert 0.0 < m["eval_fraction"] <= 1.0
    assert m["eval_seconds"] + m["step_seconds"] == pytest.approx(m["seconds"])
    # timings are not figures the audit rescores from the weights (train_*/val_*/test_*)
    from handbackprop.audit.rescore import recorded_fields
    assert not set(recorded_fields(m)) & {"eval_seconds", "step_seconds", "eval_fraction"}
    assert math.isfinite(roofline.run_gemms(m)["flops"]["total"])

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

from conftest import REPO, planned_jobs, report_inputs, snakemake
from handbackprop.atomic import LOCK_NAME
from handbackprop.report.build import build_report
from handbackprop.report import figures as figmod
from handbackprop.report.build import lam, pct, pm, sci
from handbackprop.report.collect import PUBLISHED, collect_searches
from handbackprop.report.published import PUBLISHED_BY_MODEL, published_text
from handbackprop.report.render import environment, num
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
        if "snapshot_ensemble" in summ:
            se = summ["snapshot_ensemble"]
            assert f"{pm(se['test_accuracy_mean'], se['test_accuracy_std'])} ({se['members']} per seed)" in s
        # Each model's published figure sits in its own row, labelled published.
        if model in PUBLISHED_BY_MODEL:
            assert re.search(rf"{re.escape(model)} .*?{re.escape(acc)} .*?"
                             rf"{re.escape(published_text(PUBLISHED_BY_MODEL[model]))} published", s), model
    # The published figures, labelled as published and not mistaken for ours.
    assert "Published reference (not computed here)" in s
    assert PUBLISHED is PUBLISHED_BY_MODEL  # one place for the typed-in figures
    for text in ("39.30%", "49.77% (λ = 1.07e-03)", "51.30–51.80%", "53.60–53.80% (53.76% at λ = 5.00e-03)",
                 "50.83%", "46.35%"):
        assert text in s, text
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
        test = "withheld" if st.get("test_withheld") else st["n_test"]
        assert f"{split} {st['n_train']} {st['n_val']} {test}" in d
        for part, counts in st["class_counts"].items():
            row = f"{split} / {part} " + " ".join(map(str, counts))
            # a withheld part has no counts and no row (an empty row is a rendering slip)
            assert (row in d) == bool(counts), (row, counts)
    assert read(quick_results / "data" / "search" / "stats.json")["test_withheld"]
    assert " ".join(read(quick_results / "data" / "final" / "stats.json")["label_names"]) in d


def test_gates_section(quick_results, sec):
    g = sec["gates"]
    gc = read(quick_results / "gates" / "gradcheck.json")
    for v in gc["variants"]:
        for name, f in v["params"].items():
            assert (f"{v['variant']} {name} {'×'.join(map(str, f['shape']))} {sci(f['max_rel'])} "
                    f"{sci(f['norm_rel'])} {sci(f['fd_norm_rel'])} {sci(f['exact_ours_err'])} "
                    f"{sci(f['exact_torch_err'])} {num(f['exact_ratio'], 3)} pass") in g
        assert f"{v['variant']} {v['cost']:.10f} {v['torch_cost']:.10f} {sci(v['cost_rel'])}" in g
    t = gc["thresholds"]
    assert f"thresholds {sci(t['max_rel'], 0)} {sci(t['norm_rel'], 0)} {sci(t['fd_norm_rel'], 0)}" in g
    for v in read(quick_results / "gates" / "overfit.json")["variants"]:
        assert f"{v['variant']} {v['n_images']} {v['steps']} {v['initial_cost']:.4g} {v['ln10']:.4g}" in g
        assert sci(v["final_loss"]) in g
    tr = read(quick_results / "gates" / "trajectory.json")
    for v in tr["variants"]:
        tol = tr["float32_tolerance"] if v["dtype"] == "float32" else tr["tolerance"]
        assert re.search(rf"{re.escape(v['variant'])} {v['dtype']} {v['optimizer']} .*?{v['steps']} "
                         rf"{re.escape(sci(v['max_cost_rel']))} .*?{re.escape(sci(tol, 0))} pass", g), v["variant"]
    bugs = read(quick_results / "gates" / "bug_table.json")
    columns = [c for c in bugs["settings"] if all(c in r for r in bugs["rows"])]
    assert set(columns) == {"gradcheck", "overfit", "trajectory", "stacked"}
    st = read(quick_results / "gates" / "stacked.json")
    for v in st["variants"]:  # the stacked gate's rows, each with the verdict the gate recorded
        figures = re.escape(f"{v['steps']} {v['max_cost_rel']:.2e} {v['max_weight_rel']:.2e}")
        assert re.search(rf"{re.escape(v['variant'])} {v['dtype']} .*? {figures} .*? "
                         rf"{'pass' if v['passed'] else 'FAIL'}", g), v["variant"]
    for r in bugs["rows"]:
        caught = ", ".join(r["caught_by"]) if r["caught_by"] else "—"
        calls = r["planted_calls"] if r["planted_calls"] is not None else "–"
        cells = " ".join(r[c] for c in columns)  # a gate's column, in the table's settings order
        assert re.search(rf"{re.escape(r['bug'])} .*? {cells} "
                         rf"{calls} {'yes' if r['planted'] else 'NOT planted'} {re.escape(caught)}", g), r["bug"]
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
        fit = fine["surface"]
        interval = (f" ({100 * fit['level']:.0f}% interval {lam(fit['interval_lam'][0])} to "
                    f"{lam(fit['interval_lam'][1])})" if fit["interval_lam"] else " (no interval)")
        assert f"{model}: chosen λ = {lam(fit['lam'])}{interval}" in s
        assert text_of(htmllib.escape(fit["sentence"])) in s
        assert fine["final_lam"] == fit["lam"] and fine["chose_on"]["field"] == "val_accuracy"
        b = fine["best"]  # the best mean, shown beside the choice
        spread = (f" ± {100 * b['val_accuracy_std']:.2f} over {b['n']} seeds" if b["val_accuracy_std"] is not None
                  else f", {b['n']} seed")
        assert (f"Best mean of the fine search, for comparison: λ = {lam(b['lam'])} (validation accuracy "
                f"{pct(b['val_accuracy'])}{spread})") in s
        for stage in ("coarse", "fine"):
            t = read(quick_results / "search" / model / f"{stage}.json")
            for r in t["rows"]:
                assert f"{lam(r['lam'])} {r['log10_lam']:.3f} {pct(r['val_accuracy'])}" in s
        # The final runs used that lambda: the fit's choice, not the best mean.
        assert read(quick_results / "final" / model / "summary.json")["lam"] == fine["final_lam"] \
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
    build_report(report_inputs(quick_results, cfg), cfg, out / "report.html", out / "report.md", quick_results,
                 log=lambda *a: None)
    page = (out / "report.html").read_text()
    assert "bonus" not in sections(page) and "## Bonus experiments" not in (out / "report.md").read_text()
    assert "summary" in sections(page)


# ------------------------------------------------------------------------------ new outputs
@pytest.fixture
def drawn(monkeypatch):
    """Figure functions return their matplotlib figure (via a list) instead of a PNG, so a test
    can compare what is drawn with the JSON it comes from."""
    import matplotlib.pyplot as plt

    figs = []
    monkeypatch.setattr(figmod, "to_uri", lambda fig: figs.append(fig) or "data:image/png;base64,")
    yield figs
    for f in figs:
        plt.close(f)


def _close(a, b, rel=1e-9):
    return len(a) == len(b) and all(abs(x - y) <= rel * max(1.0, abs(y)) for x, y in zip(a, b))


def test_gradcheck_exact_gradient_headline(quick_results, sec, md, drawn):
    gc = read(quick_results / "gates" / "gradcheck.json")
    params = [(v["variant"], k, f) for v in gc["variants"] for k, f in v["params"].items()]
    variant, param, worst = max(params, key=lambda t: t[2]["exact_ratio"])
    goal = gc["thresholds"]["exact_ratio"]
    assert worst["exact_ratio"] <= goal
    headline = (f"As close to the exact gradient as autograd: over all {len(params)} parameters of "
                f"{len(gc['variants'])} variants, our float64 gradient's error against the long-double gradient is "
                f"at most {num(worst['exact_ratio'], 3)}× torch autograd's (worst: {variant} {param};")
    assert headline in sec["gates"] and headline.replace("As close", "**As close").replace(
        "autograd:", "autograd:**") in md
    assert f"goal ≤ {goal}: met" in sec["gates"]
    assert (f"as close to the exact gradient as autograd — our error against the long-double gradient is at most "
            f"{num(worst['exact_ratio'], 3)}× torch's (goal ≤ {goal})") in sec["summary"]
    ld = gc["longdouble"]
    assert f"({ld['dtype']}, {ld['mantissa_bits'] + 1}-bit mantissa" in sec["gates"] and ld["note"] in sec["gates"]
    # The batch-norm variants and their γ/β rows are there.
    bn = [v["variant"] for v in gc["variants"] if v.get("batch_norm")]
    assert bn and f"Batch-norm variants: {', '.join(bn)}" in sec["gates"]
    assert any(k.startswith("gamma") for v in gc["variants"] if v.get("batch_norm") for k in v["params"])
    # The figure: one point per parameter at (ours, torch), one ratio per parameter, the goal line.
    ctx = {"gradcheck": [{"variant": v, "param": k, "exact_ours_err": f["exact_ours_err"],
                          "exact_torch_err": f["exact_torch_err"], "exact_ratio": f["exact_ratio"]}
                         for v, k, f in params], "thresholds": gc["thresholds"]}
    figmod.gradcheck_exact(ctx)
    scatter, ratios = drawn[0].axes[:2]
    pts = sorted((x, y) for ln in scatter.lines if ln.get_linestyle() == "None"
                 for x, y in zip(ln.get_xdata(), ln.get_ydata()))
    assert pts == sorted((f["exact_ours_err"], f["exact_torch_err"]) for _, _, f in params)
    got = sorted(y for ln in ratios.lines if ln.get_linestyle() == "None" for y in ln.get_ydata())
    assert got == sorted(f["exact_ratio"] for _, _, f in params)
    assert goal in [ln.get_ydata()[0] for ln in ratios.lines if ln.get_linestyle() == "--"]


def test_trajectory_figure_draws_each_variant_against_its_own_tolerance(quick_results, sec, drawn):
    tr = read(quick_results / "gates" / "trajectory.json")
    tols = {v["variant"]: v["tolerance"] for v in tr["variants"]}  # each variant records its own
    assert {tols[v["variant"]] for v in tr["variants"] if v["dtype"] == "float32"} == {tr["float32_tolerance"]}
    assert {tols[v["variant"]] for v in tr["variants"] if v["dtype"] == "float64"} == {tr["tolerance"]}
    gates = {"trajectory": [{**v, "tolerance": tols[v["variant"]]} for v in tr["variants"]]}
    figmod.trajectory(gates)
    axes = drawn[0].axes
    assert len(axes) == 1 + len(set(tols.values()))
    for ax in axes[1:]:
        limits = [ln.get_ydata()[0] for ln in ax.lines if ln.get_label().startswith("tolerance")]
        assert len(limits) == 1
        drawn_variants = {ln.get_label() for ln in ax.lines if not ln.get_label().startswith("tolerance")}
        assert drawn_variants == {k for k, t in tols.items() if t == limits[0]}
        for ln in ax.lines:
            if ln.get_label() in drawn_variants:
                v = next(v for v in tr["variants"] if v["variant"] == ln.get_label())
                c, t = v["costs"], v["torch_costs"]
                rel = [max(abs(a - b) / abs(b), limits[0] * 1e-8) for a, b in zip(c, t)]
                assert _close(list(ln.get_ydata()), rel) and max(rel) <= limits[0]
    g = sec["gates"]
    for v in tr["variants"]:
        if v["batch_norm"]:
            st, ev = v["state_norm_rel"], v["evaluation"]
            assert (f"{v['variant']} {v['optimizer']} " + ", ".join(f"{k} {sci(x)}" for k, x in st.items())
                    + f" {sci(ev['torch_eval']['prob_norm_rel'])} {sci(ev['torch_eval']['prob_max_abs'])} "
                    f"{ev['n_rows']}") in g
            continue  # a batch-norm variant's evaluation is the batch-norm table's
        assert v["state_norm_rel"] == {}  # one schema: a plain variant has no running statistics
        for key, against in (("forward", "plain forward pass"), ("torch_eval", "torch eval()")):
            if (v["evaluation"] or {}).get(key):
                e = v["evaluation"][key]
                assert (f"{v['variant']} {v['dtype']} {against} {v['evaluation']['n_rows']} {num(e['loss'], 10)} "
                        f"{num(e['ref_loss'], 10)} {sci(e['loss_rel'])} {pct(e['accuracy'])}") in g
    for dtype, e in tr["ensembles"].items():
        pairs = e["identical_pairs"]
        assert (f"{dtype} {e['members']} {e['n_rows']} {num(e['vs_torch']['loss'], 10)} "
                f"{num(e['vs_torch']['ref_loss'], 10)} {sci(e['vs_torch']['loss_rel'])}") in g
        assert (f"{len(pairs)} {sci(max(p['loss_rel'] for p in pairs))} "
                f"{sum(p['differing_predictions'] for p in pairs)}") in g


def test_overfit_init_scale_and_bug_cells(quick_results, sec):
    g = sec["gates"]
    for v in read(quick_results / "gates" / "overfit.json")["variants"]:
        for k, f in v["init_scale"].items():
            if "empirical_std" in f:
                assert (f"{v['variant']} {k} {f['n']} std {f['documented_std']:.4g} std {f['empirical_std']:.4g} "
                        f"{num(f['ratio'])} {num(f['allowed_factor'], 3)} pass") in g
            else:
                assert re.search(rf"{v['variant']} {k} {f['n']} exactly [01] max \|p", g), k
    bugs = read(quick_results / "gates" / "bug_table.json")
    planted = bugs["rows"][1:]
    assert {c for r in bugs["rows"] for c in (r["gradcheck"], r["overfit"], r["trajectory"])} <= {
        "caught", "passed", "not run"}
    n_bn = sum(r["bug"].startswith("bn_") for r in planted)
    assert f"{len(planted)} planted bugs ({n_bn} in batch norm)" in g
    for gate in ("gradcheck", "overfit", "trajectory"):
        counts = [sum(r[gate] == c for r in planted) for c in ("caught", "passed", "not run")]
        assert f"{gate} caught {counts[0]}, passed {counts[1]}, not run {counts[2]}" in g


def test_search_replicates_error_bars_band_and_diverged(quick_results, sec, run_config, drawn):
    s = sec["searches"]
    for model in run_config["search"]["models"]:
        for stage in ("coarse", "fine"):
            t = read(quick_results / "search" / model / f"{stage}.json")
            for r in t["rows"]:
                acc = pm(r["val_accuracy"], r["val_accuracy_std"]) if r["val_accuracy_std"] is not None \
                    else pct(r["val_accuracy"])
                per_seed = ", ".join(pct(a) for a in r["val_accuracy_per_seed"])
                assert (f"{lam(r['lam'])} {r['log10_lam']:.3f} {acc} {pct(r['val_accuracy_se'])} {per_seed} "
                        f"{r['n']} {r['n_diverged']} {'yes' if r['indistinguishable'] else 'no'}") in s
        fine = read(quick_results / "search" / model / "fine.json")
        assert (f"Indistinguishable from the best (fine search): λ = "
                f"{', '.join(lam(x) for x in fine['indistinguishable'])}. Rule: {fine['se_rule']}.") in s
    # mlp50 has seed replicates: its figure's error bars are the per-λ std, its band the
    # indistinguishable λ; one λ planted as diverged is drawn as × on the axis, not as an accuracy.
    (entry,) = collect_searches([quick_results / "search" / "mlp50" / f"{s}.json" for s in ("coarse", "fine")])
    coarse = entry["coarse"]
    assert len(coarse["seeds"]) > 1
    gone = coarse["rows"][0]
    gone.update(diverged=True, n=0, n_diverged=len(coarse["seeds"]), val_accuracy=None, val_accuracy_std=None,
                val_accuracy_se=None, val_accuracy_per_seed=[], indistinguishable=False)
    figmod.search(entry)
    ax = drawn[0].axes[0]
    (bars_coarse, bars_fine) = ax.containers[:2]
    for bars, rows in ((bars_coarse, coarse["rows"][1:]), (bars_fine, entry["fine"]["rows"])):
        line, _, (segments,) = bars
        assert _close(list(line.get_ydata()), [100 * r["val_accuracy"] for r in rows])
        spans = [seg[1][1] - seg[0][1] for seg in segments.get_segments()]
        assert _close(spans, [200 * r["val_accuracy_std"] for r in rows])
    crosses = [ln for ln in ax.lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [gone["lam"]]
    assert "diverged (no accuracy)" in crosses[0].get_label()
    # The fine fit: its curve, its flat band and the chosen λ's interval as shaded spans, the star
    # at the chosen λ on the fitted accuracy.
    fit = entry["fine"]["surface"]
    spans = {p.get_label(): p.get_path().get_extents() for p in ax.patches}
    for label, (lo, hi) in (("fine: same accuracy as the fit's best within noise", fit["band_lam"]),
                            (f"{100 * fit['level']:g}% interval of the chosen λ", fit["interval_lam"])):
        if lo is not None:
            assert spans[label].x0 <= lo * (1 + 1e-9) and hi * (1 - 1e-9) <= spans[label].x1, label
    (curve,) = [ln for ln in ax.lines if ln.get_label().startswith("fine: quadratic fit")]
    from math import log10  # here, not among the module's imports another change is editing

    a, b, c = fit["coeffs"]
    xs = [log10(v) for v in curve.get_xdata()]
    assert _close(list(curve.get_ydata()), [100 * (a * x * x + b * x + c) for x in xs], rel=1e-6)
    (star,) = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert _close(list(star.get_xdata()), [fit["lam"]]) and _close(list(star.get_ydata()), [100 * fit["fitted_accuracy"]])
    # The table says diverged, with no accuracy.
    html = environment(True).get_template("sections/searches.j2").render(
        searches=[entry], fig={"search": {"mlp50": "data:"}}, macros="macros/html.j2", pm=pm)
    assert re.search(rf"{re.escape(lam(gone['lam']))} {gone['log10_lam']:.3f} diverged – – 0 "
                     rf"{len(coarse['seeds'])} –", text_of(html))


def test_headline_interval_and_its_sources_in_final_section(quick_results, sec, run_config):
    f = sec["final"]
    for model in run_config["final"]["models"]:
        h = read(quick_results / "final" / model / "summary.json")["headline"]
        assert f"Headline: {h['text']}. Covers:" in f
        for line in h["covers"] + h["does_not_cover"]:
            assert text_of(htmllib.escape(line)) in f, line
        if h["half_width"] is not None:
            assert (f"{model} {pct(h['mean'])} {pct(h['low'])} to {pct(h['high'])} {100 * h['half_width']:.2f} "
                    f"{' + '.join(h['components'])}") in f
        if h["lam_model"] != model:  # deep9_nobn: deep9's λ, and the report says whose surface
            assert f"its λ is {h['lam_model']}'s" in f


def test_snapshot_ensembles_in_final_section(quick_results, sec, run_config):
    f = sec["final"]
    for model in run_config["final"]["models"]:
        summ = read(quick_results / "final" / model / "summary.json")
        se = summ["snapshot_ensemble"]
        for r in se["per_seed"]:
            assert f"snapshot ensemble, seed {r['seed']} {r['members']} {pct(r['test_accuracy'])}" in f
        assert (f"snapshot ensemble, mean ± std over seeds {se['members']} "
                f"{pm(se['test_accuracy_mean'], se['test_accuracy_std'])}") in f
        if "ensemble" in summ:
            assert (f"seed ensemble (all seeds' final networks) {summ['ensemble']['members']} "
                    f"{pct(summ['ensemble']['test_accuracy'])}") in f
        if summ["spec"].get("lam_from"):
            assert f"(the searched λ of {summ['spec']['lam_from']})" in f
        if model in PUBLISHED_BY_MODEL:
            assert f"Published (not computed here): {PUBLISHED_BY_MODEL[model]['network']} " \
                   f"{published_text(PUBLISHED_BY_MODEL[model])}." in f


def test_aug_vs_lambda_interval(quick_results, sec, drawn):
    av = read(quick_results / "bonus" / "aug_vs_lambda.json")
    sh = av["shift"]
    b = sec["bonus"]
    assert (f"mean {sh['mean_shift_log10']:+.2f}, {100 * sh['ci_level']:.0f}% interval {sh['ci_low']:+.2f} to "
            f"{sh['ci_high']:+.2f} ({sh['ci_method']}, {sh['n_seeds']} seeds)") in b
    for label, per_seed in av["fits"].items():
        for seed, fit in per_seed.items():
            assert f"{label} {seed} {fit['log10_lam']:.2f} {fit['argmax_log10_lam']:.2f} {fit['method']}" in b
    from handbackprop.report.collect import collect_aug_vs_lambda
    figmod.aug_vs_lambda(collect_aug_vs_lambda(av, {}))
    curves, shift = drawn[0].axes
    (bar,) = [c for c in shift.containers]
    line, _, (seg,) = bar
    (lo, hi), = [(s[0][1], s[1][1]) for s in seg.get_segments()]
    assert _close([lo, hi, line.get_ydata()[0]], [sh["ci_low"], sh["ci_high"], sh["mean_shift_log10"]])
    for aug, container in zip((False, True), curves.containers):
        rows = [r for r in av["rows"] if r["augmentation"] == aug and not r["diverged"]]
        lams = sorted({r["lam"] for r in rows})
        means = [100 * sum(r["val_accuracy"] for r in rows if r["lam"] == x) /
                 sum(1 for r in rows if r["lam"] == x) for x in lams]
        assert _close(list(container[0].get_ydata()), means)


def test_init_sensitivity_table_statement_and_curves(quick_results, sec, run_config, drawn):
    ins = read(quick_results / "bonus" / "init_sensitivity.json")
    b = sec["bonus"]
    assert text_of(htmllib.escape(ins["statement"])) in b
    for r in ins["rows"]:
        acc = pm(r["test_accuracy_mean"], r["test_accuracy_std"]) if r["test_accuracy_mean"] is not None \
            else "diverged"
        assert (f"{'with' if r['batch_norm'] else 'without'} {sci(r['sigma'], 0)} {r['seeds']} {r['diverged']} {acc} "
                f"{num(r['train_loss_mean'])}") in b
    from handbackprop.report.collect import collect_init_sensitivity
    ctx = collect_init_sensitivity(ins, run_config["bonus"]["init_sensitivity"],
                                   report_inputs(quick_results, run_config)["init_histories"])
    figmod.init_sensitivity(ctx)
    axes = drawn[0].axes  # rows: with / without batch norm; columns: loss / accuracy
    assert len(axes) == 4
    for i, bn in enumerate((True, False)):
        rows = [r for r in ins["rows"] if r["batch_norm"] == bn]
        for k, key, scale in ((0, "train_loss", 1.0), (1, "val_accuracy", 100.0)):
            ax = axes[2 * i + k]
            curves = [ln for ln in ax.lines if ln.get_marker() != "x"]
            assert len(curves) == sum(len(r["histories"]) for r in rows)
            for ln, (r, h) in zip(curves, [(r, h) for r in rows for h in r["histories"]]):
                assert f"σ = {r['sigma']:.0e}" in ln.get_label()
                lines = (quick_results / h).read_text().splitlines()  # relative to the results folder
                col = lines[0].split(",").index(key)
                assert _close(list(ln.get_ydata()), [scale * float(x.split(",")[col]) for x in lines[1:]])


# ------------------------------------------------------------------------------ audit
def test_audit_rescored_every_run_of_every_kind_and_the_report_says_so(quick_results, sec, md):
    a = read(quick_results / "report" / "audit.json")
    runs = sorted(quick_results.glob("*/**/metrics.json"))
    mc = a["metrics"]
    assert a["passed"] and mc["all_match"] and not mc["failures"]
    # The quick profile rescores every run (report.audit_sample: null), of all four kinds.
    diverged = [p for p in runs if read(p).get("diverged")]
    assert mc["n_runs"] == len(runs) and mc["n_checked"] == len(runs) - len(diverged) == len(mc["checked"])
    assert sorted(mc["diverged"]) == sorted(str(p.parent.relative_to(quick_results)) for p in diverged)

    def trained(pattern):
        return len([p for p in quick_results.glob(pattern) if not read(p).get("diverged")])
    expected = {"search": trained("search/**/metrics.json"), "final": trained("final/**/metrics.json"),
                "ablation": trained("bonus/ablation/**/metrics.json"),
                "recipe": trained("bonus/recipe/**/metrics.json"),
                "aug": trained("bonus/aug_vs_lambda/**/metrics.json"),
                "init": trained("bonus/init_sensitivity/**/metrics.json")}
    assert {k["kind"]: k["checked"] for k in mc["by_kind"]} == {k: n for k, n in expected.items() if n}
    assert all(r["ok"] and r["fields"] for r in mc["checked"])
    skipped = f"; {len(diverged)} diverged run(s) not rescored" if diverged else ""
    sentence = (f"{mc['n_checked']} of {mc['n_runs']} training runs rechecked "
                f"({', '.join(str(k['checked']) + ' ' + k['kind'] for k in mc['by_kind'])}{skipped}): all "
                f"{mc['n_figures']} train/val/test figures in their metrics.json matched the rescored saved weights "
                "exactly")
    assert sentence in sec["summary"] and sentence in sec["audit"] and sentence in md
    if diverged:
        assert f"{len(diverged)} of {len(runs)} runs diverged" in sec["audit"]
        for d in mc["diverged"]:
            assert d in sec["audit"]
    else:
        assert f"No run diverged: every one of the {len(runs)} runs trained to the end." in sec["audit"]
    assert f"The audit recomputed η for all {len(runs) - len(diverged)} training runs" in sec["schedule"]
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
def test_rerunning_only_the_report_reruns_nothing_else(quick_run):
    # The report is regenerated from the same outputs, so the run is left as it was.
    work = quick_run
    results = work / "results" / "quick"
    report = results / "report" / "report.html"
    before = report.stat().st_mtime_ns
    upstream = {p: p.stat().st_mtime_ns for p in results.glob("**/*")
                if p.is_file() and not {"report", "logs"} & set(p.relative_to(results).parts)
                and p.name != LOCK_NAME}  # the results folder's lock names its current holder
    # Precondition: the finished run is up to date, the report included (its params are stable).
    assert planned_jobs(snakemake(work, "--dry-run")) == {}
    proc = snakemake(work, "--forcerun", "report", "--until", "report")
    log = proc.stdout + proc.stderr
    ran = set(re.findall(r"^\s*(?:local)?rule (\w+):", log, re.M))
    assert ran == {"report"}, log[-3000:]
    assert report.stat().st_mtime_ns > before
    assert {p: p.stat().st_mtime_ns for p in upstream} == upstream


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


def test_lr_range_section_table_and_curves(quick_results, sec, md, run_config, drawn):
    from handbackprop.report.collect import collect_lr_range
    from handbackprop.study import plan

    s = sec["lr_range"]
    assert "## Learning-rate range tests" in md
    inputs = report_inputs(quick_results, run_config)
    tests = collect_lr_range(inputs["lr_range"], [read(p) for p in inputs["runs"]])
    assert [t["model"] for t in tests] == plan.range_models(run_config)
    for t in tests:
        rt = read(quick_results / "lr_range" / f"{t['model']}.json")
        b = rt["bounds"]
        spec = plan.model_spec(run_config, t["model"])
        fixed = "eta_max" in run_config["models"][t["model"]]
        row = (f"{t['model']} {'fixed in config' if fixed else 'range test'} {sci(b['eta_min'])} "
               f"{sci(b['eta_max'])} {sci(b['peak_eta'])} {pct(b['peak_accuracy'])} "
               f"{sci(spec['eta_min']) if fixed else '–'} {sci(spec['eta_max']) if fixed else '–'} "
               f"{'yes: ' + b['edge'] + ' end of the range' if b['peak_at_edge'] else 'no'}")
        assert row in s, row
        assert (f"| {t['model']} | {'fixed in config' if fixed else 'range test'} | {sci(b['eta_min'])} | "
                f"{sci(b['eta_max'])} | {sci(b['peak_eta'])} |") in md
        figmod.lr_range(t)
        loss_ax, acc_ax = drawn[-1].axes
        eta = [r["eta"] for r in rt["records"]]
        assert _close(list(acc_ax.lines[0].get_xdata()), eta)
        assert _close(list(acc_ax.lines[0].get_ydata()), [100 * r["val_accuracy"] for r in rt["records"]])
        assert _close(list(loss_ax.lines[1].get_ydata()), [r["loss_smoothed"] for r in rt["records"]])
        verticals = {round(float(ln.get_xdata()[0]), 15) for ln in acc_ax.lines[2:]}
        assert {round(b["peak_eta"], 15), round(b["eta_max"], 15), round(b["eta_min"], 15)} <= verticals
        assert acc_ax.get_xscale() == "log"


def test_arch_names_the_initialisation():
    from handbackprop.report.render import arch
    assert arch({"hidden": [10, 10], "init": "he"}) == "hidden 10-10, He init"
    assert arch({"hidden": [10], "batch_norm": True, "init": 1e-3}) == "hidden 10, batch norm, init σ 0.001"

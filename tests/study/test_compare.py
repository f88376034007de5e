"""Two studies compared figure by figure (handbackprop/study/compare.py), and the final summary's
headline interval with its covers / does-not-cover lists (tables.final_summary), on constructed
summaries and runs whose answer is known."""
import json
import math

import pytest
from scipy import stats

from handbackprop.study import compare, tables


def summary(model, accs, headline_se=None, df=None, lam=1e-3, lam_model=None):
    mean = sum(accs) / len(accs)
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0
    s = {"model": model, "test_accuracy": accs, "test_accuracy_mean": mean, "test_accuracy_std": std,
         "lam": lam}
    if headline_se is not None:
        s["headline"] = {"se": headline_se, "df": df, "components": {"final seeds": {}, "λ selection": {}},
                         "lam_model": lam_model or model}
    return s


def write(root, model, s, band=None):
    p = root / "final" / model / "summary.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(s))
    if band is not None:
        t = root / "search" / model / "fine.json"
        t.parent.mkdir(parents=True, exist_ok=True)
        t.write_text(json.dumps({"surface": {"band_lam": band}}))


def test_a_difference_within_the_stated_uncertainty_agrees_and_one_outside_does_not():
    a = summary("m", [0.50, 0.51, 0.52], headline_se=0.006, df=2)
    t = stats.t.ppf(0.975, 2)
    bound = t * math.sqrt(2) * 0.006
    near = summary("m", [x + 0.9 * bound for x in (0.50, 0.51, 0.52)], headline_se=0.006, df=2)
    far = summary("m", [x + 1.1 * bound for x in (0.50, 0.51, 0.52)], headline_se=0.006, df=2)
    r = compare.compare_summaries(a, near)
    assert r["bound"] == pytest.approx(bound) and r["agree"] is True
    assert r["difference"] == pytest.approx(0.9 * bound)
    assert compare.compare_summaries(a, far)["agree"] is False
    assert compare.compare_summaries(far, a)["agree"] is False  # symmetric


def test_a_summary_without_a_headline_falls_back_to_its_seeds_and_says_so():
    old = summary("m", [0.50, 0.52])
    u = compare.stated_uncertainty(old)
    assert u["se"] == pytest.approx(old["test_accuracy_std"] / math.sqrt(2)) and u["df"] == 1
    assert "seeds only" in u["what"]
    assert compare.stated_uncertainty(summary("m", [0.5]))["se"] is None
    r = compare.compare_summaries(summary("m", [0.5]), summary("m", [0.6]))
    assert r["agree"] is None and r["bound"] is None


def test_command_line_table_and_exit_codes(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "deep9", summary("deep9", [0.50, 0.51, 0.52], 0.006, 2), band=[1e-3, 1e-2])
    write(b, "deep9", summary("deep9", [0.505, 0.515, 0.525], 0.006, 2, lam=5e-3), band=[2e-3, 2e-2])
    write(a, "only_in_a", summary("only_in_a", [0.4, 0.41], 0.01, 1))
    assert compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "deep9" in out and "only_in_a" not in out
    assert "1 of 1 model(s) agree within their stated 95% uncertainty" in out
    (row,) = compare.compare_results(a, b)
    assert row["lam_b_in_band_a"] is True and row["lam_a_in_band_b"] is False  # 1e-3 < 2e-3
    # deep9_nobn-like: one model far apart makes the whole comparison fail
    write(a, "deep9_nobn", summary("deep9_nobn", [0.45, 0.455, 0.46], 0.003, 2))
    write(b, "deep9_nobn", summary("deep9_nobn", [0.505, 0.51, 0.515], 0.003, 2))
    out_json = tmp_path / "cmp.json"
    assert compare.main([str(a), str(b), "--json", str(out_json)]) == 1
    assert "outside it: deep9_nobn" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["exit_code"] == 1
    assert compare.main([str(a), str(tmp_path / "empty")]) == 2


# ------------------------------------------------------------------ the final summary's headline
def write_final_runs(tmp_path, accs, spec=None, confusion_total=1000):
    paths = []
    for seed, acc in enumerate(accs, 1):
        p = tmp_path / "final" / "m" / f"seed{seed}" / "metrics.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps({
            "lam": 1e-3, "seed": seed, "test_accuracy": acc, "seconds": 1.0, "cycles": 3,
            "code_hash": "abc", "eta_source": "config",
            "spec": spec or {"hidden": [50], "dropout": 0.0},
            "confusion": [[confusion_total // 2, 0], [0, confusion_total - confusion_total // 2]]}))
        paths.append(p)
    return paths


FINE = {"model": "m", "surface": {"method": "quadratic", "n_runs": 16, "n_lams": 8,
                                  "selection": {"rms_loss": 0.004, "mean_loss": -0.002, "df": 13,
                                                "replicates": 2000},
                                  "bootstrap": {"replicates": 2000}}}


def test_final_summary_headline_combines_seeds_and_selection(tmp_path):
    paths = write_final_runs(tmp_path, [0.50, 0.51, 0.52])
    s = tables.final_summary(paths, [], tmp_path, "m", ensemble=False, dtype="float32", fine_table=FINE)
    h = s["headline"]
    se = math.sqrt((0.01 / math.sqrt(3)) ** 2 + 0.004 ** 2)
    assert h["se"] == pytest.approx(se) and h["half_width"] == pytest.approx(stats.t.ppf(0.975, 2) * se)
    assert (h["low"], h["high"]) == pytest.approx((0.51 - h["half_width"], 0.51 + h["half_width"]))
    covers, gaps = " | ".join(h["covers"]), " | ".join(h["does_not_cover"])
    assert "weight initialisation, mini-batch order: the spread of the 3 final runs" in covers
    assert "the λ choice: 2000 residual-bootstrap refits of the m fine search's surface" in covers
    assert "dropout" not in covers  # this spec has none
    assert "coarse search's placement" in gaps and "BLAS kernel rounding" in gaps
    assert "every run scores the same 1000" in gaps
    assert "its λ is" not in gaps  # its own search
    assert h["text"] in s["text"] and "interval" in h["text"]
    json.dumps(s, allow_nan=False)


def test_final_summary_without_a_fine_table_covers_the_seeds_only(tmp_path):
    spec = {"hidden": [500], "dropout": 0.3, "flip": True}
    paths = write_final_runs(tmp_path, [0.50, 0.51, 0.52], spec=spec)
    h = tables.final_summary(paths, [], tmp_path, "m", ensemble=False, dtype="float32")["headline"]
    assert h["se"] == pytest.approx(0.01 / math.sqrt(3)) and h["missing"] == ["λ selection"]
    assert "dropout masks, augmentation draws" in h["covers"][0]
    assert any("no fine search table was given" in g for g in h["does_not_cover"])


def test_a_borrowed_lambda_says_whose_surface_measured_the_selection(tmp_path):
    paths = write_final_runs(tmp_path, [0.45, 0.46, 0.50])
    h = tables.final_summary(paths, [], tmp_path, "m_nobn", ensemble=False, dtype="float32",
                             fine_table=FINE)["headline"]
    assert h["lam_model"] == "m"
    assert any("how m_nobn's own accuracy depends on λ: its λ is m's" in g for g in h["does_not_cover"])


def test_an_interval_past_0_or_100_percent_is_clipped_and_says_so(tmp_path):
    paths = write_final_runs(tmp_path, [0.05, 0.15])  # 2 seeds: t with df 1 is 12.7
    h = tables.final_summary(paths, [], tmp_path, "m", ensemble=False, dtype="float32")["headline"]
    assert h["clipped"] and h["low"] == 0.0 and h["high"] < 1.0
    assert h["half_width"] == pytest.approx(stats.t.ppf(0.975, 1) * 0.05)  # unclipped half-width
    assert "clipped to 0–100%" in h["text"]

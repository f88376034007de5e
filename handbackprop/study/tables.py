"""Tables that aggregate many training runs: searches, final runs, ablation, augmentation vs λ."""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from ..data.splits import load_split
from ..nn.network import Network, network_from_arrays
from ..nn.train import ensemble_metrics
from ..runfiles import load_snapshots, load_weights, read_runs
from . import replicates, shift, surface
from .grids import best_row, fine_exponents, lam_labels
from .runs import confusion_matrix

ROW_KEYS = ("lam", "log10_lam", "seed", "val_accuracy", "val_cost", "val_loss",
            "train_accuracy", "train_cost", "train_loss", "seconds")


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


# What every search table chooses on: the search split's validation rows, by validation accuracy.
CHOSE_ON = {"split": "search", "part": "val", "field": "val_accuracy"}
# The coarse grid spans decades and a quadratic holds only near a peak: the coarse fit uses the
# COARSE_FIT_POINTS λ around the best mean; the fine grid spans about one coarse step each side
# of the coarse choice, so the fine fit uses all of it.
COARSE_FIT_POINTS = 5


def surface_seed(model: str, stage: str) -> int:
    """The bootstrap's RNG seed, from the table's identity (not from the accuracies, whose last
    digits differ between machines): the same runs give the same interval."""
    return zlib.crc32(f"{model}/{stage}".encode())


def search_table(paths, stage: str, model: str, fine: dict | None = None) -> dict:
    """One search's rows, one per λ over its seeds (sorted by λ), its best mean, and the λ chosen
    from a fit of the validation surface over every run; what the next stage trains at.

    `best` is the highest mean validation accuracy over its trained seeds (ties: the lower mean
    validation cost); every λ the seed noise cannot tell apart from it is marked
    `indistinguishable` (replicates.SE_RULE). `runs` keeps every run as its own row. The choice
    itself is `surface` (study/surface.py: a quadratic fit of validation accuracy on log10 λ
    over every trained run, its chosen λ, the bootstrap interval, the flat band and a sentence),
    because the argmax of 2-seed means follows the noise where the surface is flat. The coarse
    table writes the fine grid centred on the surface's choice (`fine`: n, half_width, l_min,
    l_max), the fine table the λ of the final runs (`final_lam`, that choice), so every later
    job reads a plain value.
    """
    runs = []
    for p, m in zip(paths, read_runs(paths)):
        run = {k: m.get(k) for k in ROW_KEYS}
        run["run"] = str(Path(*Path(p).parent.parts[-2:]))
        run["diverged"] = bool(m.get("diverged"))
        if run["diverged"]:
            d = m["divergence"]
            run.update(diverged_step=d["step"], diverged_eta=d["eta"], advice=d["advice"])
        runs.append(run)
    runs.sort(key=lambda r: (r["lam"], r["seed"]))
    rows = replicates.lam_rows(runs)
    best = best_row(rows)
    fit = surface.fit_surface(
        [r["log10_lam"] for r in runs], [None if r["diverged"] else r["val_accuracy"] for r in runs],
        grid=[r["log10_lam"] for r in rows], fit_points=COARSE_FIT_POINTS if fine is not None else None,
        seed=surface_seed(model, stage), fallback_log10=best["log10_lam"],
        label=f"{stage} search of {model}")
    if fit["method"] == "best mean":  # too few λ to fit: the best row's own λ, exactly
        fit.update(lam=float(best["lam"]), log10_lam=float(best["log10_lam"]))
    table = {"stage": stage, "model": model, "seeds": sorted({r["seed"] for r in runs}),
             "rows": rows, "runs": runs, "best": best,
             "indistinguishable": replicates.mark_indistinguishable(rows, best),
             "se_rule": replicates.SE_RULE, "chose_on": dict(CHOSE_ON), "surface": fit}
    if fine is not None:
        exps = fine_exponents(rows, fine["n"], fine["half_width"], fine["l_min"], fine["l_max"],
                              centre=fit["log10_lam"])
        table["fine_grid"] = lam_labels([10.0 ** e for e in exps])
    else:
        table["final_lam"] = float(fit["lam"])
    return table


def network_of(arrays: dict, spec: dict, dtype: str) -> Network:
    """A trained network from its saved arrays (sizes, batch norm and running statistics from
    the arrays; dropout from the spec); a user model's (spec `module`) through its module."""
    if spec.get("module"):
        from .user_network import from_arrays

        return from_arrays(spec, arrays, dtype)
    return network_from_arrays(arrays, dropout=spec.get("dropout", 0.0), dtype=dtype)


def networks_from(weight_paths, spec: dict, dtype: str) -> list[Network]:
    """The trained networks saved in weights files (sizes, batch norm and running statistics
    from the file; dropout from the spec)."""
    return [network_of(load_weights(p), spec, dtype) for p in weight_paths]


def ensemble_of(weight_paths, spec, dtype, data, lam) -> dict:
    """Average softmax over the networks: test accuracy and confusion matrix."""
    nets = networks_from(weight_paths, spec, dtype)
    metrics, pred = ensemble_metrics(nets, data["X_test"], data["y_test"], lam)
    return {"members": len(nets), "test_accuracy": metrics["accuracy"],
            "test_loss": metrics["loss"], "confusion": confusion_matrix(data["y_test"], pred).tolist()}


def snapshot_ensemble(snapshot_paths, seeds, spec: dict, dtype: str, data, lam: float) -> dict:
    """Per seed, the averaged softmax of that run's cycle-end networks on the test set (the
    last member is the run's own final network); then mean ± std over seeds."""
    per_seed = []
    for seed, path in zip(seeds, snapshot_paths):
        nets = [network_of(p, spec, dtype) for p in load_snapshots(path)]
        metrics, _ = ensemble_metrics(nets, data["X_test"], data["y_test"], lam)
        per_seed.append({"seed": seed, "members": len(nets), "test_accuracy": metrics["accuracy"],
                         "test_loss": metrics["loss"]})
    mean, std = mean_std([r["test_accuracy"] for r in per_seed])
    return {"per_seed": per_seed, "test_accuracy": [r["test_accuracy"] for r in per_seed],
            "test_accuracy_mean": mean, "test_accuracy_std": std,
            "members": per_seed[0]["members"] if per_seed else 0}


def headline(model: str, runs: list[dict], fine_table: dict | None, level: float = 0.95) -> dict:
    """The headline figure's interval (surface.headline_interval: the final seeds' standard error
    and the λ selection's bootstrap cost in quadrature) and, in words generated from what was
    combined, the sources of variation it covers and those it does not."""
    accs = [r["test_accuracy"] for r in runs]
    fit = (fine_table or {}).get("surface") or {}
    h = surface.headline_interval(accs, fit.get("selection"), level)
    spec, n = runs[0].get("spec") or {}, len(runs)
    lam_model = (fine_table or {}).get("model", model)
    covers, not_covered = [], []
    streams = ["weight initialisation", "mini-batch order"]
    if spec.get("dropout"):
        streams.append("dropout masks")
    if spec.get("flip") or spec.get("max_shift"):
        streams.append("augmentation draws")
    if "final seeds" in h["components"]:
        covers.append(f"{', '.join(streams)}: the spread of the {n} final runs' test accuracy, one "
                      f"seed each (standard error {100 * h['components']['final seeds']['se']:.2f} "
                      f"points, df {h['components']['final seeds']['df']})")
    else:
        not_covered.append(f"{', '.join(streams)}: one final run, so no seed spread")
    if "λ selection" in h["components"]:
        c, boot = h["components"]["λ selection"], fit["bootstrap"]
        covers.append(f"the λ choice: {boot['replicates']} residual-bootstrap refits of the "
                      f"{lam_model} fine search's surface ({fit['n_runs']} runs at {fit['n_lams']} λ), "
                      f"each refit's chosen λ valued on the fitted validation accuracy (RMS cost "
                      f"{100 * c['se']:.2f} points, df {c['df']})")
    elif fine_table is None:
        not_covered.append("the λ choice: no fine search table was given to the summary")
    elif fit.get("method") != "quadratic":
        not_covered.append(f"the λ choice: the {lam_model} fine search has too few λ for a surface fit")
    elif fit.get("df", 0) == 0:
        not_covered.append(f"the λ choice: the {lam_model} fine search has as many runs as fitted "
                           "parameters, so no noise estimate")
    else:
        not_covered.append(f"the λ choice: the {lam_model} fine search's fit was not bootstrapped")
    if fine_table is not None:
        not_covered.append("the coarse search's placement of the fine grid (the bootstrap refits "
                           "the fine search only)")
        not_covered.append(f"how the test accuracy after {runs[0]['cycles']} cycle(s) on the final "
                           "split depends on λ beyond what the search's validation surface shows "
                           "(the selection cost is valued on the search split's validation rows)")
    if lam_model != model:
        not_covered.append(f"how {model}'s own accuracy depends on λ: its λ is {lam_model}'s, and "
                           f"the selection cost is measured on {lam_model}'s validation surface")
    eta = {"range_test": "from the learning-rate range test", "config": "fixed in the config"}.get(
        runs[0].get("eta_source"), "as configured")
    not_covered.append(f"the settings fixed before the λ search (architecture, learning-rate bounds "
                       f"{eta}, the training recipe)")
    not_covered.append("BLAS kernel rounding on other machines or thread counts: not varied here, "
                       "covered only insofar as it acts like another seed")
    n_test = sum(map(sum, runs[0]["confusion"])) if runs[0].get("confusion") else None
    if n_test:
        p = h["mean"]
        not_covered.append(f"the sampling of the test images: every run scores the same {n_test} "
                           f"(binomial SE of the accuracy as a population estimate "
                           f"{100 * math.sqrt(p * (1 - p) / n_test):.2f} points)")
    pct = f"{100 * level:g}%"
    clipped = False
    if h["half_width"] is not None and (h["low"] < 0 or h["high"] > 1):
        # an accuracy lies in [0, 1]: few seeds (t with df 1 is 12.7) can reach past either end
        h["low"], h["high"], clipped = max(h["low"], 0.0), min(h["high"], 1.0), True
    if h["half_width"] is None:
        text = f"no {pct} interval (no source of variation was estimated)"
    else:
        text = (f"{pct} interval {100 * h['low']:.2f}–{100 * h['high']:.2f}% "
                f"(± {100 * h['half_width']:.2f} points over {' and '.join(h['components'])}"
                + (", clipped to 0–100%" if clipped else "") + ")")
    return {**h, "clipped": clipped, "covers": covers, "does_not_cover": not_covered, "lam_model": lam_model,
            "text": text}


def final_summary(run_paths, weight_paths, split_dir, model: str, ensemble: bool, dtype: str,
                  snapshot_paths=None, fine_table: dict | None = None) -> dict:
    """Test accuracy over seeds and its headline interval (`headline`; `fine_table`: the fine
    search table the λ came from, for the selection's uncertainty); with `ensemble`, the seed
    ensemble (averaged softmax of the seeds' final networks); with `snapshot_paths` (one
    snapshots.npz per run, in run order), each run's snapshot ensemble of its cycle-end
    networks."""
    runs = read_runs(run_paths)
    accs = [r["test_accuracy"] for r in runs]
    mean, std = mean_std(accs)
    out = {"model": model, "lam": runs[0]["lam"], "seeds": [r["seed"] for r in runs],
           "test_accuracy": accs, "test_accuracy_mean": mean, "test_accuracy_std": std,
           "seconds": [r["seconds"] for r in runs], "spec": runs[0]["spec"],
           "code_hash": runs[0]["code_hash"], "cycles": runs[0]["cycles"],
           "headline": headline(model, runs, fine_table)}
    text = (f"{model}: test accuracy {100 * mean:.2f}% ± {100 * std:.2f} over {len(accs)} seed(s), "
            f"λ {out['lam']:.3g}; {out['headline']['text']}")
    data = None
    if ensemble and len(weight_paths) > 1:
        data = load_split(split_dir)
        out["ensemble"] = ensemble_of(weight_paths, runs[0]["spec"], dtype, data, out["lam"])
        text += f"; ensemble of {len(weight_paths)}: {100 * out['ensemble']['test_accuracy']:.2f}%"
    if snapshot_paths:
        data = data or load_split(split_dir)
        snap = snapshot_ensemble(snapshot_paths, out["seeds"], runs[0]["spec"], dtype, data, out["lam"])
        out["snapshot_ensemble"] = snap
        text += (f"; snapshot ensemble ({snap['members']} cycle-end network(s) per seed): "
                 f"{100 * snap['test_accuracy_mean']:.2f}% ± {100 * snap['test_accuracy_std']:.2f}")
    out["text"] = text
    return out


def recipe_table(paths, candidates: dict[str, dict]) -> dict:
    """The recipe search: one row per candidate (validation accuracy mean ± std and standard
    error over its seeds, on the search split's validation rows) and the chosen candidate, the
    best mean (ties: the lower mean validation cost); the candidates the seed noise cannot tell
    apart from it are marked (replicates.SE_RULE). `recipe` holds the chosen overrides, which
    the recipe model's final and ablation runs train with."""
    by_cand: dict[str, list[dict]] = {}
    for p, m in zip(paths, read_runs(paths)):
        by_cand.setdefault(m["wildcards"]["candidate"], []).append(
            {"lam": 0.0, "log10_lam": None, "seed": m["seed"], "diverged": bool(m.get("diverged")),
             "run": str(Path(*Path(p).parent.parts[-2:])), "advice": (m.get("divergence") or {}).get("advice"),
             **{k: m.get(k) for k in ROW_KEYS if k not in ("lam", "log10_lam", "seed")}})
    missing = sorted(set(candidates) - set(by_cand))
    if missing:
        raise ValueError(f"recipe candidates without runs: {missing}")
    rows = []
    for name in candidates:
        (row,) = replicates.lam_rows(by_cand[name])
        row.update(candidate=name, overrides=candidates[name], lam=by_cand[name][0].get("lam"))
        rows.append(row)
    trained = [r for r in rows if not r["diverged"]]
    if not trained:
        raise ValueError("every recipe candidate diverged: " + "; ".join(
            f"{r['candidate']}: {r.get('advice')}" for r in rows))
    best = max(trained, key=lambda r: (r["val_accuracy"], -r["val_cost"]))
    replicates.mark_indistinguishable(rows, best)
    for r in rows:
        r["chosen"] = r is best
    band = [r["candidate"] for r in rows if r["indistinguishable"]]
    text = "\n".join(
        f"{r['candidate']:>20}: " + ("diverged" if r["diverged"] else
        f"val {100 * r['val_accuracy']:.2f}%" + (f" ± {100 * r['val_accuracy_std']:.2f}"
                                                 if r["val_accuracy_std"] is not None else "")
        + f" over {r['n']} seed(s)") + ("  <- chosen" if r["chosen"] else
                                          ("  (indistinguishable)" if r["indistinguishable"] else ""))
        for r in rows)
    return {"rows": rows, "chosen": best["candidate"], "recipe": best["overrides"],
            "indistinguishable": band, "rule": replicates.SE_RULE.replace("λ", "candidate"), "text": text}


def _beaten_by(rows: list[dict], reference: str = "all") -> list[dict]:
    """The ablation variants whose mean test accuracy beats `reference`'s by more than the
    standard error of the difference (seed noise): the chosen recipe must not lose to any."""
    ref = next((r for r in rows if r["variant"] == reference), None)
    if ref is None:
        return []
    out = []
    for r in rows:
        if r["variant"] in (reference, f"{reference} + ensemble"):
            continue
        gap = r["test_accuracy_mean"] - ref["test_accuracy_mean"]
        se = math.sqrt(ref["test_accuracy_std"] ** 2 / ref["seeds"] + r["test_accuracy_std"] ** 2 / r["seeds"])
        r["gap_to_all"], r["gap_to_all_se"] = gap, se
        if gap > se:
            out.append({"variant": r["variant"], "gap": gap, "se": se})
    return out


def ablation_table(run_paths, split_dir, dtype: str) -> dict:
    runs = read_runs(run_paths)
    by_variant: dict[str, list[tuple[str, dict]]] = {}
    for p, r in zip(run_paths, runs):
        by_variant.setdefault(r["wildcards"].get("variant", "all"), []).append((p, r))
    rows = []
    data = None
    for variant, items in by_variant.items():
        accs = [r["test_accuracy"] for _, r in items]
        mean, std = mean_std(accs)
        rows.append({"variant": variant, "test_accuracy_mean": mean, "test_accuracy_std": std,
                     "seeds": len(items), "seconds_mean": mean_std([r["seconds"] for _, r in items])[0],
                     "lam": items[0][1]["lam"]})
        if variant == "all" and len(items) > 1:
            data = data or load_split(split_dir)
            ens = ensemble_of([Path(p).with_name("weights.npz") for p, _ in items], items[0][1]["spec"],
                              dtype, data, items[0][1]["lam"])
            rows.append({"variant": "all + ensemble", "test_accuracy_mean": ens["test_accuracy"],
                         "test_accuracy_std": 0.0, "seeds": len(items),
                         "seconds_mean": sum(r["seconds"] for _, r in items),
                         "lam": items[0][1]["lam"]})
    # No wall-clock time in the text: the same config must give the same text (timings are
    # in `seconds_mean` and in the report's provenance).
    beaten = _beaten_by(rows)
    text = "\n".join(f"{r['variant']:>20}: {100 * r['test_accuracy_mean']:.2f}% ± "
                     f"{100 * r['test_accuracy_std']:.2f} over {r['seeds']} seed(s)" for r in rows)
    text += "\n" + ("the recipe ('all') is not beaten by any variant beyond the seed noise"
                    if not beaten else "the recipe ('all') loses beyond the seed noise to " + ", ".join(
                        f"{b['variant']} (+{100 * b['gap']:.2f} ± {100 * b['se']:.2f} points)" for b in beaten))
    return {"rows": rows, "text": text, "beaten_by": beaten,
            "noise_rule": "beaten: mean − mean_all > sqrt(std_all²/n_all + std²/n) (test accuracy)"}


def aug_vs_lambda(paths, fit_points: int = 5, level: float = 0.95) -> dict:
    """Validation accuracy against λ with and without augmentation, per seed; the fitted optimum
    of each seed's curve and the shift between conditions with its interval (see study/shift.py
    for the rules). `best_log10_lam` is {condition: {seed: fitted optimum log10 λ}}."""
    rows = []
    for m in read_runs(paths):
        rows.append({"augmentation": m["wildcards"]["aug"] == "aug", "seed": m["seed"],
                     "lam": m["lam"], "log10_lam": m["log10_lam"], "diverged": bool(m.get("diverged")),
                     "val_accuracy": m["val_accuracy"], "val_cost": m["val_cost"]})
    rows.sort(key=lambda r: (r["augmentation"], r["seed"], r["lam"]))
    fits, best, edge = {}, {}, {}
    for aug in (False, True):
        label = "augmentation" if aug else "no augmentation"
        fits[label], best[label], edge[label] = {}, {}, {}
        for seed in sorted({r["seed"] for r in rows if r["augmentation"] == aug}):
            sel = [r for r in rows if r["augmentation"] == aug and r["seed"] == seed]
            fit = shift.fitted_optimum([r["log10_lam"] for r in sel],
                                       [r["val_accuracy"] for r in sel], fit_points)
            fits[label][str(seed)] = fit
            best[label][str(seed)] = fit["log10_lam"]
            edge[label][str(seed)] = fit["at_edge"]
    stat = shift.shift_statistic(best, "no augmentation", "augmentation", level, at_edge=edge)
    return {"rows": rows, "best_log10_lam": best, "fits": fits, "fit_points": fit_points,
            "shift": stat}


def init_sensitivity(paths) -> dict:
    """The initialisation-sensitivity experiment: one row per (batch norm, σ) with test accuracy
    (mean ± std over seeds), the final training loss, and the runs' history files for the curves;
    a statement of the outcome generated from the spread across σ with and without batch norm."""
    groups: dict[tuple[bool, float], list[tuple[str, dict]]] = {}
    for p, m in zip(paths, read_runs(paths)):
        key = (bool(m["spec"].get("batch_norm")), float(m["spec"]["init"]))
        groups.setdefault(key, []).append((str(p), m))
    rows = []
    for (bn, sigma), items in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1])):
        trained = [m for _, m in items if not m.get("diverged")]
        accs = [m["test_accuracy"] for m in trained]
        mean, std = mean_std(accs) if accs else (None, None)
        rows.append({"batch_norm": bn, "sigma": sigma, "seeds": len(items),
                     "diverged": len(items) - len(trained),
                     "test_accuracy_mean": mean, "test_accuracy_std": std,
                     "train_loss_mean": mean_std([m["train_loss"] for m in trained])[0] if trained else None,
                     "lam": items[0][1]["lam"],
                     # relative to the results folder ({R}/bonus/init_sensitivity/<variant>/seed<s>)
                     "histories": [str(Path(*Path(p).with_name("history.csv").parts[-5:]))
                                   for p, _ in items]})

    def span(bn):
        accs = [r["test_accuracy_mean"] for r in rows if r["batch_norm"] == bn
                and r["test_accuracy_mean"] is not None]
        return (min(accs), max(accs)) if accs else None

    parts = []
    for label, bn in (("with batch norm", True), ("without", False)):
        s = span(bn)
        diverged = sum(r["diverged"] for r in rows if r["batch_norm"] == bn)
        text = (f"{label}, test accuracy spans {100 * s[0]:.1f}–{100 * s[1]:.1f}% across σ"
                if s else f"{label}, no run trained to the end")
        if diverged:
            text += f" ({diverged} run(s) diverged)"
        parts.append(text)
    per_sigma = "; ".join(
        f"σ = {sigma:.0e}: " + ", ".join(
            f"{'BN' if r['batch_norm'] else 'no BN'} "
            + (f"{100 * r['test_accuracy_mean']:.1f}%" if r["test_accuracy_mean"] is not None
               else "diverged")
            for r in rows if r["sigma"] == sigma)
        for sigma in sorted({r["sigma"] for r in rows}, reverse=True))
    seeds = max((r["seeds"] for r in rows), default=0)
    statement = (f"Initialisation sensitivity ({seeds} seed(s) per cell): " + "; ".join(parts)
                 + f". Per σ: {per_sigma}.")
    return {"rows": rows, "statement": statement}

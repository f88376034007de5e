"""The report's figures: matplotlib (Agg), one consistent style, each figure -> PNG -> data URI.

Every function takes part of the collected context and returns a ``data:image/png;base64,...``
string, so the HTML needs no external file or request.
"""
from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.linewidth": 1.4,
    "axes.prop_cycle": matplotlib.cycler(color=plt.get_cmap("tab10").colors),
}
TRAIN, VAL, TORCH, LIMIT = "#1f77b4", "#ff7f0e", "#d62728", "#7f7f7f"
WIDTH = 9.0  # inches: every figure spans the page column


def to_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", facecolor="white")  # constrained layout: no second "tight" draw
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(ncols=1, nrows=1, height=3.0, width=WIDTH, **kw):
    kw.setdefault("layout", "constrained")
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False, **kw)
    return fig, axes


def _styled(fn):
    """Run a figure function inside the report's rc style."""
    def wrapper(*a, **kw):
        with plt.rc_context(STYLE):
            return fn(*a, **kw)
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def mosaic(rows: list[list], pad: int = 2) -> np.ndarray:
    """Images (H, W, 3) arranged row by row on a white canvas, ``pad`` pixels apart."""
    h, w = rows[0][0].shape[:2]
    ncols = max(len(r) for r in rows)
    canvas = np.ones((len(rows) * (h + pad) - pad, ncols * (w + pad) - pad, 3))
    for i, r in enumerate(rows):
        for j, img in enumerate(r):
            canvas[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = img
    return canvas


def _image_grid(rows: list[tuple[str, list]], title: str, cell=0.62, col_labels=None,
                xlabel: str = "", ylabel: str = "") -> str:
    """One imshow of a mosaic (fast), labelled per row (and optionally per column); xlabel and
    ylabel name what the columns and the rows are."""
    canvas = mosaic([imgs for _, imgs in rows])
    h = rows[0][1][0].shape[0] + 2
    ncols = max(len(imgs) for _, imgs in rows)
    fig, axes = _figure(1, 1, height=cell * len(rows) + 0.5, width=cell * ncols + 1.4)
    ax = axes[0][0]
    ax.imshow(canvas, interpolation="nearest")
    ax.grid(False)
    ax.set_yticks([i * h + h / 2 - 1 for i in range(len(rows))], [label for label, _ in rows])
    if col_labels:
        ax.set_xticks([j * h + h / 2 - 1 for j in range(ncols)], col_labels)
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    return to_uri(fig)


@_styled
def samples(data: dict) -> str:
    rows = [(s["label"], list(s["images"])) for s in data["samples"]]
    return _image_grid(rows, f"Training images of the final split, {data['samples_per_class']} per class "
                             "(de-normalised)", xlabel="training image (one per column)", ylabel="class")


@_styled
def norm_stats(data: dict) -> str:
    fig, axes = _figure(2, 1, height=2.4, width=6.0)
    axes[0][0].imshow(data["norm"]["mean_image"], interpolation="nearest")
    axes[0][0].set_title("per-pixel mean (train split)")
    axes[0][0].set_axis_off()
    ch = data["norm"]["channels"]
    x = np.arange(len(ch))
    ax = axes[0][1]
    ax.bar(x - 0.2, [c["mean_mean"] for c in ch], 0.4, label="mean", color=[c["channel"] for c in ch])
    ax.bar(x + 0.2, [c["std_mean"] for c in ch], 0.4, label="std", color=[c["channel"] for c in ch], alpha=0.45)
    ax.set_xticks(x, [f"{c['channel']}\nmean | std" for c in ch])
    ax.set_xlabel("colour channel: mean (solid), std (light)")
    ax.set_ylabel("pixel value (0–255), averaged over pixels")
    ax.set_title("normalisation statistics per channel")
    return to_uri(fig)


@_styled
def class_counts(data: dict) -> str:
    names = data["label_names"]
    splits = [s for s in data["splits"] if s["split"] == "final"] or data["splits"][:1]
    cc = splits[0]["class_counts"]
    fig, axes = _figure(1, 1, height=2.6)
    ax = axes[0][0]
    x = np.arange(len(names))
    bottom = np.zeros(len(names))
    for part in ("train", "val", "test"):
        if part in cc:
            ax.bar(x, cc[part], bottom=bottom, label=part)
            bottom += np.asarray(cc[part])
    ax.set_xticks(x, names, rotation=30)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_title(f"class counts, {splits[0]['split']} split")
    ax.legend()
    return to_uri(fig)


@_styled
def gradcheck(gates: dict) -> str:
    rows, t = gates["gradcheck"], gates["thresholds"]
    labels = [f"{r['variant']} {r['param']}" for r in rows]
    fig, axes = _figure(1, 1, height=3.8, width=max(WIDTH, 0.13 * len(rows) + 2))
    ax = axes[0][0]
    x = np.arange(len(rows))
    for key, name, c, mk in (("max_rel", "max relative error (vs torch)", "C0", "o"),
                             ("norm_rel", "norm relative error (vs torch)", "C1", "s"),
                             ("fd_norm_rel", "finite-difference norm relative error", "C2", "^")):
        vals = np.maximum([r[key] for r in rows], 1e-20)
        ax.plot(x, vals, ls="none", marker=mk, ms=4, color=c, label=name)
        ax.axhline(t[key], color=c, ls="--", lw=1)
        ax.text(len(rows) - 0.5, t[key], f" threshold {t[key]:.0e}", color=c, va="center", fontsize=7)
    # Variant boundaries: the parameters of one network sit between two lines.
    starts = [i for i in range(1, len(rows)) if rows[i]["variant"] != rows[i - 1]["variant"]]
    for i in starts:
        ax.axvline(i - 0.5, color=LIMIT, lw=0.6)
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=6, rotation=90)
    ax.set_xlim(-0.7, len(rows) + 2.5)
    ax.set_xlabel("network variant and parameter")
    ax.set_ylabel("relative error (dimensionless, log)")
    ax.set_title("Gradient check per variant and parameter (float64); dashed: thresholds")
    ax.legend(loc="upper left", ncol=3)
    return to_uri(fig)


@_styled
def gradcheck_exact(gates: dict) -> str:
    """Per parameter, our error against the long-double gradient (x) vs torch's (y)."""
    rows = [r for r in gates["gradcheck"] if r.get("exact_ratio") is not None]
    goal = gates["thresholds"].get("exact_ratio")
    fig, axes = _figure(2, 1, height=3.4)
    ax, ax2 = axes[0]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for i, v in enumerate(variants):
        sel = [r for r in rows if r["variant"] == v]
        ax.plot([r["exact_ours_err"] for r in sel], [r["exact_torch_err"] for r in sel], ls="none", marker="o",
                ms=4, color=f"C{i}", label=v)
        ax2.plot(np.full(len(sel), i) + np.linspace(-0.25, 0.25, len(sel)), [r["exact_ratio"] for r in sel],
                 ls="none", marker="o", ms=4, color=f"C{i}")
    errs = np.array([[r["exact_ours_err"], r["exact_torch_err"]] for r in rows]).ravel()
    errs = errs[errs > 0]
    lo, hi = (errs.min() / 3, errs.max() * 3) if errs.size else (1e-18, 1e-14)
    line = np.array([lo, hi])
    ax.plot(line, line, color=LIMIT, lw=1, label="equal error")
    if goal:
        ax.plot(line, line / goal, color=TORCH, ls="--", lw=1, label=f"ours = {goal:g} × torch's (goal)")
        ax2.axhline(goal, color=TORCH, ls="--", lw=1, label=f"goal ≤ {goal:g}")
    ax2.axhline(1.0, color=LIMIT, lw=1, label="as close as torch")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi),
           xlabel="ours: ‖g − g_exact‖ / ‖g_exact‖ (log)", ylabel="torch autograd: same measure (log)",
           title="Errors against the long-double gradient, per parameter")
    ax2.set_yscale("log")
    ax2.set_xticks(range(len(variants)), variants, rotation=30, fontsize=7)
    ax2.set(xlabel="network variant (one dot per parameter)", ylabel="our error / torch's error (log)",
            title="Ratio per parameter (≤ goal passes)")
    ax.legend(fontsize=7)
    ax2.legend(fontsize=7)
    return to_uri(fig)


@_styled
def overfit(gates: dict) -> str:
    vs = gates["overfit"]
    fig, axes = _figure(2, 1, height=3.0)
    for i, v in enumerate(vs):
        h = v["history"]
        axes[0][0].plot(h["step"], h["train_loss"], label=v["variant"], color=f"C{i}")
        axes[0][1].plot(h["step"], h["train_accuracy"], label=v["variant"], color=f"C{i}")
    if vs:
        axes[0][0].axhline(vs[0]["loss_bound"], color=LIMIT, ls="--", lw=1, label="loss bound")
        axes[0][0].axhline(vs[0]["ln10"], color=LIMIT, ls=":", lw=1, label="ln 10 (chance)")
    axes[0][0].set_yscale("log")
    axes[0][0].set(xlabel="update step", ylabel="training cross-entropy (nats, log)",
                   title=f"Overfit gate: loss on {vs[0]['n_images'] if vs else '?'} images")
    axes[0][1].set(xlabel="update step", ylabel="training accuracy (fraction)", ylim=(0, 1.05),
                   title="accuracy on the same images")
    axes[0][0].legend()
    axes[0][1].legend()
    return to_uri(fig)


@_styled
def trajectory(gates: dict) -> str:
    """Costs of every variant, then one panel per tolerance: each variant's relative difference
    against its own tolerance (float64 1e-10, float32 1e-4)."""
    vs = gates["trajectory"]
    tols = sorted({v["tolerance"] for v in vs})
    fig, axes = _figure(1 + len(tols), 1, height=3.4)
    ax = axes[0][0]
    colour = {v["variant"]: f"C{i % 10}" for i, v in enumerate(vs)}
    style = {v["variant"]: ["-", "--", ":", "-."][(i // 10) % 4] for i, v in enumerate(vs)}
    for v in vs:
        steps = np.arange(len(v["costs"]))
        c = colour[v["variant"]]
        ax.plot(steps, v["costs"], color=c, ls=style[v["variant"]], label=v["variant"])
        ax.plot(steps, v["torch_costs"], color=c, ls="none", marker="o", ms=3, mfc="none")
    for k, tol in enumerate(tols):
        ax2 = axes[0][1 + k]
        for v in (v for v in vs if v["tolerance"] == tol):
            steps = np.arange(len(v["costs"]))
            c, tc = np.asarray(v["costs"]), np.asarray(v["torch_costs"])
            rel = np.abs(c - tc) / np.maximum(np.abs(tc), 1e-300)
            ax2.plot(steps, np.maximum(rel, tol * 1e-8), color=colour[v["variant"]], ls=style[v["variant"]],
                     marker=".", label=v["variant"])
        dtypes = sorted({v["dtype"] for v in vs if v["tolerance"] == tol})
        ax2.axhline(tol, color=LIMIT, ls="--", lw=1.2, label=f"tolerance {tol:.0e}")
        ax2.set_yscale("log")
        ax2.set_ylim(top=max(tol * 30, ax2.get_ylim()[1]))
        ax2.set(xlabel="update step", ylabel="|ours − torch| / |torch| (log)",
                title=f"{', '.join(dtypes)} variants against {tol:.0e}\n(exact 0 drawn at {tol * 1e-8:.0e})")
        ax2.legend(fontsize=6)
    ax.set_yscale("log")
    ax.set(xlabel="update step", ylabel="mini-batch cost (nats, log)",
           title="Cost per step: ours (lines), torch (circles);\ncolours as in the panels on the right")
    return to_uri(fig)


@_styled
def schedules(finals: list[dict]) -> str:
    fig, axes = _figure(1, 1, height=2.8)
    ax = axes[0][0]
    for i, f in enumerate(finals):
        r = f["runs"][0]
        s = r["schedule"]
        ax.plot(s["step"], s["eta"], color=f"C{i}", ls=["-", "--", ":", "-."][i % 4],
                label=f"{f['model']}: n_s={s['n_s']}, {s['steps']} steps (exact)")
        h = r["history"]
        if "eta" in h:
            ax.plot(h["step"], h["eta"], ls="none", marker="o", ms=3, color=f"C{i}")
    ax.set(xlabel="update step", ylabel="learning rate η", title="Cyclical learning rate of the final runs "
           "(lines: schedule function; dots: η recorded in history.csv)")
    ax.legend()
    return to_uri(fig)


def _mean_std_lam_ax(ax, rows, color, marker, label, ring=None):
    """Mean ± std per λ with error bars; diverged λ (no accuracy) as × on the bottom axis;
    ring: rows to circle (the indistinguishable ones)."""
    ok = [r for r in rows if not r.get("diverged") and r.get("val_accuracy") is not None]
    bad = [r for r in rows if r.get("diverged") or r.get("val_accuracy") is None]
    if ok:
        std = [100 * (r.get("val_accuracy_std") or 0.0) for r in ok]
        ax.errorbar([r["lam"] for r in ok], [100 * r["val_accuracy"] for r in ok], yerr=std, color=color,
                    marker=marker, ms=5, lw=1, capsize=3, label=label)
    if ring:
        sel = [r for r in ok if ring(r)]
        ax.plot([r["lam"] for r in sel], [100 * r["val_accuracy"] for r in sel], ls="none", marker="o", ms=11,
                mfc="none", mec=color, mew=1.2)
    if bad:
        # On the axis, not at a made-up accuracy: a diverged λ has none.
        ax.plot([r["lam"] for r in bad], [0.02] * len(bad), ls="none", marker="x", ms=8, mew=2, color=color,
                transform=ax.get_xaxis_transform(), clip_on=False, label=f"{label}: diverged (no accuracy)")


@_styled
def lr_range(t: dict) -> str:
    """One model's range test: mini-batch loss (left) and validation accuracy (right) against η
    on a log axis, with the peak, the suggested η_min/η_max and, when config fixes η, the fixed ones."""
    c, b = t["curve"], t["bounds"]
    fig, axes = _figure(2, 1, height=2.9)
    ax_loss, ax_acc = axes[0]
    ax_loss.plot(c["eta"], c["loss_raw"], color=TRAIN, alpha=0.35, lw=0.9, label="mini-batch loss (raw)")
    ax_loss.plot(c["eta"], c["loss_smoothed"], color=TRAIN, label="smoothed (EMA)")
    ax_acc.plot(c["eta"], 100 * np.asarray(c["val_accuracy"]), color=VAL, alpha=0.35, lw=0.9,
                label="validation accuracy")
    if t.get("smoothed_val_accuracy"):
        ax_acc.plot(c["eta"], 100 * np.asarray(t["smoothed_val_accuracy"]), color=VAL,
                    label=f"moving average ({b['smooth']} records)")
    for ax in (ax_loss, ax_acc):
        ax.axvline(b["peak_eta"], color="C3", lw=1.0, ls=":", label=f"peak η = {b['peak_eta']:.3g}")
        ax.axvline(b["eta_max"], color="C2", lw=1.2, ls="--", label=f"suggested η_max = {b['eta_max']:.3g}")
        ax.axvline(b["eta_min"], color="C2", lw=1.0, ls="-.", label=f"suggested η_min = {b['eta_min']:.3g}")
        if t["fixed"]:
            ax.axvline(t["eta_max_used"], color=LIMIT, lw=1.2, ls="--", label=f"fixed η_max = {t['eta_max_used']:.3g}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate η (log scale)")
    low = min(c["loss_smoothed"])  # the diverged tail would squash the curve
    ax_loss.set_ylim(0.9 * low, max(min(max(c["loss_raw"]), 1.2 * t["settings"]["divergence_factor"] * low),
                                    1.1 * low))
    ax_loss.set_ylabel("cross-entropy loss (nats)")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    fig.suptitle(f"Learning-rate range test: {t['model']}")
    return to_uri(fig)


@_styled
def search(s: dict) -> str:
    """Both stages' mean ± std per λ; the fine search's surface fit (study/surface.py): its curve,
    its flat band, the chosen λ with its interval. Without a fit (an older table): the best mean."""
    fig, axes = _figure(1, 1, height=3.2)
    ax = axes[0][0]
    for stage, marker, color in (("coarse", "o", "C0"), ("fine", "s", "C1")):
        rows = sorted(s[stage]["rows"], key=lambda r: r["lam"])
        n_seeds = len(s[stage].get("seeds") or [])
        _mean_std_lam_ax(ax, rows, color, marker, f"{stage} ({len(rows)} λ × {n_seeds} seed(s), mean ± std)",
                         ring=lambda r: r.get("indistinguishable"))
    fit = s["fine"].get("surface")
    ch = s["chosen"]
    if fit:
        if fit.get("coeffs"):
            xs = np.linspace(*fit["window_log10"], 200)
            ax.plot(10.0 ** xs, 100 * np.polyval(fit["coeffs"], xs), color="C1", lw=1.2, ls="--",
                    label=f"fine: quadratic fit over {fit['n_runs']} runs")
        if fit.get("band_lam"):
            lo, hi = fit["band_lam"]
            pad = 1.02 if hi > lo else 1.08  # a band of one point still shows
            ax.axvspan(lo / pad, hi * pad, color="C1", alpha=0.10, lw=0,
                       label="fine: same accuracy as the fit's best within noise")
        if fit.get("interval_lam"):
            lo, hi = fit["interval_lam"]
            pad = 1.0 if hi > lo else 1.04
            ax.axvspan(lo / pad, hi * pad, color="C3", alpha=0.15, lw=0,
                       label=f"{100 * fit['level']:g}% interval of the chosen λ")
        y = fit["fitted_accuracy"] if fit.get("fitted_accuracy") is not None else ch["val_accuracy"]
        ax.plot([fit["lam"]], [100 * y], marker="*", ms=16, color="C3", ls="none",
                label=f"chosen λ = {fit['lam']:.3g} ({fit['shape']})")
        ax.axvline(fit["lam"], color="C3", lw=0.8, ls=":")
        ax.plot([ch["lam"]], [100 * ch["val_accuracy"]], marker="D", ms=7, mfc="none", mec="k", ls="none",
                label=f"fine: best mean, λ = {ch['lam']:.3g}")
    else:
        ax.plot([ch["lam"]], [100 * ch["val_accuracy"]], marker="*", ms=16, color="C3", ls="none",
                label=f"chosen λ = {ch['lam']:.3g} (best mean)")
        ax.axvline(ch["lam"], color="C3", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set(xlabel="λ (L2 penalty, log scale)", ylabel="validation accuracy (%)",
           title=f"λ search: {s['model']} (rings: indistinguishable from the stage's best mean)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return to_uri(fig)


@_styled
def training(f: dict) -> str:
    fig, axes = _figure(3, 1, height=2.9)
    for j, r in enumerate(f["runs"]):
        h = r["history"]
        ls = ["-", "--", ":", "-."][j % 4]
        for k, (key, ylabel) in enumerate((("loss", "cross-entropy loss (nats)"), ("cost", "cost = loss + λ‖W‖² (nats)"),
                                           ("accuracy", "accuracy (%)"))):
            scale = 100.0 if key == "accuracy" else 1.0
            ax = axes[0][k]
            for part, color in (("train", TRAIN), ("val", VAL)):
                col = f"{part}_{key}"
                if col in h:
                    ax.plot(h["step"], np.asarray(h[col]) * scale, color=color, ls=ls,
                            label=f"{part}, seed {r['seed']}")
            ax.set(xlabel="update step", ylabel=ylabel)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Final training: {f['model']} (λ = {f['summary']['lam']:.3g})")
    return to_uri(fig)


def per_class(cm) -> dict:
    """Per-class recall and precision read off a confusion matrix with rows = true class and
    columns = predicted (study.runs.confusion_matrix, sklearn's convention): recall = diagonal /
    row sum (of the images of class i, the fraction predicted i), precision = diagonal / column
    sum (of the images predicted j, the fraction that are j). None where the sum is 0 (no image
    of that class, or none predicted as it): undefined, not 0."""
    cm = np.asarray(cm, float)
    diag, rows, cols = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    return {"recall": [float(d / r) if r else None for d, r in zip(diag, rows)],
            "precision": [float(d / c) if c else None for d, c in zip(diag, cols)]}


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def _confusion_ax(ax, cm, names, title):
    """Counts in the cells, colour = row fraction (recall along the diagonal); the row labels
    carry each class's recall, the column labels its precision (per_class)."""
    cm = np.asarray(cm, float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black")
    pc = per_class(cm)
    ax.set_xticks(range(len(names)), [f"{n} {_pct(p)}" for n, p in zip(names, pc["precision"])],
                  rotation=60, fontsize=7)
    ax.set_yticks(range(len(names)), [f"{n} {_pct(r)}" for n, r in zip(names, pc["recall"])], fontsize=7)
    ax.set(xlabel="predicted class (precision %)", ylabel="true class (recall %)", title=title)


@_styled
def confusion(f: dict, names: list[str]) -> str:
    mats = [(f"summed over {len(f['runs'])} seed(s)", np.sum([r["metrics"]["confusion"] for r in f["runs"]], axis=0))]
    ens = f["summary"].get("ensemble")
    if ens:
        mats.append((f"ensemble of {ens['members']}", ens["confusion"]))
    fig, axes = _figure(len(mats), 1, height=4.2, width=4.6 * len(mats))
    for ax, (title, cm) in zip(axes[0], mats):
        _confusion_ax(ax, cm, names, f"{f['model']}: test confusion, {title}\n(counts; colour = row fraction)")
    return to_uri(fig)


@_styled
def weights(f: dict, names: list[str]) -> str:
    wi = f["weight_images"]
    return _image_grid([(f"seed {wi['seed']}", wi["images"])],
                       f"{f['model']}: columns of W1 as 32×32 colour images (min–max scaled per class)",
                       cell=0.85, col_labels=names[:len(wi["images"])],
                       xlabel="class whose output the weights feed (column of W1)", ylabel="run")


@_styled
def ablation(ab: dict) -> str:
    rows = ab["rows"]
    fig, axes = _figure(1, 1, height=0.35 * len(rows) + 1.2)
    ax = axes[0][0]
    y = np.arange(len(rows))
    ax.barh(y, [100 * r["test_accuracy_mean"] for r in rows], xerr=[100 * r["test_accuracy_std"] for r in rows],
            color=["C2" if r["variant"].startswith("all") and r["variant"] != "all_off" else "C0" for r in rows])
    ax.set_yticks(y, [r["variant"] for r in rows])
    ax.invert_yaxis()
    ax.set(xlabel="test accuracy (%), mean ± std over seeds", ylabel="variant (improvement switched off)",
           title="Ablation: each improvement switched off")
    return to_uri(fig)


@_styled
def aug_vs_lambda(av: dict) -> str:
    fig, axes = _figure(2, 1, height=3.2, gridspec_kw={"width_ratios": [2.2, 1]})
    ax, ax2 = axes[0]
    rows = av["rows"]
    for aug, color, label in ((False, "C0", "no augmentation"), (True, "C1", "augmentation")):
        sel = [r for r in rows if bool(r["augmentation"]) == aug]
        seeds = sorted({r["seed"] for r in sel})
        for s in seeds:
            rs = sorted((r for r in sel if r["seed"] == s and not r.get("diverged")), key=lambda r: r["lam"])
            ax.plot([r["lam"] for r in rs], [100 * r["val_accuracy"] for r in rs], color=color, lw=0.6,
                    alpha=0.4, marker=".")
        per_lam = [{"lam": r["lam"], "val_accuracy": r["val_accuracy_mean"], "val_accuracy_std": r["val_accuracy_std"],
                    "diverged": r["n"] == 0} for r in av["per_lam"] if r["augmentation"] == aug]
        _mean_std_lam_ax(ax, per_lam, color, "o", f"{label}: mean ± std over {len(seeds)} seeds")
        best = av.get("best_log10_lam", {}).get(label, {})
        for k, b in enumerate(best.values()):
            ax.axvline(10.0 ** b, color=color, ls=":", lw=0.8,
                       label=f"{label}: fitted optimum per seed" if k == 0 else None)
    ax.set_xscale("log")
    ax.set(xlabel="λ (L2 penalty, log scale)", ylabel="validation accuracy (%)",
           title="Augmentation vs λ (thin: single seeds)")
    ax.legend(fontsize=6, loc="best")
    sh = av["shift"]
    d = sh["per_seed_shift_log10"]
    ax2.plot(np.zeros(len(d)) + np.linspace(-0.1, 0.1, len(d)), d, ls="none", marker="o", color="C2",
             label="per seed")
    same: dict[float, list] = {}  # seeds with the same shift share one label
    for seed, y in zip(sh["seeds"], d):
        same.setdefault(round(y, 6), []).append(str(seed))
    for y, seeds in same.items():
        ax2.annotate(f"seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}", (0.13, y), fontsize=7, va="center")
    if sh.get("ci_low") is not None:
        ax2.errorbar([0.45], [sh["mean_shift_log10"]], yerr=[[sh["mean_shift_log10"] - sh["ci_low"]],
                                                            [sh["ci_high"] - sh["mean_shift_log10"]]],
                     marker="s", color="C3", capsize=5, lw=1.5,
                     label=f"mean, {100 * sh['ci_level']:g}% interval [{sh['ci_low']:+.2f}, {sh['ci_high']:+.2f}]")
    else:
        ax2.plot([0.45], [sh["mean_shift_log10"]], marker="s", color="C3", ls="none", label="mean (no interval)")
    ax2.axhline(0, color=LIMIT, lw=1)
    ax2.set_xlim(-0.4, 0.9)
    ax2.set_xticks([])
    ax2.set(xlabel="seeds (spread apart), then their mean", ylabel="shift of the fitted optimum (log10 λ)",
            title=f"{sh['to']} − {sh['from']}\nverdict: {sh['verdict']}")
    ax2.legend(fontsize=7, loc="best")
    return to_uri(fig)


@_styled
def init_sensitivity(ins: dict) -> str:
    """Loss and accuracy curves side by side, with batch norm (top) and without (bottom), one
    colour per σ and one line style per seed."""
    sigmas = sorted({r["sigma"] for r in ins["rows"]}, reverse=True)
    colour = {sg: f"C{i % 10}" for i, sg in enumerate(sigmas)}
    fig, axes = _figure(2, 2, height=2.7, sharex=True, sharey="col")
    # A run that stopped before the others diverged (training stops at divergence).
    last = max((run["history"]["step"][-1] for r in ins["rows"] for run in r["runs"]
                if run["history"] and run["history"]["step"]), default=0)
    for i, bn in enumerate((True, False)):
        for r in (r for r in ins["rows"] if r["batch_norm"] == bn):
            for j, run in enumerate(r["runs"]):
                h = run["history"]
                if not h:
                    continue
                ls = ["-", "--", ":", "-."][j % 4]
                label = f"σ = {r['sigma']:.0e}" + (f", seed {run['seed']}" if len(r["runs"]) > 1 else "")
                for k, key in enumerate(("train_loss", "val_accuracy")):
                    scale = 100.0 if key.endswith("accuracy") else 1.0
                    y = np.asarray(h.get(key, []), float) * scale
                    ax = axes[i][k]
                    ax.plot(h["step"], y, color=colour[r["sigma"]], ls=ls, label=label)
                    finite = np.flatnonzero(np.isfinite(y))
                    if finite.size and h["step"][-1] < last:
                        ax.plot([h["step"][finite[-1]]], [y[finite[-1]]], marker="x", ms=8, mew=2,
                                color=colour[r["sigma"]])
        which = "with batch norm" if bn else "without batch norm"
        axes[i][0].set(ylabel="training loss (nats)", title=f"{which}: training loss")
        axes[i][1].set(ylabel="validation accuracy (%)", title=f"{which}: validation accuracy")
        axes[i][0].legend(fontsize=7)
    for ax in axes.ravel():  # shared x, named on every panel: each must read on its own
        ax.set_xlabel("update step")
    return to_uri(fig)


@_styled
def benchmarks(b: dict) -> str:
    rows = sorted(b["rows"], key=lambda r: -r["seconds"])
    fig, axes = _figure(2, 1, height=0.22 * len(rows) + 1.2)
    y = np.arange(len(rows))
    axes[0][0].barh(y, [r["seconds"] for r in rows], color="C0")
    axes[0][0].set(xlabel="wall time, summed over the stage's jobs (s)", title="Wall time per stage")
    axes[0][1].barh(y, [0 if math.isnan(r["max_rss_mb"]) else r["max_rss_mb"] for r in rows], color="C4")
    axes[0][1].set(xlabel="peak resident memory of one job (MB)", title="Peak memory per stage")
    for ax in axes[0]:
        ax.set_yticks(y, [r["stage"] for r in rows], fontsize=7)
        ax.set_ylabel("workflow stage")
        ax.invert_yaxis()
    return to_uri(fig)


def make_figures(ctx: dict) -> dict:
    """Every figure of the report, keyed by name (per-model figures keyed by model)."""
    names = ctx["data"]["label_names"]
    figs = {
        "samples": samples(ctx["data"]),
        "norm": norm_stats(ctx["data"]),
        "class_counts": class_counts(ctx["data"]),
        "gradcheck": gradcheck(ctx["gates"]),
        "gradcheck_exact": gradcheck_exact(ctx["gates"]) if ctx["gates"].get("gradcheck_exact") else None,
        "overfit": overfit(ctx["gates"]),
        "trajectory": trajectory(ctx["gates"]),
        "schedule": schedules(ctx["finals"]),
        "search": {s["model"]: search(s) for s in ctx["searches"]},
        "lr_range": {t["model"]: lr_range(t) for t in ctx.get("lr_range", [])},
        "training": {f["model"]: training(f) for f in ctx["finals"]},
        "confusion": {f["model"]: confusion(f, names) for f in ctx["finals"]},
        "weights": {f["model"]: weights(f, names) for f in ctx["finals"] if f["weight_images"]},
    }
    if "ablation" in ctx["bonus"]:
        figs["ablation"] = ablation(ctx["bonus"]["ablation"])
    if "aug_vs_lambda" in ctx["bonus"]:
        figs["aug_vs_lambda"] = aug_vs_lambda(ctx["bonus"]["aug_vs_lambda"])
    if "init_sensitivity" in ctx["bonus"]:
        figs["init_sensitivity"] = init_sensitivity(ctx["bonus"]["init_sensitivity"])
    if ctx["benchmarks"]["rows"]:
        figs["benchmarks"] = benchmarks(ctx["benchmarks"])
    return figs

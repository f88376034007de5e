"""Figures checked against a reference (issue 23): the confusion matrix follows
sklearn.metrics.confusion_matrix (rows = true class) on an asymmetric case, the figure draws what
sklearn computes (row fractions, counts, per-class recall and precision from
sklearn.metrics.recall_score / precision_score), and every figure names its axes.

A symmetric test case cannot tell rows from columns, so each case asserts its matrix is not
symmetric before it is used; the swapped matrix is planted to show the checks catch it.
"""
import numpy as np
import pytest
from sklearn import metrics

from handbackprop.report import figures
from handbackprop.study import runs

K = 4
NAMES = ["plane", "car", "bird", "cat"]


def asymmetric_case():
    """Seeded labels with one-directional confusions: cats are often called birds, birds never
    cats; class 3 is rarely predicted, so precision and recall differ by class."""
    rng = np.random.default_rng(23)
    y_true = rng.integers(0, K, 400)
    y_pred = y_true.copy()
    cats = np.flatnonzero(y_true == 3)
    y_pred[cats[: len(cats) // 2]] = 2  # half the cats -> bird
    planes = np.flatnonzero(y_true == 0)
    y_pred[planes[::5]] = 1  # a fifth of the planes -> car
    cm = metrics.confusion_matrix(y_true, y_pred, labels=range(K))
    assert not np.array_equal(cm, cm.T)  # else a swap would go unseen
    return y_true, y_pred


def swapped(y_true, y_pred, k=10):
    """Planted: rows = predicted, columns = true (every entry still sums to the image count)."""
    return REAL_CONFUSION(y_pred, y_true, k)


REAL_CONFUSION = runs.confusion_matrix


def check_confusion(confusion_matrix):
    y_true, y_pred = asymmetric_case()
    cm = confusion_matrix(y_true, y_pred, K)
    assert cm.sum() == len(y_true)
    np.testing.assert_array_equal(cm, metrics.confusion_matrix(y_true, y_pred, labels=range(K)))
    # by hand on a tiny case: one bird (2) predicted as cat (3) is cm[2, 3]
    tiny = confusion_matrix(np.array([2, 0]), np.array([3, 0]), K)
    assert tiny[2, 3] == 1 and tiny[3, 2] == 0 and tiny[0, 0] == 1


def test_confusion_matrix_is_sklearns():
    check_confusion(runs.confusion_matrix)
    cm = runs.confusion_matrix(np.array([0, 9]), np.array([9, 9]))  # k defaults to CIFAR's 10
    assert cm.shape == (10, 10) and cm[0, 9] == 1 and cm[9, 9] == 1


def test_confusion_check_catches_swapped_axes():
    with pytest.raises(AssertionError):
        check_confusion(swapped)


def test_confusion_matrix_rejects_labels_it_would_misplace():
    with pytest.raises(ValueError, match="classes in"):
        runs.confusion_matrix(np.array([0, 1]), np.array([0, 4]), K)  # 1·4 + 4 = row 2, col 0
    with pytest.raises(ValueError, match="classes in"):
        runs.confusion_matrix(np.array([0, -1]), np.array([0, 1]), K)
    with pytest.raises(ValueError, match="one length"):
        runs.confusion_matrix(np.array([0, 1]), np.array([0]), K)
    uint8 = runs.confusion_matrix(np.array([19], np.uint8), np.array([19], np.uint8), 20)
    assert uint8[19, 19] == 1  # 19·20 + 19 would wrap in uint8


def test_per_class_recall_and_precision_are_sklearns():
    y_true, y_pred = asymmetric_case()
    pc = figures.per_class(runs.confusion_matrix(y_true, y_pred, K))
    np.testing.assert_allclose(pc["recall"], metrics.recall_score(y_true, y_pred, labels=range(K), average=None))
    np.testing.assert_allclose(pc["precision"],
                               metrics.precision_score(y_true, y_pred, labels=range(K), average=None))
    assert pc["recall"] != pc["precision"]  # this case tells the two apart
    # A class never predicted has no precision (undefined, shown as "–"), not 0 %.
    none = figures.per_class(runs.confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 0]), 2))
    assert none["precision"] == [pytest.approx(1 / 3), None] and none["recall"] == [1.0, 0.0]


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures the figure functions build, kept open instead of encoded."""
    figs = []

    def keep(fig):
        figs.append(fig)
        return "data:image/png;base64,"
    monkeypatch.setattr(figures, "to_uri", keep)
    yield figs
    import matplotlib.pyplot as plt
    for f in figs:
        plt.close(f)


def confusion_figure(drawn, cm):
    figures.confusion({"model": "m", "runs": [{"metrics": {"confusion": np.asarray(cm).tolist()}}],
                       "summary": {}}, NAMES)
    (ax,) = [a for a in drawn[-1].axes if a.images]
    return ax


def check_confusion_figure(ax, y_true, y_pred):
    """What the reader sees, against sklearn: colour = fraction of each true class (row),
    the count in cell (row i, column j), recall on the rows and precision on the columns."""
    expected = metrics.confusion_matrix(y_true, y_pred, labels=range(K))
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()),
                               metrics.confusion_matrix(y_true, y_pred, labels=range(K), normalize="true"))
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text()) for t in ax.texts}
    assert cells == {(i, j): int(expected[i, j]) for i in range(K) for j in range(K)}
    recall = metrics.recall_score(y_true, y_pred, labels=range(K), average=None)
    precision = metrics.precision_score(y_true, y_pred, labels=range(K), average=None)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{n} {100 * r:.0f}%" for n, r in zip(NAMES, recall)]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{n} {100 * p:.0f}%" for n, p in zip(NAMES, precision)]
    assert ax.get_ylabel().startswith("true class") and ax.get_xlabel().startswith("predicted class")


def test_confusion_figure_draws_what_sklearn_computes(drawn):
    y_true, y_pred = asymmetric_case()
    check_confusion_figure(confusion_figure(drawn, runs.confusion_matrix(y_true, y_pred, K)), y_true, y_pred)


def test_confusion_figure_check_catches_swapped_axes(drawn):
    y_true, y_pred = asymmetric_case()
    with pytest.raises(AssertionError):
        check_confusion_figure(confusion_figure(drawn, swapped(y_true, y_pred, K)), y_true, y_pred)


# --------------------------------------------------------------------------- every figure names its axes
IMG = np.zeros((32, 32, 3))
H = {"step": [0, 10, 20], "train_loss": [2.3, 1.5, 1.2], "val_loss": [2.3, 1.6, 1.4], "train_cost": [2.4, 1.6, 1.3],
     "val_cost": [2.4, 1.7, 1.5], "train_accuracy": [0.1, 0.4, 0.5], "val_accuracy": [0.1, 0.35, 0.45],
     "eta": [0.01, 0.05, 0.09]}


def lam_rows(accs):
    return [{"lam": 10.0 ** e, "val_accuracy": a, "val_accuracy_std": 0.01, "diverged": False,
             "indistinguishable": a == max(accs)} for e, a in zip((-4, -3, -2), accs)]


FIGURE_INPUTS = {  # the smallest input each figure function draws from (the keys it reads)
    "samples": lambda: figures.samples({"samples": [{"label": n, "images": [IMG, IMG]} for n in NAMES],
                                        "samples_per_class": 2}),
    "norm_stats": lambda: figures.norm_stats({"norm": {"mean_image": IMG, "channels": [
        {"channel": c, "mean_mean": 120.0, "std_mean": 60.0} for c in ("red", "green", "blue")]}}),
    "class_counts": lambda: figures.class_counts({"label_names": NAMES, "splits": [
        {"split": "final", "class_counts": {"train": [9, 9, 9, 9], "val": [1, 1, 1, 1], "test": [2, 2, 2, 2]}}]}),
    "gradcheck": lambda: figures.gradcheck({
        "gradcheck": [{"variant": "two_layer", "param": p, "max_rel": 1e-9, "norm_rel": 1e-10, "fd_norm_rel": 1e-7}
                      for p in ("W1", "b1")], "thresholds": {"max_rel": 1e-6, "norm_rel": 1e-7, "fd_norm_rel": 1e-5}}),
    "gradcheck_exact": lambda: figures.gradcheck_exact({
        "gradcheck": [{"variant": "two_layer", "param": "W1", "exact_ratio": 1.1, "exact_ours_err": 1.1e-16,
                       "exact_torch_err": 1e-16}], "thresholds": {"exact_ratio": 4.0}}),
    "overfit": lambda: figures.overfit({"overfit": [{"variant": "linear", "history": H, "loss_bound": 0.05,
                                                     "ln10": 2.30, "n_images": 100}]}),
    "trajectory": lambda: figures.trajectory({"trajectory": [
        {"variant": "linear", "costs": [2.3, 2.2], "torch_costs": [2.3, 2.2], "tolerance": 1e-10, "dtype": "float64"}]}),
    "schedules": lambda: figures.schedules([{"model": "m", "runs": [
        {"schedule": {"step": [0, 10, 20], "eta": [0.01, 0.1, 0.01], "n_s": 10, "steps": 20}, "history": H}]}]),
    "lr_range": lambda: figures.lr_range({
        "model": "m", "fixed": False, "settings": {"divergence_factor": 4.0},
        "curve": {"eta": [1e-4, 1e-3, 1e-2, 1e-1], "loss_raw": [2.3, 2.0, 1.8, 5.0],
                  "loss_smoothed": [2.3, 2.1, 1.9, 3.0], "val_accuracy": [0.1, 0.2, 0.3, 0.1]},
        "bounds": {"peak_eta": 1e-2, "eta_max": 5e-3, "eta_min": 5e-4, "smooth": 3}}),
    "search": lambda: figures.search({"model": "m", "coarse": {"rows": lam_rows([0.40, 0.45, 0.42]), "seeds": [1, 2]},
                                      "fine": {"rows": lam_rows([0.44, 0.46, 0.45]), "seeds": [1, 2],
                                               "indistinguishable": [1e-3, 1e-2]},
                                      "chosen": {"lam": 1e-3, "val_accuracy": 0.46}}),
    "training": lambda: figures.training({"model": "m", "summary": {"lam": 1e-3},
                                          "runs": [{"seed": 1, "history": H}]}),
    "confusion": lambda: figures.confusion({"model": "m", "summary": {},
                                            "runs": [{"metrics": {"confusion": np.eye(K, dtype=int).tolist()}}]}, NAMES),
    "weights": lambda: figures.weights({"model": "m", "weight_images": {"seed": 1, "images": [IMG] * K}}, NAMES),
    "ablation": lambda: figures.ablation({"rows": [{"variant": v, "test_accuracy_mean": 0.5, "test_accuracy_std": 0.01}
                                                   for v in ("all", "no_aug")]}),
    "aug_vs_lambda": lambda: figures.aug_vs_lambda({
        "rows": [{"augmentation": aug, "seed": 1, "lam": 10.0 ** e, "val_accuracy": 0.4, "diverged": False}
                 for aug in (False, True) for e in (-4, -3, -2)],
        "per_lam": [{"augmentation": aug, "lam": 10.0 ** e, "val_accuracy_mean": 0.4, "val_accuracy_std": 0.01, "n": 2}
                    for aug in (False, True) for e in (-4, -3, -2)],
        "best_log10_lam": {"no augmentation": {"1": -3.0}, "augmentation": {"1": -3.2}},
        "shift": {"per_seed_shift_log10": [-0.2, -0.3], "seeds": ["1", "2"], "mean_shift_log10": -0.25,
                  "ci_low": -0.9, "ci_high": 0.4, "ci_level": 0.95, "from": "no augmentation",
                  "to": "augmentation", "verdict": "no shift detectable at this budget"}}),
    "init_sensitivity": lambda: figures.init_sensitivity({"rows": [
        {"sigma": s, "batch_norm": bn, "runs": [{"seed": 1, "history": H}]} for s in (1e-1, 1e-3) for bn in (True, False)]}),
    "benchmarks": lambda: figures.benchmarks({"rows": [{"stage": "gates", "seconds": 10.0, "max_rss_mb": 300.0},
                                                       {"stage": "search", "seconds": 90.0, "max_rss_mb": float("nan")}]}),
}


def unnamed_axes(fig) -> list[str]:
    """Every drawn panel (axis shown) without a name on its x or y axis."""
    return [f"panel {i} ({ax.get_title()!r}): x={ax.get_xlabel()!r}, y={ax.get_ylabel()!r}"
            for i, ax in enumerate(fig.axes) if ax.axison and not (ax.get_xlabel() and ax.get_ylabel())]


def test_the_inputs_cover_every_figure_function():
    drawing = {name for name, fn in vars(figures).items()
               if callable(fn) and getattr(fn, "__module__", None) == figures.__name__
               and not name.startswith("_") and name not in ("to_uri", "mosaic", "make_figures", "per_class")}
    assert drawing == set(FIGURE_INPUTS)  # a new figure must be added here, and so be checked


@pytest.mark.parametrize("name", sorted(FIGURE_INPUTS))
def test_every_figure_names_its_axes(drawn, name):
    FIGURE_INPUTS[name]()
    assert drawn, "the figure function drew nothing"
    assert unnamed_axes(drawn[-1]) == []


def test_the_axis_check_catches_an_unnamed_axis(drawn):
    FIGURE_INPUTS["class_counts"]()
    drawn[-1].axes[0].set_xlabel("")  # planted: the class axis as it was before issue 23
    assert unnamed_axes(drawn[-1])

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

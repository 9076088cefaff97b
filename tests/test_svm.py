"""VOC07 SVM: equal to the sequential scikit-learn loop (VISSL's), label handling, C choice, CLI, errors."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.svm import LinearSVC

from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError
from vicreg_bench.metrics import vissl_average_precision
from vicreg_bench.features.files import save_feature_file
from vicreg_bench.tasks.liblinear import LiblinearData, fit_binary_svm
from vicreg_bench.tasks.svm_solver import choose_cost, fit_voc07_svms, kept_in_test, normalize_features, train_targets

COSTS = [0.01, 0.1, 1.0, 10.0, 100.0]


def voc_like(seed=0, n_train=240, n_test=200, dim=24, num_classes=4):
    """Small multi-label features in VOC encoding, with some difficult (0) labels."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(num_classes, dim)) * 0.6

    def draw(n):
        labels = np.where(rng.random((n, num_classes)) < 0.25, 1, -1).astype(np.int8)
        labels[rng.random((n, num_classes)) < 0.05] = 0
        strength = (labels == 1) + 0.5 * (labels == 0)
        x = strength @ directions + rng.normal(size=(n, dim))
        return np.maximum(x + 1.0, 0).astype(np.float32), labels

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return xtr, ytr, xte, yte


def sklearn_loop(xtr, ytr, xte, yte, costs):
    """VISSL's loop, verbatim in spirit: every class, every C, 3-fold CV + refit, sequentially."""
    xtr, xte = normalize_features(xtr), normalize_features(xte)
    cv = np.zeros((ytr.shape[1], len(costs)))
    aps, chosen = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in range(ytr.shape[1]):
            targets = np.where(ytr[:, c] == 1, 1, -1)
            models = []
            for k, cost in enumerate(costs):
                clf = LinearSVC(C=cost, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, loss="squared_hinge",
                                dual=True, tol=1e-4, max_iter=2000)
                cv[c, k] = cross_val_score(clf, xtr, targets, cv=3, scoring="average_precision").mean()
                models.append(clf.fit(xtr, targets))
            best = int(np.argmax(cv[c]))
            chosen.append(costs[best])
            keep = yte[:, c] != 0
            aps.append(vissl_average_precision(models[best].decision_function(xte[keep]), yte[keep, c]))
    return cv, chosen, np.array(aps)


@pytest.mark.parametrize("cv_solver", ["path", "dual"])
def test_equals_sequential_sklearn_loop(cv_solver):
    xtr, ytr, xte, yte = voc_like()
    result = fit_voc07_svms(xtr, ytr, xte, yte, costs=COSTS, n_jobs=2, cv_solver=cv_solver)
    cv, chosen, aps = sklearn_loop(xtr, ytr, xte, yte, COSTS)
    assert result.chosen_cost == chosen
    # Where scikit-learn's dual solver converges (C <= 10 here) both reach the same optimum. At C = 100 it
    # stops at max_iter=2000 unconverged, while LIBLINEAR switches to its primal solver and converges, so
    # the CV APs differ a little there (they are never chosen here).
    np.testing.assert_allclose(result.cv_ap[:, :4], cv[:, :4], atol=1e-3)
    np.testing.assert_allclose(result.cv_ap[:, 4], cv[:, 4], atol=1e-2)
    np.testing.assert_allclose(result.test_ap, aps, atol=1e-3)
    assert abs(result.mAP - 100 * aps.mean()) < 0.1
    metrics = result.metrics()
    assert set(metrics) == {"mAP", "per_class_AP", "chosen_C"} and len(metrics["per_class_AP"]) == 4


def test_single_fit_equals_linearsvc_including_bias_and_label_order():
    rng = np.random.default_rng(1)
    x = normalize_features(np.abs(rng.normal(size=(120, 10))) + np.eye(10)[rng.integers(0, 10, 120)] * 2)
    targets = np.where(x[:, 0] > np.median(x[:, 0]), 1.0, -1.0)
    data = LiblinearData(x)
    for first in (1.0, -1.0):  # LIBLINEAR orients w by the first label it sees
        order = np.argsort(targets != first, kind="stable")
        rows = order
        w = fit_binary_svm(data, rows, targets[rows], cost=1.0)
        clf = LinearSVC(C=1.0, class_weight={1: 2, -1: 1}, intercept_scaling=1.0, loss="squared_hinge", dual=True,
                        tol=1e-4, max_iter=2000).fit(x[rows], targets[rows])
        np.testing.assert_allclose(w[:-1], clf.coef_[0], atol=2e-3)
        assert w[-1] == pytest.approx(clf.intercept_[0], abs=2e-3)  # -B 1 regularises the bias like intercept_scaling=1


def test_parallel_equals_sequential_and_is_reproducible():
    xtr, ytr, xte, yte = voc_like(2, n_train=150, n_test=90)
    a = fit_voc07_svms(xtr, ytr, xte, yte, costs=[0.1, 10.0], n_jobs=1)
    b = fit_voc07_svms(xtr, ytr, xte, yte, costs=[0.1, 10.0], n_jobs=2)
    np.testing.assert_array_equal(a.cv_ap, b.cv_ap)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_label_conventions():
    voc = np.array([1, -1, 0, 1, 0])
    np.testing.assert_array_equal(train_targets(voc), [1, -1, -1, 1, -1])  # difficult is negative in training
    np.testing.assert_array_equal(kept_in_test(voc), [True, True, False, True, False])  # and dropped in test
    x = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(normalize_features(x), [[3 / (5 + 1e-5), 4 / (5 + 1e-5)]])


def test_cost_ties_go_to_smallest_c():
    cv = np.array([[0.5, 0.7, 0.7], [0.9, 0.9, 0.1]])
    assert list(choose_cost(cv, [0.1, 1.0, 10.0])) == [1, 0]
    assert list(choose_cost(cv, [10.0, 1.0, 0.1])) == [2, 1]  # unsorted list: still the smallest C


def test_class_without_positives_is_a_user_error():
    xtr, ytr, xte, yte = voc_like(3, n_train=60, n_test=40)
    ytr[:, 1] = -1
    with pytest.raises(UserError, match="class_1"):
        fit_voc07_svms(xtr, ytr, xte, yte, costs=[1.0], n_jobs=1)


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    xtr, ytr, xte, yte = voc_like(4, n_train=120, n_test=80, num_classes=3)
    names = ["cat", "dog", "sheep"]
    a, b = tmp_path / "trainval.npz", tmp_path / "test.npz"
    save_feature_file(a, xtr, ytr, class_names=names)
    save_feature_file(b, xte, yte, class_names=names)
    out = tmp_path / "svm.json"
    rc = cli_main(["svm", "--train", str(a), "--test", str(b), "--costs", "0.1", "1", "--jobs", "1",
                   "--image-variant", "center_crop", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["metrics"]["per_class_AP"]) == set(names)
    assert report["params"]["image_variant"] == "center_crop"
    assert 0 <= report["metrics"]["mAP"] <= 100
    assert "mAP" in capsys.readouterr().out

    indices = tmp_path / "indices.npz"
    save_feature_file(indices, xte, np.zeros(len(xte), dtype=int))
    bad_values = tmp_path / "values.npz"
    save_feature_file(bad_values, xte, np.full(yte.shape, 2, dtype=np.int8))
    for path, message in ((indices, "VOC encoding"), (bad_values, "found [2]")):
        rc = cli_main(["svm", "--train", str(a), "--test", str(path)])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and err.count("\n") == 1, err

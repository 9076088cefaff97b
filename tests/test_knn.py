"""Weighted k-NN: equal to a brute-force numpy reference, any test-set size, clamped k, CLI and errors."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest

from vicreg_bench.cli import main as cli_main
from vicreg_bench.features.files import save_feature_file
from vicreg_bench.tasks.knn import knn_classify, metric_name, search_topk


def brute_force_knn(train, train_labels, test, test_labels, k, temperature, num_classes):
    """Reference written from the protocol text, one test image at a time, in float64."""
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    test = test / np.linalg.norm(test, axis=1, keepdims=True)
    k = min(k, len(train))
    top = min(5, k, num_classes)
    hit1 = hit5 = 0
    for x, label in zip(test.astype(np.float64), test_labels):
        sims = train.astype(np.float64) @ x
        neighbours = np.argsort(-sims, kind="stable")[:k]
        votes = np.zeros(num_classes)
        for j in neighbours:
            votes[train_labels[j]] += np.exp(sims[j] / temperature)
        ranking = np.argsort(-votes, kind="stable")[:top]
        hit1 += ranking[0] == label
        hit5 += label in ranking
    n = len(test_labels)
    return 100.0 * hit1 / n, 100.0 * hit5 / n


def clustered(rng, n, num_classes, dim, centers):
    labels = rng.integers(0, num_classes, n)
    return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.mark.parametrize("n_test", [1, 7, 150])
def test_equals_brute_force_reference(n_test):
    rng = np.random.default_rng(n_test)
    num_classes, dim = 12, 24
    centers = rng.normal(size=(num_classes, dim)) * 0.8
    train, train_labels = clustered(rng, 400, num_classes, dim, centers)
    test, test_labels = clustered(rng, n_test, num_classes, dim, centers)
    ks = (1, 3, 10, 20, 100, 200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no k is clamped here
        metrics = knn_classify(train, train_labels, test, test_labels, ks=ks, temperature=[0.07, 0.5], chunk_size=4)
    for k in ks:
        for t, suffix in ((0.07, None), (0.5, 0.5)):
            top1, top5 = brute_force_knn(train, train_labels, test, test_labels, k, t, num_classes)
            assert metrics[metric_name(k, 1, suffix)] == pytest.approx(top1), (k, t)
            assert metrics[metric_name(k, 5, suffix)] == pytest.approx(top5), (k, t)


def test_k_above_train_size_is_clamped_and_reported():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(30, 8)).astype(np.float32)
    train_labels = rng.integers(0, 3, 30)
    test = rng.normal(size=(7, 8)).astype(np.float32)
    test_labels = rng.integers(0, 3, 7)
    with pytest.warns(UserWarning, match="exceed the 30 train features"):
        metrics = knn_classify(train, train_labels, test, test_labels, ks=(20, 200))
    top1, top5 = brute_force_knn(train, train_labels, test, test_labels, 30, 0.07, 3)
    assert metrics["k200_top1"] == pytest.approx(top1)
    assert metrics["k200_top5"] == pytest.approx(top5)


def test_tied_similarities_with_equal_labels_are_order_independent():
    # Duplicated train points tie in similarity but share a label, so any tie order gives the same votes.
    rng = np.random.default_rng(4)
    base = rng.normal(size=(60, 16)).astype(np.float32)
    base_labels = rng.integers(0, 5, 60)
    train = np.concatenate([base, base, 2.0 * base])  # 2x scale: same direction after L2 normalisation
    train_labels = np.concatenate([base_labels] * 3)
    test = rng.normal(size=(9, 16)).astype(np.float32)
    test_labels = rng.integers(0, 5, 9)
    metrics = knn_classify(train, train_labels, test, test_labels, ks=(3, 9, 30))
    for k in (3, 9, 30):
        top1, top5 = brute_force_knn(train, train_labels, test, test_labels, k, 0.07, 5)
        assert metrics[f"k{k}_top1"] == pytest.approx(top1)
        assert metrics[f"k{k}_top5"] == pytest.approx(top5)


def test_torch_and_faiss_backends_agree():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(300, 32)).astype(np.float32)
    queries = rng.normal(size=(50, 32)).astype(np.float32)
    s1, i1 = search_topk(train, queries, 20, backend="faiss-cpu", chunk_size=7)
    s2, i2 = search_topk(train, queries, 20, backend="torch", chunk_size=1000)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, rtol=1e-5, atol=1e-5)


def test_metric_names_fit_the_results_schema():
    pattern = re.compile(r"^k\d+_top[15](_T[0-9.]+)?$")  # results_schema.json knn_task
    rng = np.random.default_rng(6)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    metrics = knn_classify(x, y, x[:5], y[:5], ks=(10, 20), temperature=[0.07, 0.1, 1.0, 0.00001])
    assert all(pattern.match(name) for name in metrics), list(metrics)
    assert "k20_top1_T0.00001" in metrics


def _write_pair(tmp_path, rng, n_train=80, n_test=7, dim=8, num_classes=4):
    centers = rng.normal(size=(num_classes, dim)) * 2
    train, train_labels = clustered(rng, n_train, num_classes, dim, centers)
    test, test_labels = clustered(rng, n_test, num_classes, dim, centers)
    a, b = tmp_path / "train.npz", tmp_path / "test.npz"
    save_feature_file(a, train, train_labels)
    save_feature_file(b, test, test_labels)
    return a, b


def test_cli_end_to_end(tmp_path, capsys):
    a, b = _write_pair(tmp_path, np.random.default_rng(7))
    out = tmp_path / "knn.json"
    rc = cli_main(["knn", "--train", str(a), "--test", str(b), "--k", "5", "20", "200", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert set(report["metrics"]) == {"k5_top1", "k5_top5", "k20_top1", "k20_top5", "k200_top1", "k200_top5"}
    assert report["metrics"]["k20_top1"] > 50  # well-separated clusters
    assert any("clamped" in n for n in report["notes"])
    assert "k20_top1" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    rng = np.random.default_rng(8)
    a, b = _write_pair(tmp_path, rng)
    multi = tmp_path / "multi.npz"
    save_feature_file(multi, rng.normal(size=(7, 8)), np.ones((7, 3), dtype=np.int8))
    other_dim = tmp_path / "dim.npz"
    save_feature_file(other_dim, rng.normal(size=(7, 5)), np.zeros(7, dtype=int))
    no_labels = tmp_path / "nolabels.npz"
    np.savez(no_labels, features=np.zeros((3, 2), np.float32))
    as_json = tmp_path / "results.json"
    as_json.write_text('{"schema_version": 1}')
    as_npy = tmp_path / "features.npy"
    np.save(as_npy, np.zeros((3, 2), np.float32))
    cases = [
        (["--test", str(multi)], "labels' must be class indices"),
        (["--test", str(other_dim)], "8-d features but --test"),
        (["--test", str(no_labels)], "missing key(s) labels"),
        (["--test", str(tmp_path / "missing.npz")], "no such file"),
        (["--test", str(as_json)], "not a zip archive; expected an .npz archive"),
        (["--test", str(as_npy)], "a single .npy array"),
        (["--test", str(b), "--k", "0"], "--k"),
    ]
    for extra, message in cases:
        rc = cli_main(["knn", "--train", str(a), *extra])
        err = capsys.readouterr().err
        assert rc == 2, extra
        assert message in err and err.count("\n") == 1, err

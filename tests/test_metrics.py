"""AP and top-k metrics against hand-computed values and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from vicreg_bench.metrics import noninterpolated_average_precision, topk_accuracy, vissl_average_precision


def interpolated_ap_by_definition(ranked_positive: list[bool]) -> float:
    """All-point interpolated AP written from its definition: for each positive (in rank order), the
    best precision at that rank or any later rank, averaged over positives."""
    n_pos = sum(ranked_positive)
    precisions = []
    tp = 0
    for rank, is_pos in enumerate(ranked_positive, start=1):
        tp += is_pos
        precisions.append(tp / rank)
    total = 0.0
    for rank, is_pos in enumerate(ranked_positive):
        if is_pos:
            total += max(precisions[rank:])
    return total / n_pos


@pytest.mark.parametrize(
    "scores, labels, expected",
    [
        ([0.9, 0.8, 0.1], [1, 1, 0], 1.0),  # perfect ranking
        ([0.9, 0.8, 0.1], [0, 1, 1], 2 / 3),  # neg, pos, pos: interpolation lifts the first positive to 2/3
        ([0.3, 0.2, 0.1], [0, 0, 1], 1 / 3),  # single positive ranked last
        ([0.5, 0.4, 0.3, 0.2], [1, 0, 1, 0], (1 + 2 / 3) / 2),
        ([0.5, 0.4, 0.3, 0.2, 0.1], [0, 1, 0, 0, 1], (1 / 2 + 2 / 5) / 2),
        ([3.0, -1.0, 2.0], [-1, 1, 1], (2 / 3 + 2 / 3) / 2),  # -1 labels are negatives; scores need not be in [0, 1]
    ],
)
def test_vissl_ap_hand_cases(scores, labels, expected):
    assert vissl_average_precision(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_noninterpolated_hand_case_and_difference_from_vissl():
    # neg, pos, pos: precisions at the positives are 1/2 and 2/3 -> 7/12 without interpolation
    assert noninterpolated_average_precision([0.9, 0.8, 0.1], [0, 1, 1]) == pytest.approx(7 / 12)
    assert vissl_average_precision([0.9, 0.8, 0.1], [0, 1, 1]) == pytest.approx(2 / 3)


def test_vissl_ap_matches_definition_and_bounds_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 50))
        labels = rng.integers(0, 2, n)
        if labels.sum() == 0:
            continue
        scores = rng.normal(size=n)  # no ties
        ranked = [bool(labels[i]) for i in np.argsort(-scores)]
        ap = vissl_average_precision(scores, labels)
        assert ap == pytest.approx(interpolated_ap_by_definition(ranked), abs=1e-12)
        sk = average_precision_score(labels, scores)
        assert ap >= sk - 1e-12  # interpolation never lowers precision
        # equal to sklearn exactly when precision never rises after a positive (here: positives first)
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    labels = np.array([1, 1, 0, 0, 0])
    assert vissl_average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))


def test_noninterpolated_equals_sklearn_with_ties():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 60))
        labels = rng.choice([-1, 1], n)
        if (labels == 1).sum() == 0:
            continue
        scores = rng.integers(0, 4, n).astype(float)  # many ties: sklearn takes a tie group at once
        assert noninterpolated_average_precision(scores, labels) == pytest.approx(
            average_precision_score(labels, scores), abs=1e-12
        )


def test_vissl_ap_tie_convention():
    # Equal scores: ranked by a stable argsort, reversed, so the later sample comes first.
    assert vissl_average_precision([0.5, 0.5], [0, 1]) == pytest.approx(1.0)
    assert vissl_average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    # scikit-learn scores the tie group as one threshold, independent of order
    assert average_precision_score([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert average_precision_score([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_no_positive_gives_nan():
    assert math.isnan(vissl_average_precision([0.1, 0.2], [0, -1]))
    assert math.isnan(noninterpolated_average_precision([0.1, 0.2], [0, 0]))


def test_topk_accuracy_hand_case():
    scores = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = np.array([2, 0, 0, 2])
    acc = topk_accuracy(scores, labels, ks=(1, 2, 5))
    assert acc[1] == pytest.approx(25.0)  # only row 1
    assert acc[2] == pytest.approx(50.0)  # rows 0 and 1
    assert acc[5] == pytest.approx(100.0)  # k >= number of classes: always right


def test_topk_accuracy_rejects_bad_shapes():
    with pytest.raises(ValueError):
        topk_accuracy(np.zeros((3, 4)), np.zeros(2, dtype=int))

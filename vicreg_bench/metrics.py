"""Evaluation metrics with the exact conventions of the reference implementations.

- `vissl_average_precision`: the AP that VISSL's VOC07 SVM benchmark reports on the test set
  (vissl/utils/svm_utils/evaluate.py, `get_precision_recall` + `calculate_ap`): all-point
  interpolated AP (precision made non-increasing from the right, summed where recall changes).
- `noninterpolated_average_precision`: the AP VISSL uses to *choose C* in cross-validation
  (scikit-learn's `average_precision_score`, reached through `cross_val_score(scoring=
  "average_precision")`): the step-wise sum of (R_n - R_{n-1}) * P_n, tied scores taken together.
- `topk_accuracy`: top-1/top-5 in percent, as the linear and k-NN protocols report them.

Metrics are fractions here (0..1) except `topk_accuracy`, which returns percentages like the paper.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _binary_inputs(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same length")
    return scores, labels > 0


def vissl_average_precision(scores, labels) -> float:
    """VISSL's test-set AP for one class, as a fraction (VOC07 SVM reports 100 x the class mean).

    `labels` > 0 is a positive, anything else a negative: drop ignored samples (VOC "difficult")
    before calling. Algorithm (VISSL evaluate.py): rank by score, descending; precision P and recall
    R after each sample; pad R with 0 and 1 and P with 0 and 0; make P non-increasing from the right
    (P[i] = max(P[i], P[i+1])); AP = sum over points where R changes of (R[i] - R[i-1]) * P[i].
    This is "all-point interpolated" AP (not VOC's 11-point metric), so it is >= the
    non-interpolated AP of scikit-learn (equal when precision never rises after a positive).

    Ties: VISSL ranks with `np.argsort(scores)[::-1]`, so among equal scores the order is whatever
    numpy's sort gives, reversed. We use a stable argsort reversed, which is exactly what numpy's
    default sort gives for small or untied inputs, and is deterministic in every case; with ties
    the AP may depend on that order (scikit-learn instead scores a tie group as one threshold).
    Returns nan when there is no positive (VISSL divides by zero there too).
    """
    scores, positive = _binary_inputs(scores, labels)
    num_pos = int(positive.sum())
    if num_pos == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")[::-1]
    tp = positive[order].astype(np.float64)
    cum_tp = np.cumsum(tp)
    cum_fp = np.cumsum(1.0 - tp)
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / num_pos
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # non-increasing from the right
    changed = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[changed] - mrec[changed - 1]) * mpre[changed]))


def noninterpolated_average_precision(scores, labels) -> float:
    """scikit-learn's `average_precision_score` (what VISSL's cross-validation maximises), as a fraction.

    AP = sum_n (R_n - R_{n-1}) * P_n over the distinct score thresholds, descending; samples with
    equal scores enter together, so the result does not depend on their order. nan without positives.
    """
    scores, positive = _binary_inputs(scores, labels)
    num_pos = int(positive.sum())
    if num_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    tp = positive[order].astype(np.float64)
    # last index of each group of equal scores
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    cum_tp = np.cumsum(tp)[last]
    cum_all = last + 1.0
    precision = cum_tp / cum_all
    recall = cum_tp / num_pos
    prev_recall = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - prev_recall) * precision))


def topk_accuracy(logits_or_scores, labels, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy in percent for each k: the label is among the k highest-scoring classes.

    Works with numpy arrays or torch tensors (N x C scores, N labels). k larger than C counts
    every sample as correct (the label is necessarily among all classes). Ties between a wrong and
    the true class are broken by `torch.topk`/argsort order, as in the reference evaluate.py.
    """
    import torch

    scores = torch.as_tensor(logits_or_scores)
    target = torch.as_tensor(labels).reshape(-1).to(scores.device)
    if scores.ndim != 2 or scores.shape[0] != target.shape[0]:
        raise ValueError(f"expected N x C scores and N labels, got {tuple(scores.shape)} and {tuple(target.shape)}")
    n, c = scores.shape
    if n == 0:
        raise ValueError("topk_accuracy needs at least one sample")
    maxk = min(max(ks), c)
    top = scores.topk(maxk, dim=1, largest=True, sorted=True).indices
    correct = top.eq(target.view(-1, 1))
    return {k: float(correct[:, : min(k, c)].any(dim=1).float().sum().item() * 100.0 / n) for k in ks}


from vicreg_bench.detection.voc_eval import voc_detection_ap  # noqa: F401,E402

"""VOC07 SVM speed: vicreg-bench's LIBLINEAR driver vs the plain sequential scikit-learn loop.

The baseline is VISSL's loop written plainly: for each class, for each C, 3-fold
`cross_val_score(LinearSVC(...), scoring="average_precision")` and a refit on all of trainval, one
fit after another; then the test AP of the chosen C. Both run on the same synthetic VOC07-sized
features (5011 trainval, 4952 test, 2048-d, 20 classes with VOC07's label frequencies including
"difficult" 0 labels), built to be only moderately separable so that large costs are as slow as
they are on real features. Prints both wall times, the ratio, and how far the mAPs and the chosen
costs agree.

    .venv/bin/python benchmarks/svm_speed.py            # full size (the reference loop takes a while)
    .venv/bin/python benchmarks/svm_speed.py --quick    # smaller: 1500 / 1500 images, 512-d
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vicreg_bench.metrics import vissl_average_precision  # noqa: E402
from vicreg_bench.tasks.liblinear import NEGATIVE_WEIGHT, POSITIVE_WEIGHT, TOLERANCE  # noqa: E402
from vicreg_bench.tasks.svm_solver import (  # noqa: E402
    CV_FOLDS, VISSL_COSTS, default_jobs, fit_voc07_svms, kept_in_test, normalize_features, train_targets,
)

# Images per class in VOC07 trainval / test (positives), in the sorted class order.
VOC07_TRAINVAL_POSITIVES = [238, 243, 330, 181, 244, 186, 713, 337, 445, 141, 200, 421, 287, 245, 2008, 245, 96, 229, 261, 256]
VOC07_TEST_POSITIVES = [204, 239, 282, 172, 212, 174, 721, 322, 417, 127, 190, 418, 274, 222, 2007, 224, 97, 223, 259, 229]
DIFFICULT_FRACTION = 0.08  # extra images per class labelled 0 ("difficult only"), relative to positives


def _voc_labels(n: int, positives: list[int], rng: np.random.Generator) -> np.ndarray:
    scale = n / 5011 if n < 5011 else 1.0
    labels = -np.ones((n, len(positives)), dtype=np.int8)
    for c, p in enumerate(positives):
        p = max(3, int(round(p * scale)))
        d = max(1, int(round(p * DIFFICULT_FRACTION)))
        rows = rng.choice(n, p + d, replace=False)
        labels[rows[:p], c] = 1
        labels[rows[p:], c] = 0
    return labels


def make_voc07_like_features(n_train: int = 5011, n_test: int = 4952, dim: int = 2048, seed: int = 0,
                             signal: float = 0.11) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic res5avg-like features: non-negative (ReLU, ~15% exact zeros), a per-class direction
    added with a random per-image strength (half strength for 'difficult'), isotropic plus low-rank
    noise. `signal` sets how separable the classes are (0.11 gives a mAP around 80 at 2048-d)."""
    rng = np.random.default_rng(seed)
    num_classes = len(VOC07_TRAINVAL_POSITIVES)
    directions = rng.standard_normal((num_classes, dim), dtype=np.float32) * signal * np.sqrt(2048 / dim)
    low_rank = rng.standard_normal((32, dim), dtype=np.float32) * 0.12

    def features(labels: np.ndarray) -> np.ndarray:
        presence = (labels == 1) + 0.5 * (labels == 0)
        amplitude = rng.uniform(0.3, 1.5, size=labels.shape).astype(np.float32)
        x = (presence * amplitude).astype(np.float32) @ directions
        x += rng.standard_normal((labels.shape[0], 32), dtype=np.float32) @ low_rank
        x += rng.standard_normal(x.shape, dtype=np.float32)
        return np.maximum(x + 1.0, 0.0)

    y_train = _voc_labels(n_train, VOC07_TRAINVAL_POSITIVES, rng)
    y_test = _voc_labels(n_test, VOC07_TEST_POSITIVES, rng)
    return features(y_train), y_train, features(y_test), y_test


def sklearn_reference(x_train, y_train, x_test, y_test, costs) -> dict:
    """The plain loop: every class, every C, every fold, a fresh scikit-learn LinearSVC, in sequence.

    As in VISSL, every C is also refit on all of trainval. The time of the leaner loop that refits
    only the chosen C ("lean_seconds") is measured in the same run: all of the CV time plus the refit
    time of the chosen C alone."""
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    start = time.perf_counter()
    x_train = normalize_features(x_train)
    x_test = normalize_features(x_test)
    num_classes = y_train.shape[1]
    cv_ap = np.zeros((num_classes, len(costs)))
    test_ap, chosen = [], []
    unused_refit_seconds = 0.0
    for c in range(num_classes):
        targets = train_targets(y_train[:, c])
        models, refit_seconds = [], []
        for k, cost in enumerate(costs):
            clf = LinearSVC(C=cost, class_weight={1: POSITIVE_WEIGHT, -1: NEGATIVE_WEIGHT}, intercept_scaling=1.0,
                            penalty="l2", loss="squared_hinge", tol=TOLERANCE, dual=True, max_iter=2000)
            cv_ap[c, k] = cross_val_score(clf, x_train, targets, cv=CV_FOLDS, scoring="average_precision").mean()
            t = time.perf_counter()
            models.append(clf.fit(x_train, targets))
            refit_seconds.append(time.perf_counter() - t)
        best = int(np.argmax(cv_ap[c]))
        chosen.append(costs[best])
        unused_refit_seconds += sum(refit_seconds) - refit_seconds[best]
        keep = kept_in_test(y_test[:, c])
        test_ap.append(vissl_average_precision(models[best].decision_function(x_test[keep]), y_test[keep, c]))
        print(f"  reference: class {c + 1}/{num_classes} done, {time.perf_counter() - start:.0f} s", flush=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "lean_seconds": seconds - unused_refit_seconds, "mAP": 100 * float(np.mean(test_ap)),
            "chosen": chosen, "test_ap": np.array(test_ap), "cv_ap": cv_ap}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1500 train / 1500 test, 512-d (minutes instead of tens of minutes)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes for vicreg-bench (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true", help="time vicreg-bench only")
    parser.add_argument("--cv-solver", choices=["path", "dual"], default="path",
                        help="vicreg-bench's cross-validation solver (see vicreg_bench/tasks/svm.py)")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args()

    n_train, n_test, dim = (1500, 1500, 512) if args.quick else (5011, 4952, 2048)
    x_train, y_train, x_test, y_test = make_voc07_like_features(n_train, n_test, dim, args.seed)
    costs = list(VISSL_COSTS)
    jobs = args.jobs or default_jobs()
    print(f"synthetic VOC07-like features: train {x_train.shape}, test {x_test.shape}, {y_train.shape[1]} classes, "
          f"{(x_train == 0).mean():.0%} zeros, {len(costs)} costs, {CV_FOLDS} folds; vicreg-bench uses {jobs} process(es)")

    cpu0 = cpu_seconds()
    result = fit_voc07_svms(x_train, y_train, x_test, y_test, costs=costs, n_jobs=jobs, cv_solver=args.cv_solver)
    cpu_ours = cpu_seconds() - cpu0
    print(f"vicreg-bench (LIBLINEAR, {jobs} jobs, cv_solver={args.cv_solver}): {result.seconds:8.1f} s wall "
          f"{cpu_ours:8.1f} s CPU   mAP {result.mAP:.3f}", flush=True)
    figures = {"n_train": n_train, "n_test": n_test, "dim": dim, "jobs": jobs, "cv_solver": args.cv_solver,
               "load_average_at_start": list(os.getloadavg()),
               "vicreg_bench_seconds": result.seconds, "vicreg_bench_cpu_seconds": cpu_ours,
               "vicreg_bench_mAP": result.mAP}
    if not args.skip_reference:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning at large C, as in VISSL's own runs
            cpu0 = cpu_seconds()
            ref = sklearn_reference(x_train, y_train, x_test, y_test, costs)
            cpu_ref = cpu_seconds() - cpu0
        # the machine is shared: time vicreg-bench again after the long reference and use the mean of both
        cpu0 = cpu_seconds()
        again = fit_voc07_svms(x_train, y_train, x_test, y_test, costs=costs, n_jobs=jobs, cv_solver=args.cv_solver)
        cpu_again = cpu_seconds() - cpu0
        print(f"vicreg-bench again after the reference: {again.seconds:8.1f} s wall {cpu_again:8.1f} s CPU   "
              f"mAP {again.mAP:.3f}", flush=True)
        assert np.array_equal(again.weights, result.weights), "vicreg-bench should be deterministic"
        figures.update(vicreg_bench_seconds_runs=[result.seconds, again.seconds],
                       vicreg_bench_cpu_seconds_runs=[cpu_ours, cpu_again])
        result.seconds = (result.seconds + again.seconds) / 2
        cpu_ours = (cpu_ours + cpu_again) / 2
        print(f"vicreg-bench mean of both runs: {result.seconds:8.1f} s wall {cpu_ours:8.1f} s CPU")
        same_c = sum(a == b for a, b in zip(ref["chosen"], result.chosen_cost))
        lean_cpu = cpu_ref * ref["lean_seconds"] / ref["seconds"]
        print(f"scikit-learn sequential loop (VISSL: refit every C): {ref['seconds']:8.1f} s wall {cpu_ref:8.1f} s CPU   "
              f"mAP {ref['mAP']:.3f}")
        print(f"  the same loop refitting only the chosen C:           {ref['lean_seconds']:8.1f} s wall")
        print(f"speed-up (wall): {ref['seconds'] / result.seconds:.2f}x vs VISSL's loop, "
              f"{ref['lean_seconds'] / result.seconds:.2f}x vs the lean loop   "
              f"(CPU: {cpu_ref / cpu_ours:.2f}x, {lean_cpu / cpu_ours:.2f}x)")
        print(f"  "
              f"|mAP difference|: {abs(ref['mAP'] - result.mAP):.4f}   "
              f"same chosen C: {same_c}/{len(ref['chosen'])} classes   "
              f"max |CV AP difference|: {np.abs(ref['cv_ap'] - result.cv_ap).max():.5f}   "
              f"max |class AP difference| x100: {100 * np.abs(ref['test_ap'] - result.test_ap).max():.4f}")
        figures.update(reference_seconds=ref["seconds"], reference_cpu_seconds=cpu_ref, reference_mAP=ref["mAP"],
                       lean_reference_seconds=ref["lean_seconds"], speedup=ref["seconds"] / result.seconds,
                       speedup_vs_lean=ref["lean_seconds"] / result.seconds, same_chosen_C=same_c)
    figures["load_average_at_end"] = list(os.getloadavg())
    print(f"load average (1, 5, 15 min) at start {figures['load_average_at_start']}, at end {figures['load_average_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

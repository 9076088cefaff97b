"""VOC07 linear SVMs on frozen features, the VISSL protocol (tools/train_svm.py, svm_utils/): the solver.

Protocol (PROTOCOLS.md):
- features in float64, each row divided by (its L2 norm + 1e-5);
- one binary SVM per class: L2-regularised squared-hinge loss, LIBLINEAR's dual coordinate-descent
  solver (solver 1 = L2R_L2LOSS_SVC_DUAL, what scikit-learn's LinearSVC(dual=True) runs), bias
  feature 1 regularised like the weights (sklearn intercept_scaling=1 = LIBLINEAR -B 1), tolerance
  1e-4, class weights {+1: 2, -1: 1};
- labels in VOC encoding: train: 1 -> +1, and both -1 (absent) and 0 (difficult) -> -1;
  test: difficult (0) images are dropped for that class;
- for each class and each C in the cost list: stratified, unshuffled 3-fold cross-validation on
  trainval, scored by scikit-learn's non-interpolated average precision of the decision values
  (VISSL's `cross_val_score(scoring="average_precision")`); the C with the best mean CV AP wins,
  ties to the smallest C (VISSL's argmax over the ascending list); refit on all of trainval;
- test AP: VISSL's all-point interpolated AP (`vicreg_bench.metrics.vissl_average_precision`);
  mAP = 100 x the mean over classes.

Why this is fast (benchmarks/svm_speed.py measures it against the plain scikit-learn loop):
- the features are converted to LIBLINEAR's sparse node format once; every class, cost and fold
  trains on a view of that one array (a fold is an array of row pointers, a class a label vector),
  where scikit-learn converts the dense matrix again for each of its 880 fits;
- only the chosen C is refit on all of trainval (VISSL fits all 11 and keeps one: same result);
- (class, fold) jobs run in parallel worker processes that share the converted data by fork, the
  classes with most positives (the slowest) first;
- warm starts along the cost list: LIBLINEAR's dual solver cannot be warm-started (its initial
  alpha is fixed at 0; `init_sol` and the `-C` search built on it exist only for the primal solvers
  -s 0, 2, 11, and `-C` uses its own random folds scored by accuracy, so it cannot reproduce
  VISSL's choice of C). So each fold walks the costs in ascending order: the dual solver (-s 1)
  for C <= 1, where it converges in a few passes, then LIBLINEAR's primal Newton solver (-s 2) for
  the same objective, started from the previous C's solution. The L2-loss SVM objective is strictly
  convex, so both solvers target the same unique w; `cv_solver="dual"` runs every fit with -s 1;
- LIBLINEAR >= 2.40 itself caps the dual solver at 300 passes and finishes with the primal
  solver; scikit-learn's copy keeps iterating the dual up to max_iter=2000. When the dual has not
  converged by then (large C), LIBLINEAR's answer is the closer one to the optimum.
LIBLINEAR computes in float64 whatever the input dtype, so float32 features save nothing there.

Determinism: LIBLINEAR shuffles coordinates with the C library's rand(); each fit re-seeds it with
srand(seed) inside its own worker process, so results do not depend on scheduling.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vicreg_bench.errors import UserError
from vicreg_bench.tasks.liblinear import (
    NEGATIVE_WEIGHT,
    POSITIVE_WEIGHT,
    TOLERANCE,
    LiblinearData,
    decision_values,
    fit_binary_svm,
)

VISSL_COSTS: tuple[float, ...] = (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)
CV_FOLDS = 3
NORM_EPS = 1e-5
IMAGE_VARIANTS = ("squash", "center_crop")
CV_SOLVERS = ("path", "dual")
DUAL_MAX_COST = 1.0  # "path" mode: the dual solver up to this C (fast there), warm-started primal above


# ----------------------------------------------------------------------------------------------
# protocol pieces


def normalize_features(features: np.ndarray) -> np.ndarray:
    """VISSL's normalisation: float64, each row / (L2 norm + 1e-5)."""
    x = np.asarray(features, dtype=np.float64)
    return x / (np.linalg.norm(x, axis=1) + NORM_EPS)[:, None]


def train_targets(voc_labels: np.ndarray) -> np.ndarray:
    """VOC column (1 present, -1 absent, 0 difficult) -> SVM targets: +1 present, -1 otherwise."""
    return np.where(np.asarray(voc_labels) == 1, 1.0, -1.0)


def kept_in_test(voc_labels: np.ndarray) -> np.ndarray:
    """Test images that count for a class: difficult (0) ones are dropped."""
    return np.asarray(voc_labels) != 0


def cv_folds(targets: np.ndarray, n_folds: int = CV_FOLDS) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_rows, held_out_rows) of scikit-learn's StratifiedKFold(n_folds, shuffle=False),
    which is what VISSL's `cross_val_score(cv=3)` uses for a classifier."""
    from sklearn.model_selection import StratifiedKFold

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer than n_splits members"
        return list(StratifiedKFold(n_splits=n_folds).split(np.zeros(len(targets)), targets))


def cv_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
    """The CV score: scikit-learn's average_precision_score of the held-out fold (what VISSL's
    `cross_val_score(scoring="average_precision")` computes; `noninterpolated_average_precision` is
    tested equal to it). A held-out fold without positives scores 0, as in scikit-learn."""
    from vicreg_bench.metrics import noninterpolated_average_precision

    ap = noninterpolated_average_precision(scores, targets)
    return 0.0 if math.isnan(ap) else ap


def choose_cost(cv_ap: np.ndarray, costs: Sequence[float]) -> np.ndarray:
    """Per-class C with the highest mean CV AP; ties go to the smallest C (costs sorted ascending)."""
    order = np.argsort(np.asarray(costs, dtype=np.float64), kind="stable")
    best = np.argmax(cv_ap[:, order], axis=1)  # first maximum = smallest C among ties
    return order[best]


# ----------------------------------------------------------------------------------------------
# parallel driver

_SHARED: dict = {}  # set by the parent before forking workers: data, features, targets, folds, costs, seed


def _cv_job(job: tuple[int, int]) -> tuple[int, int, np.ndarray]:
    """One (class, fold): train on the fold's training part for every C, ascending, and score the
    held-out part. In "path" mode, costs above DUAL_MAX_COST use the primal solver warm-started from
    the previous C's solution (LIBLINEAR's own parameter-search strategy); in "dual" mode every fit is
    a cold dual fit, exactly as scikit-learn does."""
    cls, fold = job
    s = _SHARED
    targets = s["targets"][:, cls]
    train_rows, held_rows = s["folds"][cls][fold]
    costs = s["costs"]
    aps = np.zeros(len(costs))
    x_held, y_held, y_train = s["x"][held_rows], targets[held_rows], targets[train_rows]
    w = None
    for k in np.argsort(costs, kind="stable"):
        primal = s["cv_solver"] == "path" and costs[k] > DUAL_MAX_COST
        w = fit_binary_svm(s["data"], train_rows, y_train, costs[k], s["seed"], primal=primal, warm_start=w)
        aps[k] = cv_average_precision(y_held, decision_values(x_held, w))
    return cls, fold, aps


def _refit_job(job: tuple[int, int]) -> tuple[int, np.ndarray]:
    cls, cost_idx = job
    s = _SHARED
    rows = np.arange(s["x"].shape[0])
    return cls, fit_binary_svm(s["data"], rows, s["targets"][:, cls], s["costs"][cost_idx], s["seed"])


def _worker_init() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one BLAS thread per worker: the workers already fill the cores
    except Exception:  # noqa: BLE001
        pass


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _executor(n_jobs: int):
    """Worker processes forked from this one (they inherit _SHARED without copying); threads where
    fork does not exist (LIBLINEAR runs without the GIL through ctypes); None for in-process."""
    if n_jobs <= 1:
        return None
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    if "fork" in mp.get_all_start_methods():
        return ProcessPoolExecutor(n_jobs, mp_context=mp.get_context("fork"), initializer=_worker_init)
    return ThreadPoolExecutor(n_jobs)


def _cross_validate_and_refit(num_classes: int, n_fits_order: np.ndarray, n_jobs: int, progress: bool):
    """Run every (class, fold) CV job, and each class's refit as soon as its folds are done, so the
    workers never wait at a barrier. Returns (fold AP array classes x folds x costs, chosen cost
    indices, weights classes x (D + 1))."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from tqdm import tqdm

    costs = _SHARED["costs"]
    fold_ap = np.zeros((num_classes, CV_FOLDS, len(costs)))
    folds_done = np.zeros(num_classes, dtype=int)
    chosen = np.zeros(num_classes, dtype=int)
    weights = np.zeros((num_classes, _SHARED["x"].shape[1] + 1))
    cv_jobs = [(int(c), f) for c in n_fits_order for f in range(CV_FOLDS)]
    bar = tqdm(total=len(cv_jobs) + num_classes, desc="VOC07 SVMs", unit="job", disable=not progress, leave=False)

    def finish_cv(cls: int, fold: int, aps: np.ndarray) -> int | None:
        fold_ap[cls, fold] = aps
        folds_done[cls] += 1
        if folds_done[cls] < CV_FOLDS:
            return None
        chosen[cls] = choose_cost(fold_ap[cls].mean(axis=0)[None], costs)[0]  # cross_val_score(...).mean()
        return cls

    executor = _executor(n_jobs)
    if executor is None:
        for job in cv_jobs:
            if (cls := finish_cv(*_cv_job(job))) is not None:
                weights[cls] = _refit_job((cls, int(chosen[cls])))[1]
                bar.update()
            bar.update()
    else:
        with executor:
            pending = {executor.submit(_cv_job, job) for job in cv_jobs}
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()
                    bar.update()
                    if len(result) == 2:  # a refit
                        weights[result[0]] = result[1]
                    elif (cls := finish_cv(*result)) is not None:
                        pending.add(executor.submit(_refit_job, (cls, int(chosen[cls]))))
    bar.close()
    return fold_ap, chosen, weights


@dataclass
class SvmResult:
    class_names: list[str]
    costs: list[float]
    cv_ap: np.ndarray  # classes x costs, mean CV AP (fraction)
    chosen_cost: list[float]
    test_ap: np.ndarray  # per class, fraction
    weights: np.ndarray  # classes x (D + 1), last column = bias
    image_variant: str | None = None
    cv_solver: str = "path"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def mAP(self) -> float:
        return float(100.0 * self.test_ap.mean())

    def metrics(self) -> dict:
        """Results-JSON metrics: mAP and per_class_AP in percent, plus the chosen C per class."""
        return {
            "mAP": self.mAP,
            "per_class_AP": {n: float(100.0 * a) for n, a in zip(self.class_names, self.test_ap)},
            "chosen_C": {n: float(c) for n, c in zip(self.class_names, self.chosen_cost)},
        }


def _check_inputs(train_features, train_labels, test_features, test_labels, class_names, costs) -> list[str]:
    if train_labels.ndim != 2 or test_labels.ndim != 2:
        raise UserError("VOC07 SVM labels must be N x C matrices in VOC encoding (1 present, -1 absent, 0 difficult)")
    if train_features.shape[0] != train_labels.shape[0] or test_features.shape[0] != test_labels.shape[0]:
        raise UserError("features and labels have different numbers of rows")
    if train_features.shape[1] != test_features.shape[1]:
        raise UserError(f"train features are {train_features.shape[1]}-d but test features {test_features.shape[1]}-d")
    if train_labels.shape[1] != test_labels.shape[1]:
        raise UserError(f"train labels have {train_labels.shape[1]} classes but test labels {test_labels.shape[1]}")
    num_classes = train_labels.shape[1]
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise UserError(f"{len(names)} class names for {num_classes} label columns")
    if not costs or any(not (c > 0 and math.isfinite(c)) for c in costs):
        raise UserError(f"SVM costs must be positive numbers, got {list(costs)}")
    no_train = [n for n, col in zip(names, train_labels.T) if not np.any(col == 1)]
    no_test = [n for n, col in zip(names, test_labels.T) if not np.any(col == 1)]
    if no_train:
        raise UserError(f"no positive (label 1) train image for class(es) {', '.join(no_train)}: cannot train their SVMs")
    if no_test:
        raise UserError(f"no positive (label 1) test image for class(es) {', '.join(no_test)}: their AP is undefined")
    return names


def fit_voc07_svms(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    class_names: Sequence[str] | None = None,
    costs: Sequence[float] = VISSL_COSTS,
    n_jobs: int | None = None,
    seed: int = 0,
    image_variant: str | None = None,
    progress: bool = False,
    cv_solver: str = "path",
) -> SvmResult:
    """The full VISSL protocol; returns every intermediate (CV AP matrix, chosen C, weights).

    `cv_solver`: "path" (default) solves the cross-validation fits for C <= 1 with the dual solver and
    larger C with LIBLINEAR's primal Newton solver warm-started from the previous C (same objective,
    same optimum, about 2.5x less work); "dual" uses the dual solver for every fit, like scikit-learn.
    The final refit at the chosen C always uses the dual solver.
    """
    start = time.perf_counter()
    train_labels = np.asarray(train_labels)
    test_labels = np.asarray(test_labels)
    costs = [float(c) for c in costs]
    names = _check_inputs(train_features, train_labels, test_features, test_labels, class_names, costs)
    if cv_solver not in CV_SOLVERS:
        raise UserError(f"SVM cross-validation solver {cv_solver!r}: expected one of {', '.join(CV_SOLVERS)}")
    if image_variant is not None and image_variant not in IMAGE_VARIANTS:
        raise UserError(f"image variant {image_variant!r}: expected one of {', '.join(IMAGE_VARIANTS)}")
    n_jobs = default_jobs() if n_jobs is None else max(1, int(n_jobs))
    num_classes = train_labels.shape[1]

    x_train = normalize_features(train_features)
    targets = np.stack([train_targets(col) for col in train_labels.T], axis=1)
    notes = []
    few = [n for n, col in zip(names, targets.T) if (col == 1).sum() < CV_FOLDS]
    if few:
        notes.append(f"class(es) {', '.join(few)} have fewer than {CV_FOLDS} train positives: some CV folds train on "
                     "negatives only and score with a constant decision function")
    _SHARED.update(data=LiblinearData(x_train), x=x_train, targets=targets, costs=costs, seed=int(seed), cv_solver=cv_solver,
                   folds=[cv_folds(targets[:, c]) for c in range(num_classes)])
    try:
        # classes with most positives first: their fits take longest, so the workers end evenly
        by_size = np.argsort(-(targets == 1).sum(axis=0), kind="stable")
        fold_ap, chosen, weights = _cross_validate_and_refit(num_classes, by_size, n_jobs, progress)
        cv_ap = fold_ap.mean(axis=1)  # cross_val_score(...).mean()
    finally:
        _SHARED.clear()

    from vicreg_bench.metrics import vissl_average_precision

    x_test = normalize_features(test_features)
    scores = decision_values(x_test, weights.T)  # N_test x classes
    test_ap = np.array([
        vissl_average_precision(scores[keep, c], test_labels[keep, c])
        for c in range(num_classes)
        for keep in [kept_in_test(test_labels[:, c])]
    ])
    return SvmResult(
        class_names=names, costs=costs, cv_ap=cv_ap, chosen_cost=[costs[i] for i in chosen], test_ap=test_ap,
        weights=weights, image_variant=image_variant, seconds=time.perf_counter() - start, notes=notes,
        cv_solver=cv_solver,
    )


def train_eval_voc07_svm(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    **options,
) -> dict:
    """VOC07 SVM metrics for the results JSON: `mAP` (x100), `per_class_AP` (x100), `chosen_C`.

    `options` are those of `fit_voc07_svms` (class_names, costs, n_jobs, seed, image_variant, progress,
    cv_solver). `image_variant` ('squash' = VISSL's Resize((224, 224)), 'center_crop' = the paper's
    wording) is only recorded (the features were made by the caller); it is added to the dict when given.
    """
    result = fit_voc07_svms(train_features, train_labels, test_features, test_labels, **options)
    metrics = result.metrics()
    if result.image_variant is not None:
        metrics["image_variant"] = result.image_variant
    return metrics


def svm_protocol_params(costs: Sequence[float] = VISSL_COSTS, image_variant: str | None = None,
                        cv_solver: str = "path") -> dict:
    """Every setting that changes the SVM numbers (for the results JSON protocol hash)."""
    return {
        "solver": "liblinear L2R_L2LOSS_SVC_DUAL", "bias": 1, "tol": TOLERANCE,
        "cv_solver": cv_solver if cv_solver == "dual" else f"dual for C <= {DUAL_MAX_COST:g}, warm-started primal above",
        "class_weight": {"1": POSITIVE_WEIGHT, "-1": NEGATIVE_WEIGHT}, "costs": [float(c) for c in costs],
        "cv": f"StratifiedKFold({CV_FOLDS}, shuffle=False), sklearn average_precision",
        "normalize": "x / (||x|| + 1e-5), float64", "train_difficult": "negative", "test_difficult": "dropped",
        "ap": "vissl all-point", "image_variant": image_variant,
    }


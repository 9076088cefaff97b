"""`vicreg-bench svm`: the VOC07 linear SVMs (VISSL protocol) on feature files.

Example:
    vicreg-bench svm --train voc07_trainval.npz --test voc07_test.npz --json svm.json
"""

from __future__ import annotations

import argparse

from vicreg_bench.errors import UserError
from vicreg_bench.tasks.svm_solver import CV_SOLVERS, IMAGE_VARIANTS, VISSL_COSTS, fit_voc07_svms, svm_protocol_params


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, metavar="A.npz", help="trainval features; 'labels' N x C in VOC encoding (1/-1/0)")
    parser.add_argument("--test", required=True, metavar="B.npz", help="test features, same D and classes")
    parser.add_argument("--costs", type=float, nargs="+", default=list(VISSL_COSTS), metavar="C",
                        help="SVM costs tried by cross-validation (default: VISSL's 0.01 ... 1000)")
    parser.add_argument("--jobs", type=int, default=None, help="parallel worker processes (default: all CPU cores)")
    parser.add_argument("--image-variant", choices=IMAGE_VARIANTS, default=None,
                        help="record how the images were resized before extraction (squash = VISSL, center_crop)")
    parser.add_argument("--seed", type=int, default=0, help="seed of LIBLINEAR's coordinate shuffling")
    parser.add_argument("--cv-solver", choices=CV_SOLVERS, default="path",
                        help="path (default): dual solver up to C=1, then LIBLINEAR's primal solver warm-started along "
                             "the C list (same optimum, faster); dual: a cold dual fit for every C, like scikit-learn")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write metrics, chosen C and CV APs to this JSON file (atomic)")


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.fileio import atomic_write_json
    from vicreg_bench.features.files import check_compatible, load_feature_file

    if args.jobs is not None and args.jobs < 1:
        raise UserError("--jobs must be >= 1")
    train = load_feature_file(args.train, "voc", "--train")
    test = load_feature_file(args.test, "voc", "--test")
    check_compatible(train, test)
    names = train.class_names or test.class_names
    result = fit_voc07_svms(train.features, train.labels, test.features, test.labels, names, args.costs,
                            args.jobs, args.seed, args.image_variant, progress=True, cv_solver=args.cv_solver)
    print(f"VOC07 SVM on {train.num_samples} train / {test.num_samples} test features ({train.dim}-d), {result.seconds:.1f} s")
    for note in result.notes:
        print(f"  note: {note}")
    print(f"  {'class':<16}{'AP':>8}{'C':>9}{'CV AP':>8}")
    best_cv = result.cv_ap.max(axis=1)
    for name, ap, c, cv in zip(result.class_names, result.test_ap, result.chosen_cost, best_cv):
        print(f"  {name:<16}{100 * ap:>8.2f}{c:>9g}{100 * cv:>8.2f}")
    print(f"  {'mAP':<16}{result.mAP:>8.2f}")
    if args.json:
        atomic_write_json(args.json, {
            "command": "svm", "protocol": "svm_vissl",
            "params": svm_protocol_params(args.costs, args.image_variant, args.cv_solver),
            "train": train.summary(), "test": test.summary(), "metrics": result.metrics(),
            "cv_AP": {n: [float(100 * v) for v in row] for n, row in zip(result.class_names, result.cv_ap)},
            "notes": result.notes, "seconds": result.seconds,
        })
        print(f"wrote {args.json}")
    return 0

"""`vicreg-bench knn`: weighted k-NN (DINO protocol) on feature files.

Example:
    vicreg-bench knn --train train.npz --test val.npz --k 20 200 --temperature 0.07 --json knn.json
"""

from __future__ import annotations

import argparse
import time
import warnings

from vicreg_bench.errors import UserError
from vicreg_bench.tasks.knn import DEFAULT_KS, DEFAULT_TEMPERATURE, knn_classify, knn_notes, knn_protocol_params



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, metavar="A.npz", help="train features: 'features' N x D, 'labels' (N,) class indices")
    parser.add_argument("--test", required=True, metavar="B.npz", help="test features, same D")
    parser.add_argument("--k", type=int, nargs="+", default=list(DEFAULT_KS), metavar="K", help="numbers of neighbours (default: 10 20 100 200)")
    parser.add_argument(
        "--temperature", type=float, nargs="+", default=[DEFAULT_TEMPERATURE], metavar="T",
        help="vote temperature(s) (default 0.07); the first gives the plain metric names, others add _T<value>",
    )
    parser.add_argument("--num-classes", type=int, default=None, help="number of classes (default: largest label + 1)")
    parser.add_argument("--device", default="cpu", help="cpu (FAISS CPU), cuda[:i] (FAISS GPU if available, else torch), or auto")
    parser.add_argument("--chunk-size", type=int, default=8192, help="test features searched per chunk (bounds memory)")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write the metrics and settings to this JSON file (atomic)")


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.fileio import atomic_write_json
    from vicreg_bench.features.files import check_compatible, load_feature_file

    if args.chunk_size < 1:
        raise UserError("--chunk-size must be >= 1")
    train = load_feature_file(args.train, "indices", "--train")
    test = load_feature_file(args.test, "indices", "--test")
    check_compatible(train, test)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = knn_classify(
            train.features, train.labels, test.features, test.labels, ks=args.k, temperature=args.temperature,
            num_classes=args.num_classes, device=args.device, chunk_size=args.chunk_size, progress=True,
        )
    seconds = time.perf_counter() - start
    notes = knn_notes(train.num_samples, args.k, args.device)
    print(f"k-NN on {train.num_samples} train / {test.num_samples} test features ({train.dim}-d), {seconds:.1f} s")
    for note in notes:
        print(f"  note: {note}")
    print(f"  {'metric':<24}{'value':>8}")
    for name, value in metrics.items():
        print(f"  {name:<24}{value:>8.2f}")
    if args.json:
        atomic_write_json(args.json, {
            "command": "knn", "protocol": "knn_dino", "params": knn_protocol_params(args.k, args.temperature),
            "train": train.summary(), "test": test.summary(), "metrics": metrics, "notes": notes, "seconds": seconds,
        })
        print(f"wrote {args.json}")
    return 0

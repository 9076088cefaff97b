"""Report which datasets under the data root are found, missing or malformed, before any compute starts.

    vicreg-bench data check [--data-root DIR] [--datasets NAMES] [--json] [--verify-images]

For each dataset it opens every split through the same readers the benchmarks use (lists and annotation
files are parsed, every listed image must exist; images are decoded only with --verify-images), then
prints found / missing / malformed, the image count per split, what is wrong (file and line), and, for a
dataset that is not found, the exact layout expected. The data root is --data-root, else
$VICREG_BENCH_DATA. `--datasets` also takes task names (only the splits that task reads are checked).
Exit status: 0 when every checked dataset is found, 1 otherwise, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vicreg_bench.data.check import dataset_status, datasets_needed, format_report
from vicreg_bench.data.layouts import DATASETS
from vicreg_bench.data.registry import resolve_data_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None, help="data root (default: $VICREG_BENCH_DATA)")
    parser.add_argument(
        "--datasets",
        default=",".join(DATASETS),
        help=f"comma-separated dataset or task names to check (default: all: {','.join(DATASETS)})",
    )
    parser.add_argument("--json", action="store_true", help="print the statuses as JSON instead of a report")
    parser.add_argument(
        "--verify-images",
        action="store_true",
        help="also decode every image and list the ones that cannot be read (a full pass over the data)",
    )


def main(args: argparse.Namespace) -> int:
    data_root = resolve_data_root(args.data_root)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    statuses = []
    for ds, checks in datasets_needed(names).items():
        print(f"checking {ds} ...", file=sys.stderr, flush=True)
        statuses.append(dataset_status(ds, data_root, checks, verify_images=args.verify_images, progress=True))
    if args.json:
        json.dump([s.to_dict() for s in statuses], sys.stdout, indent=2)
        print()
    else:
        print(format_report(statuses, data_root))
    return 0 if all(s.ok for s in statuses) else 1

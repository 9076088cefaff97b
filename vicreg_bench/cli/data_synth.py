"""`vicreg-bench data synth`: write the synthetic mini-suite in the official dataset layouts.

    vicreg-bench data synth --root DIR [--size tiny|small] [--seed N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vicreg_bench.data.synth import make_synthetic_suite
from vicreg_bench.data.synth_files import SIZES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, type=Path, help="folder to write the suite into (new or empty)")
    parser.add_argument("--size", choices=SIZES, default="tiny", help="tiny: unit tests (seconds); small: the demo")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")


def main(args: argparse.Namespace) -> int:
    t = time.time()
    print(f"writing the {args.size} synthetic suite (seed {args.seed}) to {args.root}")
    make_synthetic_suite(args.root, args.size, args.seed, progress=True)
    print(f"done in {time.time() - t:.1f} s; use it with --data-root {args.root}")
    return 0

"""`vicreg-bench` command line: one sub-command per job, each in its own module of this package.

Every command module exposes `add_arguments(parser)` and `main(args) -> int`; it parses arguments and calls
the library, nothing more. Modules are imported only when their command runs, so `vicreg-bench --help`
stays fast and optional backends are never imported early.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from vicreg_bench import __version__
from vicreg_bench.errors import UserError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("vicreg_bench.cli.run", "run a benchmark suite on a checkpoint and write OUT/results.json"),
    "status": ("vicreg_bench.cli.status", "show the state of every task of a run's output folder"),
    "inspect": ("vicreg_bench.cli.inspect", "print what a checkpoint holds (format, method, arch, keys)"),
    "convert": ("vicreg_bench.cli.convert", "convert a checkpoint to torchvision, VISSL or detectron2 format"),
    "extract": ("vicreg_bench.cli.extract", "extract frozen res5avg features of one dataset split to .npz"),
    "knn": ("vicreg_bench.cli.knn", "weighted k-NN (DINO protocol) on feature files"),
    "svm": ("vicreg_bench.cli.svm", "VOC07 linear SVM (VISSL protocol) on feature files"),
    "linear": ("vicreg_bench.cli.linear", "BN + linear probe on cached feature files (fast protocol)"),
    "compare": ("vicreg_bench.cli.compare", "put several results side by side (table, md, csv, html)"),
    "demo": ("vicreg_bench.cli.demo", "the whole pipeline on a synthetic dataset, on the CPU"),
}
DATA_COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("vicreg_bench.cli.data_synth", "write the synthetic mini-suite in the official dataset layouts"),
    "check": ("vicreg_bench.cli.data_check", "report which datasets are present, missing or malformed"),
}


def _add(subparsers, name: str, module: str, help_text: str) -> None:
    mod = importlib.import_module(module)
    doc = (mod.__doc__ or help_text).strip()
    p = subparsers.add_parser(name, help=help_text, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    mod.add_arguments(p)
    p.set_defaults(_module=module)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vicreg-bench",
        description="The VICReg paper's transfer benchmarks for any self-supervised ResNet checkpoint.",
    )
    parser.add_argument("--version", action="version", version=f"vicreg-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Import only the module of the command being run; list the others with their one-line help.
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        if name == wanted:
            _add(sub, name, module, help_text)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    data = sub.add_parser("data", help="synthetic data and dataset checks", description="Dataset tools.")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    for name, (module, help_text) in DATA_COMMANDS.items():
        if wanted == "data":
            _add(data_sub, name, module, help_text)
        else:
            data_sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    module = getattr(args, "_module", None)
    if module is None:
        if args.command == "data":
            parser.parse_args(["data", "--help"])
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(module).main(args) or 0)
    except UserError as e:
        print(f"vicreg-bench {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("vicreg-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

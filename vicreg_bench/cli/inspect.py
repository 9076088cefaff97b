"""Show what a checkpoint holds: container, layout, method, architecture, parameters, sha256, and
which keys were kept as the backbone and which were dropped (grouped by prefix, with counts).

  vicreg-bench inspect PATH [--json] [--method NAME] [--key K]

Nothing in the file is executed (the loader is a restricted unpickler). Recognised layouts (`format`):
"""

from __future__ import annotations

import argparse
import json

from vicreg_bench.checkpoints.info import FORMATS, METHODS
from vicreg_bench.checkpoints.inspect import inspect_dict, render
from vicreg_bench.checkpoints.load import load_backbone

__doc__ = (__doc__ or "") + "\n".join(f"  {name:<20} {text}" for name, text in FORMATS.items()) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="checkpoint file (.pth, .pth.tar, .torch, .ckpt, .pkl, .safetensors)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--method", metavar="NAME", default=None, help=f"method, when the layout does not say ({', '.join(METHODS)})")
    parser.add_argument("--key", metavar="K", default=None,
                        help="branch: teacher|student (DINO, iBOT), encoder_q|encoder_k (MoCo), base_encoder|momentum_encoder "
                             "(MoCo v3), backbone|momentum_backbone (Lightning)")


def main(args: argparse.Namespace) -> int:
    state_dict, info = load_backbone(args.path, method=args.method, key=args.key)
    if args.json:
        print(json.dumps(inspect_dict(state_dict, info), indent=2))
    else:
        print(render(state_dict, info))
    return 0


"""Convert any supported checkpoint to a torchvision, timm, VISSL or detectron2 file.

  vicreg-bench convert PATH --to torchvision|vissl|detectron2|timm -o OUT [--method NAME] [--key K] [--force]

- torchvision: the backbone state dict (torchvision names, no fc); `.safetensors` OUT writes
  safetensors. Both carry vicreg-bench metadata (method, arch, source) that `inspect` shows and that
  `load_backbone` reads back (so a converted SimCLR file still says: no input normalisation).
- vissl: {classy_state_dict: {base_model: {model: {trunk: _feature_blocks.*, heads: {}}}}, ...},
  loadable by VISSL's `config.MODEL.WEIGHTS_INIT.PARAMS_FILE` with STATE_DICT_KEY_NAME classy_state_dict.
- detectron2: {"model": detectron2 names -> numpy arrays, "__author__", "matching_heuristics": True},
  a pickle plain `pickle.load(f, encoding="latin1")` reads, as detectron2's checkpointer does.
- timm: for a ViT, the timm state dict (no head) that `timm.create_model(name, num_classes=0, **overrides)`
  loads strictly, with the same metadata as the torchvision export; for a ResNet, the torchvision file
  (timm's ResNets use torchvision's names). VISSL, detectron2 and torchvision targets are ResNet-only.

After a VISSL or detectron2 export the exact evaluation commands are printed. Conversions are
bit-exact and round-trip. OUT is never overwritten without --force, and is written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vicreg_bench.checkpoints.convert import (TARGETS, check_out, detectron2_commands, export_metadata, save_detectron2_pkl,
                                              save_timm, save_torchvision, save_vissl, vissl_commands)
from vicreg_bench.checkpoints.info import METHODS
from vicreg_bench.checkpoints.load import load_backbone
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import sha256_file
from vicreg_bench.models import is_vit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="checkpoint to convert (any layout `inspect` recognises)")
    parser.add_argument("--to", required=True, choices=TARGETS, help="output format")
    parser.add_argument("-o", "--out", required=True, metavar="OUT",
                        help="output file (.pth/.safetensors for torchvision and timm, .torch for VISSL, .pkl for detectron2)")
    parser.add_argument("--method", metavar="NAME", default=None,
                        help=f"method that trained the checkpoint, when the layout does not say ({', '.join(METHODS)})")
    parser.add_argument("--key", metavar="K", default=None,
                        help="branch to take: teacher|student (DINO, iBOT), encoder_q|encoder_k (MoCo), "
                             "base_encoder|momentum_encoder (MoCo v3), backbone|momentum_backbone (Lightning)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def main(args: argparse.Namespace) -> int:
    out = check_out(args.out, args.force)
    src = Path(args.path)
    if src.exists() and out.exists() and out.resolve() == src.resolve():
        raise UserError(f"{out}: -o names the input file; choose another output")
    state_dict, info = load_backbone(src, method=args.method, key=args.key)
    if is_vit(info.arch) and args.to != "timm":
        raise UserError(f"{src}: --to {args.to} converts ResNet backbones only, and this is a Vision Transformer "
                        f"({info.arch}); use --to timm")
    meta = export_metadata(info)
    writer = {"torchvision": save_torchvision, "vissl": save_vissl, "detectron2": save_detectron2_pkl, "timm": save_timm}[args.to]
    writer(state_dict, out, args.force, metadata=meta)
    print(f"read  {src}: {info.format} checkpoint, method {info.method}, {info.arch}, {info.num_params:,} parameters")
    print(f"wrote {out}: {args.to} format, sha256 {sha256_file(out)}")
    if args.to == "detectron2":
        commands, notes = detectron2_commands(out, info.arch, info.normalize_input)
        print("\nTrain and evaluate with detectron2 (VOC07+12 Faster R-CNN R50-C4; COCO Mask R-CNN R50-FPN 1x):")
    elif args.to == "vissl":
        commands, notes = vissl_commands(out, info.arch, info.normalize_input)
        print("\nEvaluate with VISSL (from a VISSL checkout: ImageNet linear, VOC07 SVM, Places205, iNat18):")
    else:
        commands, notes = [], []
        if args.to == "timm" and not is_vit(info.arch):
            print("note: a ResNet's timm file is its torchvision state dict (timm's resnet* use torchvision's names)")
        if not info.normalize_input:
            print("note: this checkpoint expects inputs without mean/std normalisation (kept in the file's metadata)")
    for line in commands:
        print(f"  {line}")
    for note in notes:
        print(f"note: {note}")
    return 0

"""Extract frozen res5avg features of one dataset split to a .npz file (or the shared on-disk cache).

The trunk is loaded strictly from the checkpoint, frozen and put in eval mode; images go through the
protocol's deterministic transform (`--transform`, default `eval`: the linear-probe centre crop). Features are
cached on disk under a key made of everything that changes them: checkpoint sha256 (and the digest of
the loaded weights), dataset manifest sha256, split, transform name and parameters, layer and compute
dtype. The SVM, k-NN and fast linear tasks of a run, and later runs, reuse one extraction.

An extraction is written in shards (each written atomically); an interrupted extraction resumes at the
first missing shard. Under `torchrun` the shards are split between processes.

Example:
  vicreg-bench extract --ckpt resnet50.pth --dataset imagenet --split val --data-root /data -o val.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vicreg_bench import distributed as D
from vicreg_bench.errors import UserError
from vicreg_bench.features.cache import DEFAULT_SHARD_SIZE, default_cache_dir
from vicreg_bench.features.extract import FeatureExtractor, resolve_device
from vicreg_bench.features.transforms import TRANSFORM_NAMES, default_resize


def add_extraction_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by `extract` and `run`."""
    p.add_argument("--data-root", help="dataset root (default: $VICREG_BENCH_DATA); layout in the README")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N (default auto)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="feature cache, shared by runs (default: $VICREG_BENCH_CACHE or ~/.cache/vicreg-bench/features)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="compute dtype of the frozen trunk: auto = bf16 (fp16 without bf16) on CUDA, fp32 on CPU")
    p.add_argument("--image-size", type=int, default=224, help="crop size of the transforms (paper: 224)")
    p.add_argument("--resize", type=int, default=None,
                   help="resize before the crop (paper: 256; default: image-size * 256/224)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers per process (default: from the CPU count)")
    p.add_argument("--on-bad-image", default="error", choices=("error", "skip"),
                   help="an undecodable image stops the job (error, default) or is left out and listed (skip)")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help=f"images per feature-cache shard, the unit an interrupted extraction resumes from "
                        f"(default {DEFAULT_SHARD_SIZE})")



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint of any supported format (see `inspect`)")
    p.add_argument("--method", default=None, help="checkpoint method when detection guesses wrong (e.g. dino, moco_v2)")
    p.add_argument("--key", default=None, help="sub-dictionary holding the model in a full checkpoint (e.g. teacher)")
    p.add_argument("--dataset", required=True, help="imagenet, places205, inat2018 or voc2007")
    p.add_argument("--split", required=True, help="split of the dataset, e.g. train, val, trainval, test")
    p.add_argument("-o", "--output", required=True, type=Path, help="output .npz (features, labels, class_names, paths)")
    p.add_argument("--transform", default="eval", choices=TRANSFORM_NAMES,
                   help="eval (linear-probe centre crop, default), knn (bicubic, DINO), svm_squash (VISSL), svm_center_crop")
    p.add_argument("--batch-size", type=int, default=None, help="images per forward pass (default 256 on CUDA, 64 on CPU)")
    p.add_argument("--force", action="store_true", help="overwrite the output file if it exists")
    add_extraction_arguments(p)


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.checkpoints import load_backbone
    from vicreg_bench.data.registry import resolve_data_root

    if args.shard_size < 1:
        raise UserError(f"--shard-size: expected a positive integer, got {args.shard_size}")
    out = Path(args.output)
    if out.suffix != ".npz":
        raise UserError(f"-o {out}: expected a .npz file name")
    if out.exists() and not args.force:
        raise UserError(f"-o {out}: file exists (use --force to overwrite)")
    device = resolve_device(args.device)
    D.init_from_env(device)
    if device == "cuda" and D.is_distributed():
        device = f"cuda:{torch.cuda.current_device()}"
    data_root = resolve_data_root(args.data_root)
    state_dict, info = load_backbone(args.ckpt, method=args.method, key=args.key)
    extractor = FeatureExtractor(
        state_dict, info, data_root=data_root, cache_dir=args.cache_dir or default_cache_dir(), device=device,
        precision=args.precision, image_size=args.image_size, resize=default_resize(args.image_size, args.resize),
        batch_size=args.batch_size, workers=args.workers, on_bad_image=args.on_bad_image,
        shard_size=args.shard_size,
    )
    fs = extractor(args.dataset, args.split, args.transform)
    if D.is_main():
        fs.save_npz(out)
        rate = fs.throughput.get("images_per_s")
        how = "from cache" if fs.from_cache else f"{rate} images/s" if rate else "extracted"
        print(f"{out}: {fs.features.shape[0]} x {fs.features.shape[1]} features ({how})")
        if fs.skipped:
            print(f"skipped {len(fs.skipped)} undecodable image(s):", file=sys.stderr)
            for b in fs.skipped:
                print(f"  {b['path']}: {b['error']}", file=sys.stderr)
    D.cleanup()  # waits for every rank first
    return 0

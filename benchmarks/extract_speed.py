"""Images/s of frozen-feature extraction: vicreg-bench's extractor against a plain extraction loop.

    python benchmarks/extract_speed.py [--device cpu|cuda] [--arch resnet50 vit_small_patch16_224] [--num-images 256]
                                       [--batch-size 64] [--workers N] [--image-size 224]
                                       [--data-root DIR --dataset imagenet --split val] [--ckpt FILE]

Both sides decode the same JPEGs (synthetic ImageNet-sized 500x375 photos-like images written to a temp
folder, or a real split with --data-root) with the linear-probe test transform (Resize 256 + CenterCrop 224)
and push them through the same frozen trunk (by default a ResNet-50 and a ViT-S/16, timm's ViT with fused
scaled_dot_product_attention; `--arch` picks others):
- baseline: the loop people write first: DataLoader(num_workers=0), float32, contiguous tensors, no
  pinned memory;
- vicreg-bench: `vicreg_bench.features.extract.features_for_dataset` (DataLoader workers, pinned memory, bf16
  autocast and channels_last on CUDA, sharded cache writes included in the time).
Prints images/s of each and the ratio; the first batch of each side is a warm-up and is not timed
(except that the extractor's time includes writing its cache).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vicreg_bench.data.base import ClassificationDataset  # noqa: E402
from vicreg_bench.features.cache import weights_digest  # noqa: E402
from vicreg_bench.features.extract import (  # noqa: E402
    build_frozen_trunk,
    default_workers,
    features_for_dataset,
    resolve_precision,
)
from vicreg_bench.features.transforms import build_transform  # noqa: E402
from vicreg_bench.models import build_backbone  # noqa: E402


def write_photos(root: Path, n: int, seed: int = 0) -> list[tuple[str, int]]:
    """n smooth random 500x375 JPEGs (quality 90): ImageNet-like decode and resize cost."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        small = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((500, 375), Image.BICUBIC)
        noise = rng.normal(0, 12, (375, 500, 3))
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) + noise, 0, 255).astype(np.uint8))
        rel = f"c{i % 10}/img{i:05d}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel, quality=90)
        samples.append((rel, i % 10))
    return samples


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def baseline_images_per_s(model, dataset, device: str, batch_size: int) -> float:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    n, t0 = 0, None
    with torch.no_grad():
        for b, (images, _labels, _idx) in enumerate(loader):
            if b == 1:
                sync(device)
                t0, n = time.perf_counter(), 0
            model(images.to(device)).float().cpu()
            n += len(images)
    sync(device)
    return n / (time.perf_counter() - t0) if t0 else float("nan")


def run_case(args, arch: str, device: str, batch: int, workers: int, precision: str, tf, params) -> None:
    """Time the extractor and the plain loop on one backbone."""
    if args.ckpt:
        from vicreg_bench.checkpoints import load_backbone

        state, info = load_backbone(args.ckpt)
        arch, ckpt_sha = info.arch, info.sha256
    else:
        torch.manual_seed(0)
        ckpt_sha = "0" * 64
        state = build_backbone(arch).state_dict()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data_root:
            from vicreg_bench.data.registry import open_classification

            dataset = open_classification(args.dataset, args.data_root, args.split, transform=tf)
            if args.num_images < len(dataset):
                dataset.samples = dataset.samples[: args.num_images]
            source = f"{args.dataset}/{args.split} under {args.data_root}"
        else:
            samples = write_photos(tmp / "images", args.num_images)
            dataset = ClassificationDataset(tmp / "images", samples, [f"c{i}" for i in range(10)], split="bench",
                                            transform=tf)
            source = "synthetic 500x375 JPEGs"
        n = len(dataset)
        gpu = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "-"
        print(f"{n} images ({source}), {arch} at {args.image_size}px, device {device} {gpu}, "
              f"batch {batch}, {torch.get_num_threads()} CPU threads")

        model = build_frozen_trunk(state, arch, device)
        # warm-up of the extractor (cuDNN autotuning, allocator) on a throwaway cache
        warm = ClassificationDataset(dataset.root, dataset.samples[: min(n, batch)], dataset.classes,
                                     split="warmup", transform=tf)
        features_for_dataset(model, warm, dataset_name="bench", transform_params=params, ckpt_sha256=ckpt_sha,
                             weights_sha256="warmup", cache_dir=tmp / "warm", device=device, precision=precision,
                             batch_size=batch, workers=0, progress=False)
        sync(device)
        t0 = time.perf_counter()
        fs = features_for_dataset(model, dataset, dataset_name="bench", transform_params=params,
                                  ckpt_sha256=ckpt_sha, weights_sha256=weights_digest(state), cache_dir=tmp / "cache",
                                  device=device, precision=precision, batch_size=batch, workers=workers,
                                  progress=False)
        sync(device)
        ours = n / (time.perf_counter() - t0)
        rows = {"vicreg_bench": ours}
        print(f"vicreg-bench extractor : {ours:8.1f} images/s  ({workers} workers, {precision}, "
              f"{'channels_last, pinned memory' if device.startswith('cuda') else 'CPU path'}; cache written)")
        if not args.skip_baseline:
            plain = build_backbone(arch)
            plain.load_state_dict(state)
            plain.eval().to(device)
            base = baseline_images_per_s(plain, dataset, device, batch)
            rows["baseline"] = base
            print(f"plain loop (baseline)  : {base:8.1f} images/s  (0 workers, fp32, contiguous)")
            print(f"speed-up               : {ours / base:8.2f}x")
        print(json.dumps({"device": device, "gpu": gpu, "arch": arch, "images": n, "batch_size": batch,
                          "workers": workers, "precision": precision, "features": list(fs.features.shape),
                          "images_per_s": {k: round(v, 2) for k, v in rows.items()}}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", nargs="+", default=["resnet50", "vit_small_patch16_224"],
                   help="backbones to time, each a case of its own (torchvision ResNet or timm ViT names)")
    p.add_argument("--ckpt", type=Path, default=None, help="a checkpoint (default: random weights)")
    p.add_argument("--num-images", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=None, help="default 256 on CUDA, 32 on CPU")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--precision", default="auto")
    p.add_argument("--data-root", type=Path, default=None, help="use a real dataset split instead of synthetic JPEGs")
    p.add_argument("--dataset", default="imagenet")
    p.add_argument("--split", default="val")
    p.add_argument("--skip-baseline", action="store_true")
    args = p.parse_args()

    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here", file=sys.stderr)
        return 2
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    batch = args.batch_size or (256 if device.startswith("cuda") else 32)
    workers = default_workers(device) if args.workers is None else args.workers
    precision = resolve_precision(args.precision, device)
    resize = int(round(args.image_size * 256 / 224))
    tf, params = build_transform("eval", size=args.image_size, resize=resize)

    for arch in args.arch:
        run_case(args, arch, device, batch, workers, precision, tf, params)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

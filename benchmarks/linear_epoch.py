"""How much faster one `--protocol fast` linear-probe epoch is than one paper-protocol epoch.

    python benchmarks/linear_epoch.py [--device cpu|cuda] [--arch resnet50] [--image-size 224]
                                      [--root DIR] [--size small] [--batch-size 256] [--workers N]

Both run the real `imagenet_linear` task on the same images (the synthetic ImageNet of
`vicreg_bench.data.synth`, written under --root unless present; its images are upsampled to
--image-size, so the trunk does the work of real 224 px inputs):
- paper: every epoch decodes and augments the training images and pushes them through the frozen trunk,
  then trains the BN + Linear head (time per epoch = training images / the task's train images/s);
- fast: the head trains on cached centre-crop features (`train_linear_on_features`), after one extraction.
Prints seconds per epoch of each, the ratio, and the one-off extraction time the fast protocol pays.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vicreg_bench.features.extract import FeatureExtractor, default_workers  # noqa: E402
from vicreg_bench.models import build_resnet  # noqa: E402
from vicreg_bench.tasks.catalog import get_task, task_context  # noqa: E402
from vicreg_bench.tasks.context import RunSettings, TaskContext  # noqa: E402


class Info:
    def __init__(self, arch: str):
        self.arch, self.sha256, self.normalize_input, self.method = arch, "0" * 64, True, "random"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--root", type=Path, default=None, help="synthetic data root (default: a temp folder)")
    p.add_argument("--size", default="small", choices=("tiny", "small"), help="synthetic suite size")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--fast-epochs", type=int, default=20, help="epochs timed for the fast protocol")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available here", file=sys.stderr)
        return 2

    from vicreg_bench.data.synth import make_synthetic_suite

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = args.root or tmp / "data"
        if not (root / "imagenet").is_dir():
            make_synthetic_suite(root, size=args.size, seed=0)
        torch.manual_seed(0)
        state = build_resnet(args.arch).state_dict()
        info = Info(args.arch)
        workers = default_workers(args.device) if args.workers is None else args.workers
        resize = int(round(args.image_size * 256 / 224))

        def ctx(protocol: str, epochs: int) -> TaskContext:
            fx = FeatureExtractor(state, info, data_root=root, cache_dir=tmp / "cache", device=args.device,
                                  image_size=args.image_size, resize=resize, workers=workers, progress=False)
            return task_context("imagenet_linear", state, info, data_root=root, work_dir=tmp / "work" / protocol,
                                cache_dir=tmp / "cache", options={"epochs": epochs, "batch_size": args.batch_size},
                                settings=RunSettings(image_size=args.image_size, workers=workers),
                                device=args.device, protocol=protocol, features=fx)

        # The paper protocol's per-epoch evaluation reads cached val features: extract them first for both.
        warm = ctx("paper", 1)
        warm.features("imagenet", "val", "eval")
        t0 = time.perf_counter()
        paper = get_task("imagenet_linear").run(warm)
        paper_total = time.perf_counter() - t0
        n_train = paper.dataset["num_images"]["train"]
        paper_epoch = n_train / paper.throughput["train_images_per_s"]

        fast_ctx = ctx("fast", args.fast_epochs)
        t0 = time.perf_counter()
        fast_ctx.features("imagenet", "train", "eval")
        extract_s = time.perf_counter() - t0
        fast = get_task("imagenet_linear").run(fast_ctx)
        fast_epoch = fast.throughput["train_seconds"] / args.fast_epochs

        gpu = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "-"
        print(f"imagenet_linear on {n_train} training images, {args.arch} at {args.image_size}px, "
              f"device {args.device} {gpu}, batch {args.batch_size}, {workers} workers")
        print(f"paper protocol : {paper_epoch:10.3f} s/epoch  (augmented images through the frozen trunk; "
              f"task total {paper_total:.1f} s for 1 epoch incl. evaluation)")
        print(f"fast protocol  : {fast_epoch:10.4f} s/epoch  (mean over {args.fast_epochs} epochs on cached features)")
        print(f"ratio          : {paper_epoch / fast_epoch:10.1f}x faster per epoch "
              f"(plus a one-off extraction of {extract_s:.1f} s)")
        print(json.dumps({"device": args.device, "gpu": gpu, "arch": args.arch, "image_size": args.image_size,
                          "train_images": n_train, "paper_s_per_epoch": round(paper_epoch, 4),
                          "fast_s_per_epoch": round(fast_epoch, 6), "ratio": round(paper_epoch / fast_epoch, 1),
                          "extract_s": round(extract_s, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

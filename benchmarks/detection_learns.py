"""Does fine-tuning on the synthetic VOC layout beat chance? AP after 1 iteration vs after N iterations.

    python benchmarks/detection_learns.py --device cuda --iters 600 [--arch resnet18] [--ckpt backbone.pth]

Writes the `small` synthetic suite under --root (unless present), runs the voc07_det task with the torchvision
engine twice (1 iteration, then --iters iterations, batch 8, inputs scaled to the ~100 px images) from the
same backbone (random init unless --ckpt), and prints VOC07 AP/AP50/AP75 on the synthetic test split.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--ckpt", default=None)
    p.add_argument("--task", default="voc07_det", choices=["voc07_det", "coco_det"])
    p.add_argument("--root", default="/tmp/vicreg_bench_det_synth")
    p.add_argument("--out", default="/tmp/vicreg_bench_det_learns")
    a = p.parse_args()
    from vicreg_bench.data.synth import make_synthetic_suite
    from vicreg_bench.models import build_resnet
    from vicreg_bench.tasks.catalog import get_task, task_context

    root = Path(a.root)
    if not (root / "VOC2007").is_dir():
        make_synthetic_suite(root, "small", 0)
    if a.ckpt:
        from vicreg_bench.checkpoints import load_backbone

        sd, info = load_backbone(a.ckpt)
    else:
        torch.manual_seed(0)
        sd = build_resnet(a.arch).state_dict()
        info = types.SimpleNamespace(arch=a.arch, sha256="0" * 64, normalize_input=True)
    run = get_task(a.task).run
    for iters in (1, a.iters):
        opts = {"det_engine": "torchvision", "det_ims_per_batch": 8, "det_max_iter": iters, "det_input_scale": 0.2,
                "det_num_workers": 4, "det_precise_bn_iters": 20}
        ctx = task_context(a.task, sd, info, data_root=root, work_dir=Path(a.out) / f"{a.task}_{iters}",
                           cache_dir=Path(a.out) / "cache", options=opts, device=a.device)
        t = time.perf_counter()
        out = run(ctx)
        print(f"{a.task} {iters:5d} iterations: {out.metrics}  ({time.perf_counter() - t:.0f}s, "
              f"{out.throughput.get('train_images_per_s') or 0:.1f} train images/s, {out.dataset['num_images']})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

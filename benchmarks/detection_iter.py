"""Training-iteration time of the detection engines on identical inputs (Faster R-CNN R50-C4, VOC protocol).

    python benchmarks/detection_iter.py [--device cuda] [--arch resnet50] [--batch 2] [--size 800x1067] [--iters 20]

Prints the median seconds per iteration (forward + backward + SGD step, after warm-up) and images/s for
the torchvision engine in fp32, with AMP, and with AMP + channels_last, as ratios against torchvision fp32;
then the same model in detectron2 (our VOC config, Res5ROIHeadsExtraNorm) when detectron2 is installed,
otherwise a line saying it was skipped. Inputs: random images of one size with 3 random boxes each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vicreg_bench.detection.c4_model import build_c4_faster_rcnn  # noqa: E402
from vicreg_bench.detection.rcnn_parts import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from vicreg_bench.detection.schedule import VOC07_12_C4  # noqa: E402
from vicreg_bench.detection.tv_engine import _autocast, build_optimizer  # noqa: E402
from vicreg_bench.models import build_resnet  # noqa: E402


def make_inputs(batch: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for _ in range(batch)]
    targets = []
    for _ in range(batch):
        xy = torch.rand(3, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = (torch.rand(3, 2, generator=g) * 0.3 + 0.1) * torch.tensor([w, h])
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 21, (3,), generator=g)})
    return images, targets


def time_torchvision(arch, images, targets, device, iters, amp, channels_last):
    torch.manual_seed(0)
    model = build_c4_faster_rcnn(build_resnet(arch), 20, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    opt = build_optimizer(model, VOC07_12_C4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp == "fp16")
    imgs = [i.to(device) for i in images]
    tgts = [{k: v.to(device) for k, v in t.items()} for t in targets]
    times = []
    for it in range(iters + 3):
        t0 = time.perf_counter()
        with _autocast(device, amp):
            loss = sum(model(imgs, tgts).values())
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if it >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_detectron2(images, targets, device, iters):
    try:
        import detectron2  # noqa: F401
    except ImportError:
        return None, "detectron2 is not installed: skipped (see vicreg_bench/detection/d2_plugin.py for how to install it)"
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model
    from detectron2.structures import Boxes, Instances

    from vicreg_bench.detection import d2_plugin
    from vicreg_bench.detection.protocols import CONFIG_DIR

    d2_plugin.register()
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIG_DIR / "voc07_12_faster_rcnn_R50_C4.yaml"))
    cfg.MODEL.DEVICE = str(device)
    cfg.MODEL.RESNETS.NORM = "BN"  # one process: synchronised BN degenerates to BN
    model = build_model(cfg)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    batched = []
    for img, t in zip(images, targets):
        inst = Instances(tuple(img.shape[-2:]))
        inst.gt_boxes = Boxes(t["boxes"])
        inst.gt_classes = t["labels"] - 1
        batched.append({"image": img, "instances": inst, "height": img.shape[-2], "width": img.shape[-1]})
    times = []
    for it in range(iters + 3):
        t0 = time.perf_counter()
        loss = sum(model(batched).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if it >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times), None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--batch", type=int, default=2, help="images per iteration (per GPU: 2 in the protocol)")
    p.add_argument("--size", default="800x1067", help="HxW of the inputs (the protocol's typical VOC size)")
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    device = torch.device(a.device)
    h, w = (int(v) for v in a.size.split("x"))
    images, targets = make_inputs(a.batch, h, w)
    print(f"Faster R-CNN C4 {a.arch}, batch {a.batch} of {h}x{w}, {a.iters} timed iterations on {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    variants = [("torchvision fp32", "off", False)]
    if device.type == "cuda":
        amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        variants += [(f"torchvision {amp}", amp, False), (f"torchvision {amp} channels_last", amp, True)]
    base = None
    for name, amp, cl in variants:
        t = time_torchvision(a.arch, images, targets, device, a.iters, amp, cl)
        base = base or t
        print(f"{name:40s} {t:8.4f} s/iter  {a.batch / t:8.2f} images/s  ratio {base / t:5.2f}x")
    t, why = time_detectron2([i.to(device) for i in images], [{k: v.to(device) for k, v in tt.items()} for tt in targets], device, a.iters)
    if t is None:
        print(why)
    else:
        print(f"{'detectron2 fp32':40s} {t:8.4f} s/iter  {a.batch / t:8.2f} images/s  ratio {base / t:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

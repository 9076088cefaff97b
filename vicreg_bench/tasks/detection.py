"""Detection transfer tasks `voc07_det` and `coco_det` (paper Table 2, last columns).

`ctx.options["det_engine"]` picks the engine: "detectron2" (default; the code and configs behind the published
numbers, run through `vicreg_bench.detection.d2_runner`) or "torchvision" (embedded, runs anywhere; results
are marked `engine: torchvision`). Other options: `vicreg_bench.detection.options` (defaults = the protocol).
"""

from __future__ import annotations

from vicreg_bench.detection.options import parse_options
from vicreg_bench.detection.protocols import COCO, VOC07_12, DetProtocol, protocol_record
from vicreg_bench.tasks.base import TaskContext, TaskOutput


def _run(protocol: DetProtocol, ctx: TaskContext) -> TaskOutput:
    opts = parse_options(ctx.options)
    if opts.engine == "torchvision":
        from vicreg_bench.detection.tv_runner import run_torchvision

        return run_torchvision(protocol, ctx, opts)
    from vicreg_bench.detection.d2_runner import run_detectron2

    return run_detectron2(protocol, ctx, opts)


def run_voc07_det(ctx: TaskContext) -> TaskOutput:
    """Faster R-CNN R50-C4 fine-tuned on VOC07+12 trainval, AP/AP50/AP75 on VOC07 test."""
    return _run(VOC07_12, ctx)


def run_coco_det(ctx: TaskContext) -> TaskOutput:
    """Mask R-CNN R50-FPN 1x on COCO train2017, box and mask AP on val2017."""
    return _run(COCO, ctx)


def protocol_voc07_det(ctx: TaskContext) -> tuple[str, dict]:
    """The protocol name and params `run_voc07_det` would record, without running anything."""
    name, params, _ = protocol_record(VOC07_12, parse_options(ctx.options), ctx.ckpt_info.arch, ctx.world_size)
    return name, params


def protocol_coco_det(ctx: TaskContext) -> tuple[str, dict]:
    name, params, _ = protocol_record(COCO, parse_options(ctx.options), ctx.ckpt_info.arch, ctx.world_size)
    return name, params

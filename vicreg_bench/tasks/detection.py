"""Detection transfer tasks `voc07_det` and `coco_det` (paper Table 2, last columns).

`det_engine` picks the engine: "detectron2" (default; the code and configs behind the published numbers,
run through `vicreg_bench.detection.d2_runner`) or "torchvision" (embedded, runs anywhere; results are
marked `engine: torchvision`). The other options are `vicreg_bench.detection.options.DetOptions` (defaults
= the protocol).
"""

from __future__ import annotations

from dataclasses import replace

from vicreg_bench.detection.options import DetOptions
from vicreg_bench.detection.protocols import DetProtocol, protocol_record
from vicreg_bench.detection.schedule import COCO_FPN_1X, VOC07_12_C4
from vicreg_bench.detection.transforms import COCO_MIN_SIZES_TRAIN, VOC_MIN_SIZES_TRAIN
from vicreg_bench.tasks.context import TaskContext, TaskOutput, TaskSkipped
from vicreg_bench.tasks.registry import Column, DemoPreset, PublishedKey, Resources, register_task

DEFAULT_WORKERS = 4

VOC07_12 = DetProtocol(
    task="voc07_det",
    name="voc07_12_faster_rcnn_R50_C4",
    schedule=VOC07_12_C4,
    min_sizes_train=VOC_MIN_SIZES_TRAIN,
    train_sets=(("voc2007", "trainval"), ("voc2012", "trainval")),
    test_set=("voc2007", "test"),
    config_file="voc07_12_faster_rcnn_R50_C4.yaml",
    with_masks=False,
    box_offset=1.0,
    drop_crowd=False,
    evaluator="voc",
    dataset_label="voc07+12",
)
COCO = DetProtocol(
    task="coco_det",
    name="coco_mask_rcnn_R50_FPN_1x",
    schedule=COCO_FPN_1X,
    min_sizes_train=COCO_MIN_SIZES_TRAIN,
    train_sets=(("coco", "train2017"),),
    test_set=("coco", "val2017"),
    config_file="coco_mask_rcnn_R50_FPN_1x.yaml",
    with_masks=True,
    box_offset=0.0,
    drop_crowd=True,
    evaluator="coco",
    dataset_label="coco2017",
)
PROTOCOLS = {p.task: p for p in (VOC07_12, COCO)}

# The demo's scale-down: inputs scaled to the ~100 px synthetic images, few proposals and detections per test
# image (the C4 box head runs res5 on every proposal; Mask R-CNN runs its mask head on every detection).
_DEMO_COMMON = {"det_engine": "torchvision", "det_input_scale": 0.15, "det_test_proposals": 10,
                "det_detections_per_image": 10, "det_precise_bn_iters": 10, "det_max_test_images": 100}
_DEMO_TINY = {**_DEMO_COMMON, "det_max_iter": 1, "det_ims_per_batch": 2, "det_roi_per_image": 8,
              "det_input_scale": 0.1, "det_precise_bn_iters": 0, "det_max_test_images": 8}


def with_workers(opts: DetOptions, ctx: TaskContext) -> DetOptions:
    """det_num_workers unset: the run's --workers, else 4."""
    if opts.num_workers is not None:
        return opts
    workers = ctx.settings.workers if ctx.settings.workers is not None else DEFAULT_WORKERS
    return replace(opts, num_workers=workers)


def require_resnet(ctx: TaskContext) -> None:
    """The detection protocols put a ResNet trunk under an R50-C4 / R50-FPN detector: a ViT is skipped."""
    from vicreg_bench.models import is_vit

    if is_vit(ctx.ckpt_info.arch):
        raise TaskSkipped(f"the detection protocols (Faster R-CNN R50-C4, Mask R-CNN R50-FPN) need a ResNet "
                          f"backbone; {ctx.ckpt_info.arch} is a ViT (a ViTDet-style protocol is not implemented)")


def run_detection(protocol: DetProtocol, ctx: TaskContext) -> TaskOutput:
    require_resnet(ctx)
    opts = with_workers(ctx.options, ctx)
    if opts.engine == "torchvision":
        from vicreg_bench.detection.tv_runner import run_torchvision

        return run_torchvision(protocol, ctx, opts)
    from vicreg_bench.detection.d2_runner import run_detectron2

    return run_detectron2(protocol, ctx, opts)


def planned_protocol(protocol: DetProtocol, ctx: TaskContext) -> tuple[str, dict]:
    """The protocol name and params the task would record, without running anything: with the detectron2
    engine, the batch and process count its launch will use (2 images per GPU, one process on the CPU), and
    a trunk or launch it cannot run refused now, before any compute."""
    require_resnet(ctx)
    opts, processes = ctx.options, ctx.world_size
    if opts.engine == "detectron2":
        from vicreg_bench.detection.d2_runner import arch_overrides, resolve_launch

        arch_overrides(protocol, ctx.ckpt_info.arch)
        launch = resolve_launch(ctx, opts)
        opts, processes = launch.opts, launch.num_gpus * launch.opts.num_machines
    name, params, _ = protocol_record(protocol, opts, ctx.ckpt_info.arch, processes)
    return name, params


def _register(protocol: DetProtocol, summary: str, metrics: tuple[str, ...], headline: str, schema: str,
              columns: tuple[Column, ...], published: tuple[PublishedKey, ...], order: int, iterations: int,
              demo_small: dict, hours: float, own_run: bool) -> None:
    data: dict[str, tuple[tuple[str, str], ...]] = {}
    for ds, split in (*protocol.train_sets, protocol.test_set):
        data.setdefault(ds, ())
        data[ds] += (("detection", split),)

    def protocol_fn(ctx: TaskContext) -> tuple[str, dict]:
        return planned_protocol(protocol, ctx)

    def run(ctx: TaskContext) -> TaskOutput:
        return run_detection(protocol, ctx)

    register_task(
        name=protocol.task, summary=summary, protocol=protocol_fn, options=DetOptions, data=data,
        metrics=metrics, headline=(headline,), result_schema=schema, columns=columns,
        paper_settings={"iterations": iterations, "batch_size": 16}, published=published, suites=("table2",),
        order=order, paper_engine="detectron2",
        resources=Resources(device="gpu", gpus=8, cpus=80, mem_gb=320, hours=hours),
        demo={"small": DemoPreset({**_DEMO_COMMON, **demo_small}, own_run=own_run),
              "tiny": DemoPreset(dict(_DEMO_TINY), own_run=own_run)},
    )(run)


_register(VOC07_12, "VOC07+12 Faster R-CNN R50-C4, tested on VOC07", ("AP", "AP50", "AP75"), "AP50",
          "voc_det_task",
          (Column("AP50", 2, "VOC07+12 AP50", 100), Column("AP", 2, "VOC07+12 AP", 110),
           Column("AP75", 2, "VOC07+12 AP75", 120)),
          (PublishedKey("vicreg", 2, "VOC07+12", "AP50"),), 80, VOC07_12_C4.max_iter,
          {"det_max_iter": 170, "det_ims_per_batch": 2, "det_roi_per_image": 8, "det_base_lr": 0.02}, hours=6.0, own_run=True)
_register(COCO, "COCO Mask R-CNN R50-FPN, box and mask AP",
          ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"), "bbox_AP", "coco_det_task",
          (Column("bbox_AP", 2, "COCO det AP", 130), Column("segm_AP", 2, "COCO seg AP", 140)),
          (PublishedKey("vicreg", 2, "COCO det", "bbox_AP"), PublishedKey("vicreg", 2, "COCO seg", "segm_AP")), 90,
          COCO_FPN_1X.max_iter, {"det_max_iter": 80, "det_ims_per_batch": 4, "det_roi_per_image": 16}, hours=12.0, own_run=False)

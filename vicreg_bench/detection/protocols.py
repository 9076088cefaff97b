"""What a detection protocol is (`DetProtocol`), and how run options change it (recorded as deviations).

The two protocols of the paper's Table 2 are defined with their tasks, in `vicreg_bench.tasks.detection`.
Both engines read their schedule, input sizes and data splits from a DetProtocol, so the torchvision engine
and the detectron2 configs cannot drift apart (tests check the YAML files against these values).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from vicreg_bench.detection.options import DetOptions
from vicreg_bench.detection.schedule import Schedule, linear_scaled, scaled_period, shortened
from vicreg_bench.detection.transforms import MAX_SIZE, MIN_SIZE_TEST, InputSizes, protocol_sizes

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "detectron2"
CHECKPOINT_PERIOD = 5000  # detectron2 SOLVER.CHECKPOINT_PERIOD


@dataclass(frozen=True)
class DetProtocol:
    task: str
    name: str
    schedule: Schedule
    min_sizes_train: tuple[int, ...]
    train_sets: tuple[tuple[str, str], ...]  # (dataset, split) for vicreg_bench.data.registry.open_detection
    test_set: tuple[str, str]
    config_file: str
    with_masks: bool
    box_offset: float  # VOC boxes are 1-based pixel indices (detectron2 subtracts 1 from xmin/ymin)
    drop_crowd: bool
    evaluator: str  # "voc" (AP, AP50, AP75 of VOC07) or "coco" (box and mask AP)
    dataset_label: str  # the results' dataset name, e.g. "voc07+12"




def resolve_schedule(protocol: DetProtocol, opts: DetOptions) -> tuple[Schedule, int, list[str]]:
    """The schedule and checkpoint period that will run, and how they differ from the paper protocol."""
    notes: list[str] = []
    sched = linear_scaled(protocol.schedule, opts.batch)
    if opts.batch != protocol.schedule.ims_per_batch:
        notes.append(
            f"batch {opts.batch} instead of {protocol.schedule.ims_per_batch}: linear scaling rule applied "
            f"(lr {sched.base_lr:g}, {sched.max_iter} iterations, steps {list(sched.steps)}, warmup {sched.warmup_iters})"
        )
    period = opts.checkpoint_period or scaled_period(CHECKPOINT_PERIOD, sched, protocol.schedule)
    if opts.max_iter is not None and opts.max_iter != sched.max_iter:
        sched = shortened(sched, opts.max_iter)
        notes.append(f"shortened to {opts.max_iter} iterations (not the protocol)")
    if opts.base_lr is not None and opts.base_lr != sched.base_lr:
        sched = replace(sched, base_lr=opts.base_lr)
        notes.append(f"learning rate overridden to {opts.base_lr:g} (not the protocol)")
    return sched, max(1, min(period, sched.max_iter)), notes


def resolve_sizes(protocol: DetProtocol, opts: DetOptions) -> tuple[InputSizes, list[str]]:
    notes: list[str] = []
    sizes = protocol_sizes(protocol.min_sizes_train, opts.input_scale)
    if opts.input_scale != 1.0:
        notes.append(f"input sizes scaled by {opts.input_scale:g} (not the protocol)")
    if opts.min_size_train or opts.min_size_test or opts.max_size:
        sizes = InputSizes(
            tuple(opts.min_size_train) if opts.min_size_train else sizes.min_sizes_train,
            opts.min_size_test or sizes.min_size_test,
            opts.max_size or sizes.max_size,
        )
        if sizes != InputSizes(protocol.min_sizes_train, MIN_SIZE_TEST, MAX_SIZE):
            notes.append(f"input sizes set to {sizes.as_dict()} (not the protocol)")
    return sizes, notes


def protocol_record(protocol: DetProtocol, opts: DetOptions, arch: str, num_processes: int) -> tuple[str, dict, list[str]]:
    """(protocol name, params, deviations) of the run these options describe, known before anything runs
    (so `run` can tell whether a finished result already exists for them)."""
    sched, period, notes = resolve_schedule(protocol, opts)
    sizes, size_notes = resolve_sizes(protocol, opts)
    notes = notes + size_notes
    if opts.max_test_images is not None:
        notes.append(f"evaluated on at most {opts.max_test_images} test images (not the protocol)")
    if opts.roi_per_image != 512 or opts.test_proposals != 1000:
        notes.append(f"{opts.roi_per_image} RoIs per training image, {opts.test_proposals} test proposals (not the protocol)")
    if opts.detections_per_image != 100:
        notes.append(f"{opts.detections_per_image} detections per test image (not the protocol)")
    params = {
        "engine": opts.engine,
        "model": ("mask_rcnn_R_FPN" if protocol.with_masks else "faster_rcnn_R_C4_extra_norm"),
        "arch": arch,
        "schedule": sched.as_dict(),
        "input_sizes": sizes.as_dict(),
        "train": [f"{n}/{s}" for n, s in protocol.train_sets],
        "test": f"{protocol.test_set[0]}/{protocol.test_set[1]}",
        "precise_bn_iters": opts.precise_bn_iters,
        "roi_per_image": opts.roi_per_image,
        "test_proposals": opts.test_proposals,
        "max_test_images": opts.max_test_images,
        "detections_per_image": opts.detections_per_image,
        "paper_protocol": not notes,
    }
    if opts.engine == "torchvision":
        params["num_processes"] = num_processes
    # options that change the numbers, recorded when set (the paper protocol leaves them at their defaults)
    if opts.amp != "auto":
        params["amp"] = opts.amp
    if opts.channels_last:
        params["channels_last"] = True
    if opts.d2_opts:
        params["d2_opts"] = list(opts.d2_opts)
        notes.append(f"detectron2 config overrides {' '.join(opts.d2_opts)} (not the protocol)")
        params["paper_protocol"] = False
    return f"det_{protocol.name}_{opts.engine}", params, notes

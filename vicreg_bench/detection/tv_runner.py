"""A detection task on the torchvision engine: data, model from the checkpoint, training, inference, AP.

Results carry `engine: "torchvision"`: this engine follows the protocol's schedule, sizes and BN handling
but is not the code that produced the published numbers (docs/detection.md lists the differences).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vicreg_bench.detection.options import DetOptions
from vicreg_bench.detection.protocols import DetProtocol, protocol_record, resolve_schedule, resolve_sizes
from vicreg_bench.detection.tv_data import ConcatDetection
from vicreg_bench.detection.tv_engine import EngineSettings, dist_info, predict, train_detector
from vicreg_bench.fileio import atomic_torch_save
from vicreg_bench.tasks.context import TaskContext, TaskOutput


class DetectionInterrupted(RuntimeError):
    """Training stopped before its last iteration (det_stop_after_iter); running the task again resumes."""


def _amp_mode(opts: DetOptions, device: str) -> str:
    if not str(device).startswith("cuda") or opts.amp == "off":
        return "off"
    if opts.amp == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return opts.amp


def open_splits(protocol: DetProtocol, data_root: Path, on_bad_image: str = "error"):
    from vicreg_bench.data.registry import open_detection

    train = [open_detection(name, data_root, split, on_bad_image=on_bad_image) for name, split in protocol.train_sets]
    test = open_detection(protocol.test_set[0], data_root, protocol.test_set[1], on_bad_image=on_bad_image)
    return train, test


def dataset_record(protocol: DetProtocol, train: list, test: Any, num_test: int) -> dict:
    return {
        "name": protocol.dataset_label,
        "splits": {"train": [f"{n}/{s}" for n, s in protocol.train_sets], "test": f"{protocol.test_set[0]}/{protocol.test_set[1]}"},
        "num_images": {"train": sum(len(d) for d in train), "test": num_test},
        "manifest_sha256": {
            "train": hashlib.sha256("".join(d.manifest_sha256() for d in train).encode()).hexdigest() if len(train) > 1 else train[0].manifest_sha256(),
            "test": test.manifest_sha256(),
        },
    }


def build_model(protocol: DetProtocol, ctx: TaskContext, num_classes: int, opts: DetOptions) -> torch.nn.Module:
    from vicreg_bench.detection.c4_model import build_c4_faster_rcnn
    from vicreg_bench.detection.fpn_model import build_fpn_mask_rcnn
    from vicreg_bench.detection.rcnn_parts import input_normalization
    from vicreg_bench.models import build_resnet

    trunk = build_resnet(ctx.ckpt_info.arch)
    trunk.load_state_dict(ctx.state_dict, strict=True)
    mean, std = input_normalization(bool(getattr(ctx.ckpt_info, "normalize_input", True)))
    torch.manual_seed(ctx.seed)  # the new heads start the same way for the same seed
    kw = dict(image_mean=mean, image_std=std, roi_per_image=opts.roi_per_image, test_proposals=opts.test_proposals,
              detections_per_image=opts.detections_per_image)
    if protocol.with_masks:
        return build_fpn_mask_rcnn(trunk, num_classes, **kw)
    return build_c4_faster_rcnn(trunk, num_classes, **kw)


def voc_metrics(test: Any, predictions: list[dict], evaluated: list[int]) -> tuple[dict, dict]:
    from vicreg_bench.detection.voc_eval import voc_detection_ap

    ids = [test.samples[i][1].image_id for i in evaluated]
    dets = []
    for p in predictions:
        img = test.samples[p["index"]][1].image_id
        for box, score, label in zip(p["boxes"], p["scores"], p["labels"]):
            # back to the XML's 1-based pixels: detectron2 adds 1 to xmin/ymin when writing its results
            dets.append({"image_id": img, "class": int(label), "score": float(score), "bbox": [box[0] + 1.0, box[1] + 1.0, box[2], box[3]]})
    ap = voc_detection_ap(test.annotations_dir, ids, dets, test.classes)
    per_class = {c: v["AP50"] for c, v in ap["per_class"].items()}
    return {"AP": ap["AP"], "AP50": ap["AP50"], "AP75": ap["AP75"]}, {"per_class_AP50": per_class, "num_detections": len(dets)}


def coco_metrics(test: Any, predictions: list[dict], evaluated: list[int]) -> tuple[dict, dict]:
    from vicreg_bench.detection.coco_eval import coco_evaluate, instances_to_coco_results

    results = []
    for p in predictions:
        image_id = test.samples[p["index"]][1].image_id
        rs = instances_to_coco_results(image_id, p["boxes"], p["scores"], p["labels"], test.category_ids)
        for r, rle in zip(rs, p.get("masks", [])):
            r["segmentation"] = rle
        results.extend(rs)
    img_ids = [test.samples[i][1].image_id for i in evaluated]
    m = coco_evaluate(test.coco, results, iou_types=("bbox", "segm"), img_ids=img_ids)
    headline = {k: m[k] for k in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75")}
    return headline, {"all_metrics": {k: (None if np.isnan(v) else v) for k, v in m.items()}, "num_detections": len(results)}


def run_torchvision(protocol: DetProtocol, ctx: TaskContext, opts: DetOptions, log: Callable[[str], None] = print) -> TaskOutput:
    t0 = time.perf_counter()
    on_bad = ctx.settings.on_bad_image
    train_sets, test = open_splits(protocol, Path(ctx.data_root), on_bad)
    schedule, period, notes = resolve_schedule(protocol, opts)
    sizes, size_notes = resolve_sizes(protocol, opts)
    notes += size_notes
    device = ctx.device or "cpu"
    settings = EngineSettings(
        schedule=schedule,
        sizes=sizes,
        checkpoint_period=period,
        precise_bn_iters=opts.precise_bn_iters,
        num_workers=opts.num_workers,
        amp=_amp_mode(opts, device),
        channels_last=opts.channels_last,
        seed=ctx.seed,
        box_offset=protocol.box_offset,
        with_masks=protocol.with_masks,
        drop_crowd=protocol.drop_crowd,
        stop_after=opts.stop_after_iter,
    )
    sha = getattr(ctx.ckpt_info, "sha256", "") or ""
    settings.fingerprint = hashlib.sha256(
        json.dumps({"task": protocol.task, "settings": settings.as_dict(), "ckpt": sha, "arch": ctx.ckpt_info.arch}, sort_keys=True).encode()
    ).hexdigest()
    model = build_model(protocol, ctx, len(test.classes), opts)
    work_dir = Path(ctx.work_dir)
    model, train_result = train_detector(model, ConcatDetection(train_sets), settings, work_dir, device, log)
    if not train_result.completed:
        raise DetectionInterrupted(
            f"detection training stopped at iteration {train_result.iterations_done} of {schedule.max_iter} "
            f"(det_stop_after_iter); run the task again with the same --out to resume from {work_dir}"
        )
    rank, _ = dist_info()
    if rank == 0:
        atomic_torch_save(model.state_dict(), work_dir / "model_final.pth")

    n_test = len(test) if opts.max_test_images is None else min(len(test), opts.max_test_images)
    predictions, pstats = predict(
        model, test, sizes, device, with_masks=protocol.with_masks, amp=settings.amp,
        max_images=opts.max_test_images, num_workers=min(opts.num_workers, 2),
    )
    if opts.max_test_images is not None:
        notes.append(f"evaluated on at most {opts.max_test_images} test images (not the protocol)")
    evaluated = list(range(n_test))
    if predictions is None:  # not the main process: rank 0 reports
        metrics, extra = {}, {}
    elif protocol.evaluator == "voc":
        metrics, extra = voc_metrics(test, predictions, evaluated)
    else:
        metrics, extra = coco_metrics(test, predictions, evaluated)
    extra.update(
        {
            "iterations_done": train_result.iterations_done,
            "resumed_from": train_result.resumed_from,
            "precise_bn_batches": train_result.precise_bn_batches,
            "loss_history": train_result.loss_history[-50:],
            "skipped_test_images": pstats["skipped"],
            "deviations_from_protocol": notes,
            "paper_protocol": not notes,
            "train_seconds": round(train_result.seconds, 3),
            "total_seconds": round(time.perf_counter() - t0, 3),
        }
    )
    # params = exactly the plan `run` hashes before running (a finished task is then skipped on the next run);
    # the engine's derived settings go to extra
    name, params, _ = protocol_record(protocol, opts, ctx.ckpt_info.arch, dist_info()[1])
    extra["engine_settings"] = {k: v for k, v in settings.as_dict().items() if k not in ("schedule", "input_sizes")}
    throughput = {
        "train_iter_s": train_result.iter_time_s,
        "train_images_per_s": train_result.train_images_per_s,
        "train_data_time_s": train_result.data_time_s,
        "test_images_per_s": pstats.get("test_images_per_s"),
    }
    return TaskOutput(
        metrics=metrics,
        protocol_name=name,
        protocol_params=params,
        dataset=dataset_record(protocol, train_sets, test, n_test),
        engine="torchvision",
        throughput={k: (round(v, 6) if isinstance(v, float) else v) for k, v in throughput.items()},
        extra=extra,
    )

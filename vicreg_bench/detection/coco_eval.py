"""COCO box and mask AP with pycocotools' COCOeval, reported the way detectron2's COCOEvaluator reports them.

Detections are COCO result dicts: `{image_id, category_id, bbox: [x, y, w, h], score, segmentation: RLE}` in
the annotation file's pixel coordinates (detectron2 writes XYXY -> XYWH with no pixel offset for COCO).
Metrics are percentages named `bbox_AP`, `bbox_AP50`, `bbox_AP75`, `bbox_APs`, `bbox_APm`, `bbox_APl` and the
same with `segm_`. Only the evaluated images count (detectron2 sets `params.imgIds` to the images it ran on).
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Iterable, Sequence

import numpy as np

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]


def load_coco_gt(path: str | os.PathLike):
    """A pycocotools COCO object for an annotation file, without its console chatter."""
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def mask_to_rle(mask: np.ndarray) -> dict:
    """A binary H x W mask as COCO compressed RLE with a str `counts` (JSON-serialisable)."""
    from pycocotools import mask as mask_util

    rle = mask_util.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)[:, :, None]))[0]
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def instances_to_coco_results(
    image_id: int,
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    category_ids: Sequence[int],
    masks: np.ndarray | None = None,
) -> list[dict]:
    """One image's predictions (contiguous class indices) as COCO result dicts (XYWH boxes, RLE masks)."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    results = []
    for k in range(len(boxes)):
        x1, y1, x2, y2 = boxes[k].tolist()
        r: dict[str, Any] = {
            "image_id": int(image_id),
            "category_id": int(category_ids[int(labels[k])]),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[k]),
        }
        if masks is not None:
            r["segmentation"] = mask_to_rle(masks[k])
        results.append(r)
    return results


def coco_evaluate(
    coco_gt,
    results: Iterable[dict],
    iou_types: Sequence[str] = ("bbox", "segm"),
    img_ids: Iterable[int] | None = None,
) -> dict[str, float]:
    """COCOeval for each IoU type over `img_ids` (default: every image of the ground truth).

    With no detections at all, every metric is 0.0 (COCOeval cannot load an empty result list; no detection
    means zero precision at every recall).
    """
    from pycocotools.cocoeval import COCOeval

    if isinstance(coco_gt, (str, os.PathLike)):
        coco_gt = load_coco_gt(coco_gt)
    results = list(results)
    img_ids = sorted(set(int(i) for i in img_ids)) if img_ids is not None else sorted(coco_gt.getImgIds())
    metrics: dict[str, float] = {}
    for iou_type in iou_types:
        if iou_type not in ("bbox", "segm"):
            raise ValueError(f"iou type must be 'bbox' or 'segm', got {iou_type!r}")
        # copies: loadRes writes `id` and `area` into the dicts it is given
        usable = [dict(r) for r in results if iou_type == "bbox" or "segmentation" in r]
        if not usable:
            metrics.update({f"{iou_type}_{n}": 0.0 for n in STAT_NAMES})
            continue
        if iou_type == "segm":
            # as detectron2: drop the box, so that pycocotools takes the area (small/medium/large) from the mask
            for r in usable:
                r.pop("bbox", None)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(usable)
            ev = COCOeval(coco_gt, coco_dt, iou_type)
            ev.params.imgIds = img_ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for name, value in zip(STAT_NAMES, ev.stats[:6]):
            # COCOeval writes -1 where a metric is undefined (no ground truth in that area range)
            metrics[f"{iou_type}_{name}"] = float(value * 100.0) if value >= 0 else float("nan")
    return metrics

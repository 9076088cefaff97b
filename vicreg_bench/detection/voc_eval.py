"""PASCAL VOC detection AP, equal to detectron2's `PascalVOCDetectionEvaluator` (pascal_voc_evaluation.py).

Why a re-implementation: detectron2 is not pip-installable, and the torchvision engine needs the same numbers.
Every convention below was checked against detectron2's source (the py-faster-rcnn `voc_eval` it carries):

- Ground truth comes from the XML files; objects flagged `difficult` are not counted as positives.
- Detections are in the XML's 1-based pixel coordinates. detectron2 predicts in 0-based continuous
  coordinates and adds 1 to xmin/ymin when it writes its result files, so callers convert before calling.
- detectron2 writes detections as text with `score:.3f` and coordinates `:.1f`, and reads them back; we round
  the same way (`round_like_detectron2=True`) so ties and IoUs at the edge of a threshold come out the same.
- Per class, detections are ranked by `np.argsort(-score)` (numpy's default sort, as detectron2), in the order
  they were given, so equal scores are broken the same way for the same input order.
- IoU uses +1 pixel widths: w = xmax - xmin + 1. Each detection is compared with *all* ground-truth boxes of its
  class in its image and takes the best (first on ties). It is a true positive when IoU is strictly greater than
  the threshold and that box is neither difficult nor already matched; matching a difficult box counts neither
  TP nor FP; matching an already-matched box (a duplicate) or IoU <= threshold is a false positive.
- AP for VOC2007 is the 11-point metric (max precision at recall >= 0, 0.1, ..., 1.0); otherwise all-point
  interpolated AP. A class without positives scores 0 with the 11-point metric (detectron2 divides by zero and
  the comparisons with NaN fail) and, if it has detections, NaN with the other metric (as detectron2).
- AP = mean over IoU thresholds 0.50, 0.55, ..., 0.95 of the class-mean AP; AP50 and AP75 are the class means at
  0.5 and 0.75. Results are percentages.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

IOU_THRESHOLDS = tuple(t / 100.0 for t in range(50, 100, 5))  # detectron2: range(50, 100, 5) / 100


@dataclass(frozen=True)
class VocObject:
    name: str
    bbox: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written in the XML (1-based)
    difficult: bool


@functools.lru_cache(maxsize=None)
def _parse_cached(path: str, mtime: float) -> tuple[VocObject, ...]:
    tree = ET.parse(path)
    objects = []
    for obj in tree.findall("object"):
        name = (obj.findtext("name") or "").strip()
        difficult = obj.findtext("difficult")
        box = obj.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>")
        coords = tuple(float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        objects.append(VocObject(name, coords, bool(int(difficult)) if difficult is not None else False))
    return tuple(objects)


def parse_voc_xml(path: str | os.PathLike) -> tuple[VocObject, ...]:
    """The objects of one VOC annotation file (cached; re-read when the file changes)."""
    path = str(path)
    return _parse_cached(path, os.path.getmtime(path))


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a precision/recall curve: 11-point (VOC2007) or all-point interpolated."""
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):  # the same 11 floats as detectron2 (0.30000000000000004, ...)
            above = rec >= t
            ap += (float(np.max(prec[above])) if above.any() else 0.0) / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope, non-increasing from the right
    changed = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[changed + 1] - mrec[changed]) * mpre[changed + 1]))


def _round_fmt(values: np.ndarray, decimals: int) -> np.ndarray:
    """Round exactly as Python's `f"{x:.{decimals}f}"` then `float()` does (what detectron2's text files do)."""
    return np.array([float(f"{v:.{decimals}f}") for v in values.tolist()], dtype=np.float64)


def _best_overlaps(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each detection, the best IoU with any ground-truth box (+1 pixel convention) and its index."""
    if gt_boxes.size == 0:
        return np.full(len(det_boxes), -np.inf), np.zeros(len(det_boxes), dtype=np.int64)
    d = det_boxes[:, None, :]
    g = gt_boxes[None, :, :]
    iw = np.maximum(np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1]) + 1.0, 0.0)
    inter = iw * ih
    area_d = (d[..., 2] - d[..., 0] + 1.0) * (d[..., 3] - d[..., 1] + 1.0)
    area_g = (g[..., 2] - g[..., 0] + 1.0) * (g[..., 3] - g[..., 1] + 1.0)
    overlaps = inter / (area_d + area_g - inter)
    return overlaps.max(axis=1), overlaps.argmax(axis=1)


def _class_ap_per_threshold(
    gt: dict[str, list[VocObject]],
    dets: list[tuple[str, float, np.ndarray]],
    thresholds: Sequence[float],
    use_07_metric: bool,
) -> list[float]:
    """AP (fraction) of one class at each IoU threshold."""
    npos = sum(1 for objs in gt.values() for o in objs if not o.difficult)
    if not dets:
        # no detections: empty recall and precision, which both metrics score 0 (also without positives)
        return [0.0] * len(thresholds)
    image_ids = [d[0] for d in dets]
    confidence = np.array([d[1] for d in dets], dtype=np.float64)
    boxes = np.stack([d[2] for d in dets]).astype(np.float64)
    order = np.argsort(-confidence)  # numpy's default kind, exactly as detectron2
    boxes = boxes[order]
    image_ids = [image_ids[i] for i in order]

    # best overlap of every detection, computed once per image (it does not depend on the threshold)
    ovmax = np.empty(len(order))
    gt_key = np.empty(len(order), dtype=np.int64)  # global index of the best ground-truth box
    is_difficult = np.zeros(len(order), dtype=bool)
    by_image: dict[str, list[int]] = {}
    for pos, img in enumerate(image_ids):
        by_image.setdefault(img, []).append(pos)
    offset = 0
    for img, positions in by_image.items():
        objs = gt[img]
        gt_boxes = np.array([o.bbox for o in objs], dtype=np.float64).reshape(-1, 4)
        diff = np.array([o.difficult for o in objs], dtype=bool)
        idx = np.array(positions)
        best, arg = _best_overlaps(boxes[idx], gt_boxes)
        ovmax[idx] = best
        gt_key[idx] = offset + arg
        if len(objs):
            is_difficult[idx] = diff[arg]
        offset += max(len(objs), 1)

    aps = []
    for t in thresholds:
        hit = ovmax > t
        candidate = hit & ~is_difficult
        tp = np.zeros(len(order))
        # among detections hitting the same ground-truth box, the first in rank order is the TP, the rest duplicates
        cand_pos = np.nonzero(candidate)[0]
        _, first = np.unique(gt_key[cand_pos], return_index=True)
        tp[cand_pos[first]] = 1.0
        fp = (~hit | (candidate & (tp == 0))).astype(np.float64)
        tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = tp_c / float(npos)
        prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        aps.append(voc_ap(rec, prec, use_07_metric))
    return aps


def voc_detection_ap(
    annotations_dir: str | os.PathLike,
    image_ids: Iterable[str],
    detections: Iterable[dict[str, Any]],
    classes: Sequence[str],
    use_07_metric: bool = True,
    *,
    round_like_detectron2: bool = True,
) -> dict:
    """VOC detection AP over `image_ids`, equal to detectron2's PascalVOCDetectionEvaluator.

    `annotations_dir` holds `<image_id>.xml`; `detections` are dicts `{image_id, class, score, bbox}` with
    `class` a name from `classes` (or its index) and `bbox = [xmin, ymin, xmax, ymax]` in the XML's 1-based pixel
    coordinates. Returns percentages: `{"AP", "AP50", "AP75", "per_class": {class: {"AP", "AP50", "AP75"}}}`.
    """
    annotations_dir = Path(annotations_dir)
    image_ids = [str(i).strip() for i in image_ids]
    classes = list(classes)
    class_index = {c: i for i, c in enumerate(classes)}
    gt_per_class: list[dict[str, list[VocObject]]] = [{img: [] for img in image_ids} for _ in classes]
    for img in image_ids:
        xml = annotations_dir / f"{img}.xml"
        if not xml.is_file():
            raise FileNotFoundError(f"{xml}: annotation file for image {img!r} not found")
        for obj in parse_voc_xml(xml):
            if obj.name in class_index:
                gt_per_class[class_index[obj.name]][img].append(obj)

    known = set(image_ids)
    dets_per_class: list[list[tuple[str, float, np.ndarray]]] = [[] for _ in classes]
    raw: list[tuple[int, str, float, list[float]]] = []
    for det in detections:
        img = str(det["image_id"]).strip()
        if img not in known:
            raise ValueError(f"detection on image {img!r}, which is not among the evaluated image ids")
        cls = det["class"]
        ci = int(cls) if isinstance(cls, (int, np.integer)) else class_index.get(cls)
        if ci is None or not 0 <= ci < len(classes):
            raise ValueError(f"detection class {cls!r} is not one of the {len(classes)} classes")
        bbox = [float(v) for v in det["bbox"]]
        if len(bbox) != 4:
            raise ValueError(f"detection bbox must be [xmin, ymin, xmax, ymax], got {det['bbox']!r}")
        raw.append((ci, img, float(det["score"]), bbox))
    if raw:
        scores = np.array([r[2] for r in raw])
        boxes = np.array([r[3] for r in raw], dtype=np.float64)
        if round_like_detectron2:
            scores = _round_fmt(scores, 3)
            boxes = _round_fmt(boxes.reshape(-1), 1).reshape(-1, 4)
        for (ci, img, _, _), s, b in zip(raw, scores, boxes):
            dets_per_class[ci].append((img, float(s), b))

    per_threshold = np.array(
        [_class_ap_per_threshold(gt_per_class[c], dets_per_class[c], IOU_THRESHOLDS, use_07_metric) for c in range(len(classes))]
    ) * 100.0  # classes x thresholds
    mean_per_threshold = per_threshold.mean(axis=0)
    i50, i75 = IOU_THRESHOLDS.index(0.5), IOU_THRESHOLDS.index(0.75)
    return {
        "AP": float(np.mean(mean_per_threshold)),
        "AP50": float(mean_per_threshold[i50]),
        "AP75": float(mean_per_threshold[i75]),
        "per_class": {
            c: {"AP": float(np.mean(per_threshold[k])), "AP50": float(per_threshold[k, i50]), "AP75": float(per_threshold[k, i75])}
            for k, c in enumerate(classes)
        },
    }

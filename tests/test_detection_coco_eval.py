"""COCO evaluation through pycocotools on the real val2017 annotation excerpt."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vicreg_bench.detection.coco_eval import coco_evaluate, instances_to_coco_results, load_coco_gt, mask_to_rle


@pytest.fixture(scope="module")
def coco_gt(real_layouts):
    return load_coco_gt(real_layouts / "coco" / "annotations" / "instances_val2017.json")


def _gt_as_results(coco_gt, keep=lambda ann: True):
    out = []
    for ann in coco_gt.dataset["annotations"]:
        if ann["iscrowd"] or not keep(ann):
            continue
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": list(ann["bbox"]),
                    "score": 1.0, "segmentation": coco_gt.annToRLE(ann)})
    return out


def test_ground_truth_as_detections_scores_100(coco_gt):
    m = coco_evaluate(coco_gt, _gt_as_results(coco_gt))
    for k in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert m[k] == pytest.approx(100.0), k


def test_missing_detections_lower_recall_as_computed_by_hand(coco_gt):
    # category 44 (bottle) has 13 non-crowd boxes in image 464689; keep 6 -> recall 6/13 = .4615 with precision 1.
    # COCO's 101-point AP = share of recall thresholds 0.00 .. 1.00 reached: 0.00 .. 0.46 -> 47 / 101.
    bottles = [a for a in coco_gt.dataset["annotations"] if a["category_id"] == 44 and not a["iscrowd"]]
    assert len(bottles) == 13
    dropped = {a["id"] for a in bottles[6:]}
    res = _gt_as_results(coco_gt, keep=lambda a: a["id"] not in dropped)
    cats = sorted({a["category_id"] for a in coco_gt.dataset["annotations"]})
    m = coco_evaluate(coco_gt, res, iou_types=("bbox",))
    # 8 categories: 7 perfect, bottle at 47/101
    assert m["bbox_AP"] == pytest.approx((7 * 100 + 100 * 47 / 101) / len(cats))


def test_perturbed_boxes_lower_strict_ap(coco_gt):
    res = _gt_as_results(coco_gt)
    rng = np.random.default_rng(0)
    for r in res:
        x, y, w, h = r["bbox"]
        r["bbox"] = [x + 0.15 * w * rng.uniform(-1, 1), y + 0.15 * h * rng.uniform(-1, 1), w, h]
        r.pop("segmentation")
    m = coco_evaluate(coco_gt, res, iou_types=("bbox",))
    assert m["bbox_AP50"] > m["bbox_AP75"] > m["bbox_AP"] * 0.5
    assert m["bbox_AP"] < 90.0 and m["bbox_AP50"] > 80.0


def test_results_helper_converts_xyxy_and_masks(coco_gt):
    masks = np.zeros((1, 20, 30), dtype=bool)
    masks[0, 5:10, 3:9] = True
    out = instances_to_coco_results(7, np.array([[3.0, 5.0, 9.0, 10.0]]), np.array([0.5]), np.array([2]), [1, 3, 44], masks)
    assert out[0]["bbox"] == [3.0, 5.0, 6.0, 5.0] and out[0]["category_id"] == 44
    from pycocotools import mask as mask_util

    assert int(mask_util.area(out[0]["segmentation"])) == 30
    assert isinstance(mask_to_rle(masks[0])["counts"], str)


def test_no_detections_gives_zero(coco_gt):
    m = coco_evaluate(coco_gt, [])
    assert m["bbox_AP"] == 0.0 and m["segm_AP"] == 0.0
    m = coco_evaluate(coco_gt, _gt_as_results(coco_gt), img_ids=[194216])
    assert m["bbox_AP"] == pytest.approx(100.0)
    assert math.isnan(m["bbox_APl"]) or m["bbox_APl"] == pytest.approx(100.0)

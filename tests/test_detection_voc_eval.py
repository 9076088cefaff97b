"""VOC detection AP: hand-worked cases, the real VOC2007 XML files, and a literal re-statement of detectron2's loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vicreg_bench.detection.voc_eval import voc_ap, voc_detection_ap

VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]


def _write_xml(folder: Path, image_id: str, objects: list[tuple[str, list[int], int]]) -> None:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{image_id}.xml").write_text(
        f"<annotation><filename>{image_id}.jpg</filename><size><width>100</width><height>100</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


def _det(img, cls, score, box):
    return {"image_id": img, "class": cls, "score": score, "bbox": box}


def test_duplicate_detection_is_a_false_positive(tmp_path):
    _write_xml(tmp_path, "a", [("car", [1, 1, 10, 10], 0), ("car", [21, 1, 30, 10], 0)])
    dets = [_det("a", "car", 0.9, [1, 1, 10, 10]), _det("a", "car", 0.8, [1, 1, 10, 10]), _det("a", "car", 0.7, [21, 1, 30, 10])]
    # ranked: TP, FP (duplicate), TP -> recall .5 .5 1, precision 1 .5 2/3
    # 11-point: t = 0.0..0.5 (6 points) see precision 1; t = 0.6..1.0 (5 points) see 2/3 -> (6 + 5 * 2/3) / 11
    out = voc_detection_ap(tmp_path, ["a"], dets, ["car"])
    assert out["AP50"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)
    # all-point: envelope 1 up to recall .5, 2/3 up to recall 1 -> .5 * 1 + .5 * 2/3
    out12 = voc_detection_ap(tmp_path, ["a"], dets, ["car"], use_07_metric=False)
    assert out12["AP50"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))


def test_iou_threshold_is_strict_and_uses_plus_one_widths(tmp_path):
    _write_xml(tmp_path, "a", [("car", [1, 1, 10, 10], 0)])  # 10 x 10 = 100 pixels with the +1 convention
    # [1, 1, 10, 5] covers 10 x 5 = 50 pixels, all inside: IoU = 50 / 100 = 0.5 exactly (0.444 without the +1)
    out = voc_detection_ap(tmp_path, ["a"], [_det("a", "car", 0.9, [1, 1, 10, 5])], ["car"])
    assert out["AP50"] == 0.0  # 0.5 is not > 0.5
    # [1, 1, 10, 6]: IoU 0.6 -> a hit at thresholds 0.50 and 0.55 only: AP = 2 / 10 thresholds x 100
    out = voc_detection_ap(tmp_path, ["a"], [_det("a", "car", 0.9, [1, 1, 10, 6])], ["car"])
    assert out["AP50"] == pytest.approx(100.0) and out["AP75"] == 0.0
    assert out["AP"] == pytest.approx(20.0)


def test_difficult_objects_are_neither_positive_nor_false_positive(tmp_path):
    _write_xml(tmp_path, "a", [("car", [1, 1, 10, 10], 0), ("car", [21, 1, 30, 10], 1)])
    dets = [_det("a", "car", 0.9, [21, 1, 30, 10]), _det("a", "car", 0.8, [1, 1, 10, 10])]
    # npos = 1; the difficult hit is ignored, so precision at recall 1 is 1/1 -> AP 100 (50 if it were an FP)
    assert voc_detection_ap(tmp_path, ["a"], dets, ["car"])["AP50"] == pytest.approx(100.0)
    # a detection that matches nothing is an FP: precision 1/2 at recall 1 -> 11-point AP 50
    dets.insert(0, _det("a", "car", 0.95, [60, 60, 90, 90]))
    assert voc_detection_ap(tmp_path, ["a"], dets, ["car"])["AP50"] == pytest.approx(50.0)


def test_best_match_already_taken_is_a_duplicate_even_if_another_box_is_free(tmp_path):
    # two overlapping ground truths; the second detection's best IoU is the already-matched box
    _write_xml(tmp_path, "a", [("car", [1, 1, 20, 20], 0), ("car", [5, 1, 24, 20], 0)])
    dets = [_det("a", "car", 0.9, [1, 1, 20, 20]), _det("a", "car", 0.8, [2, 1, 21, 20])]
    # det2 IoU with gt1 = 19*20/(2*400-380) = .905, with gt2 = 17*20/(800-340) = .739 -> takes gt1 -> FP
    # recall .5 .5, precision 1 .5 -> 11-point: t <= .5 -> 1 (6 points), t > .5 -> 0 -> 6/11
    assert voc_detection_ap(tmp_path, ["a"], dets, ["car"])["AP50"] == pytest.approx(100 * 6 / 11)


def test_scores_are_rounded_like_detectron2_result_files(tmp_path):
    _write_xml(tmp_path, "a", [("car", [1, 1, 10, 10], 0)])
    dets = [_det("a", "car", 0.9001, [1, 1, 10, 10]), _det("a", "car", 0.9004, [50, 50, 60, 60])]
    # detectron2 writes both scores as 0.900: a tie, kept in input order -> TP first -> AP 100
    assert voc_detection_ap(tmp_path, ["a"], dets, ["car"])["AP50"] == pytest.approx(100.0)
    # unrounded, the FP ranks first: precision 0 then 1/2 at recall 1 -> 11-point AP 50
    assert voc_detection_ap(tmp_path, ["a"], dets, ["car"], round_like_detectron2=False)["AP50"] == pytest.approx(50.0)


def test_class_without_detections_or_positives(tmp_path):
    _write_xml(tmp_path, "a", [("car", [1, 1, 10, 10], 0)])
    out = voc_detection_ap(tmp_path, ["a"], [_det("a", "car", 0.5, [1, 1, 10, 10])], ["car", "bus"])
    assert out["per_class"]["car"]["AP50"] == pytest.approx(100.0) and out["per_class"]["bus"]["AP50"] == 0.0
    assert out["AP50"] == pytest.approx(50.0)  # the mean includes classes without positives, as detectron2's mean does


def test_bad_inputs_are_reported(tmp_path):
    _write_xml(tmp_path, "a", [("car", [1, 1, 10, 10], 0)])
    with pytest.raises(ValueError, match="not among"):
        voc_detection_ap(tmp_path, ["a"], [_det("b", "car", 0.5, [1, 1, 2, 2])], ["car"])
    with pytest.raises(ValueError, match="not one of"):
        voc_detection_ap(tmp_path, ["a"], [_det("a", "truck", 0.5, [1, 1, 2, 2])], ["car"])
    with pytest.raises(FileNotFoundError, match="zzz"):
        voc_detection_ap(tmp_path, ["zzz"], [], ["car"])


def test_voc_ap_eleven_point_by_hand():
    # recall .2 .4 .4 .6, precision 1 1 .67 .75: max precision at recall >= t:
    # t=0,.1,.2 -> 1; .3,.4 -> 1; .5 -> .75; .7..1.0 -> 0. And t=.6: np.arange(0, 1.1, .1) holds
    # 0.6000000000000001, which recall 0.6 does not reach, so that point is 0 too (as in detectron2) -> (5 + .75) / 11
    rec = np.array([0.2, 0.4, 0.4, 0.6])
    prec = np.array([1.0, 1.0, 2 / 3, 0.75])
    assert voc_ap(rec, prec, True) == pytest.approx((5 + 0.75) / 11)
    # all-point: .2*1 + .2*1 + .2*.75
    assert voc_ap(rec, prec, False) == pytest.approx(0.2 + 0.2 + 0.15)


def test_real_voc2007_annotations(real_layouts):
    ann = real_layouts / "VOCdevkit" / "VOC2007" / "Annotations"
    ids = ["000004", "000005"]
    import xml.etree.ElementTree as ET

    gt = []
    for img in ids:
        for obj in ET.parse(ann / f"{img}.xml").findall("object"):
            b = obj.find("bndbox")
            box = [float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            gt.append((img, obj.findtext("name"), int(obj.findtext("difficult")), box))
    assert sum(1 for g in gt if g[1] == "car") == 7
    assert sum(1 for g in gt if g[1] == "chair" and g[2]) == 2
    # every ground-truth box (difficult ones too) as a detection: chair and car are perfect
    dets = [_det(img, name, 1.0, box) for img, name, _, box in gt]
    out = voc_detection_ap(ann, ids, dets, VOC_CLASSES)
    assert out["per_class"]["car"]["AP"] == pytest.approx(100.0) and out["per_class"]["chair"]["AP"] == pytest.approx(100.0)
    # the 18 other classes have no positives and no detections: 0, and they count in the mean
    assert out["AP50"] == pytest.approx(200 / 20) and out["AP"] == pytest.approx(10.0)
    # drop one car: recall stops at 6/7 = .857 -> precision 1 for t = 0 .. .8 (9 of 11 points)
    first_car = next(i for i, d in enumerate(dets) if d["class"] == "car")
    dets_missing = dets[:first_car] + dets[first_car + 1 :]
    out = voc_detection_ap(ann, ids, dets_missing, VOC_CLASSES)
    assert out["per_class"]["car"]["AP50"] == pytest.approx(100 * 9 / 11)
    # shift every box 1 pixel right and down: IoU drops below 1 but stays above .75 for these sizes
    shifted = [_det(d["image_id"], d["class"], 1.0, [v + 1 for v in d["bbox"]]) for d in dets]
    out = voc_detection_ap(ann, ids, shifted, VOC_CLASSES)
    assert out["per_class"]["chair"]["AP75"] == pytest.approx(100.0) and out["per_class"]["chair"]["AP"] < 100.0


def _literal_reference(xml_dir: Path, ids, dets, classes, use_07_metric):
    """detectron2's algorithm restated one detection at a time (written from its description, as a cross-check)."""
    import xml.etree.ElementTree as ET

    recs = {}
    for img in ids:
        objs = []
        for o in ET.parse(xml_dir / f"{img}.xml").findall("object"):
            b = o.find("bndbox")
            objs.append((o.findtext("name"), [float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")], int(o.findtext("difficult"))))
        recs[img] = objs
    aps = {}
    for thresh in range(50, 100, 5):
        t = thresh / 100.0
        per_class = []
        for cls in classes:
            R = {img: {"bbox": np.array([o[1] for o in recs[img] if o[0] == cls]).reshape(-1, 4),
                       "difficult": [o[2] for o in recs[img] if o[0] == cls], "det": [False] * sum(o[0] == cls for o in recs[img])}
                 for img in ids}
            npos = sum(len(r["difficult"]) - sum(r["difficult"]) for r in R.values())
            cd = [d for d in dets if d["class"] == cls]
            conf = np.array([float(f"{d['score']:.3f}") for d in cd])
            order = np.argsort(-conf)
            tp, fp = np.zeros(len(cd)), np.zeros(len(cd))
            for k, i in enumerate(order):
                d = cd[i]
                bb = [float(f"{v:.1f}") for v in d["bbox"]]
                g = R[d["image_id"]]
                best, jbest = -np.inf, -1
                for j, gb in enumerate(g["bbox"]):
                    iw = max(min(gb[2], bb[2]) - max(gb[0], bb[0]) + 1, 0)
                    ih = max(min(gb[3], bb[3]) - max(gb[1], bb[1]) + 1, 0)
                    inter = iw * ih
                    uni = (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (gb[2] - gb[0] + 1) * (gb[3] - gb[1] + 1) - inter
                    if inter / uni > best:
                        best, jbest = inter / uni, j
                if best > t:
                    if not g["difficult"][jbest]:
                        if not g["det"][jbest]:
                            tp[k] = 1
                            g["det"][jbest] = True
                        else:
                            fp[k] = 1
                else:
                    fp[k] = 1
            tp, fp = np.cumsum(tp), np.cumsum(fp)
            with np.errstate(divide="ignore", invalid="ignore"):
                rec = tp / float(npos)
            prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            per_class.append(voc_ap(rec, prec, use_07_metric) * 100)
        aps[thresh] = np.mean(per_class)
    return {"AP": float(np.mean(list(aps.values()))), "AP50": float(aps[50]), "AP75": float(aps[75])}


@pytest.mark.parametrize("use_07_metric", [True, False])
def test_random_cases_equal_the_literal_algorithm(tmp_path, use_07_metric):
    rng = np.random.default_rng(0)
    classes = ["a", "b", "c"]
    ids = [f"{i:06d}" for i in range(12)]
    for img in ids:
        objs = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(1, 60, size=2)
            w, h = rng.integers(5, 40, size=2)
            objs.append((classes[rng.integers(0, 3)], [int(x), int(y), int(x + w), int(y + h)], int(rng.random() < 0.2)))
        _write_xml(tmp_path, img, objs)
    dets = []
    for _ in range(300):
        img = ids[rng.integers(0, len(ids))]
        x, y = rng.uniform(0, 60, size=2)
        w, h = rng.uniform(3, 40, size=2)
        dets.append(_det(img, classes[rng.integers(0, 3)], float(rng.choice([0.5, 0.25, rng.random()])), [x, y, x + w, y + h]))
    # also jitter exact copies of ground truth so that many detections are true positives and duplicates
    import xml.etree.ElementTree as ET

    for img in ids:
        for o in ET.parse(tmp_path / f"{img}.xml").findall("object"):
            b = [float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            for _ in range(2):
                dets.append(_det(img, o.findtext("name"), float(rng.random()), [v + rng.normal(0, 2) for v in b]))
    ours = voc_detection_ap(tmp_path, ids, dets, classes, use_07_metric)
    ref = _literal_reference(tmp_path, ids, dets, classes, use_07_metric)
    for k in ("AP", "AP50", "AP75"):
        assert ours[k] == pytest.approx(ref[k], abs=1e-9), k
    assert 5 < ours["AP50"] < 95  # a non-trivial case

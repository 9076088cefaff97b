"""The readers on REAL annotation files of each dataset (tests/fixtures/real_layouts, see its README.txt).

Images are not part of the fixtures (except VOC2007 000001.jpg); where a reader needs the listed images to
exist, the test copies the real annotation files into a temporary data root and adds placeholder JPEGs.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vicreg_bench.data.registry import open_classification, open_detection
from vicreg_bench.data.voc import (
    VOC_CLASSES,
    labels_from_objects,
    parse_voc_xml,
    read_class_file,
    read_classification_labels,
    read_image_set,
)


def _jpeg(w: int = 8, h: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 60, 30)).save(buf, "JPEG")
    return buf.getvalue()


def _place(root: Path, rel_paths, data: bytes | None = None) -> None:
    data = data or _jpeg()
    for rel in rel_paths:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_bytes(data)


# ----------------------------------------------------------------------------------------------- VOC
def test_voc2007_xml_boxes_and_difficult(real_layouts):
    ann = real_layouts / "VOCdevkit/VOC2007/Annotations"
    t = parse_voc_xml(ann / "000005.xml")
    assert t.image_id == "000005" and (t.width, t.height) == (500, 375)
    assert [VOC_CLASSES[c] for c in t.classes] == ["chair"] * 5
    assert t.difficult.tolist() == [False, False, True, False, True]
    assert t.extra["truncated"].tolist() == [False, False, True, False, True]
    np.testing.assert_array_equal(t.boxes[2], [5, 244, 67, 374])  # 1-based pixels, as in the file
    t4 = parse_voc_xml(ann / "000004.xml")
    assert len(t4.classes) == 7 and set(t4.classes.tolist()) == {VOC_CLASSES.index("car")}
    t1 = parse_voc_xml(ann / "000001.xml")
    assert [VOC_CLASSES[c] for c in t1.classes] == ["dog", "person"]


def test_voc2012_xml_quirks(real_layouts):
    ann = real_layouts / "VOCdevkit/VOC2012/Annotations"
    # person-layout <part>s (head, hand, foot, foot) each have a <bndbox>: they are not objects
    t = parse_voc_xml(ann / "2007_000027.xml")
    assert [VOC_CLASSES[c] for c in t.classes] == ["person"]
    np.testing.assert_array_equal(t.boxes, [[174, 101, 349, 351]])
    # action annotation: children in another order, no <truncated>, a fractional coordinate
    t = parse_voc_xml(ann / "2011_003353.xml")
    assert [VOC_CLASSES[c] for c in t.classes] == ["person"] and (t.width, t.height) == (375, 500)
    np.testing.assert_allclose(t.boxes, [[130, 45.70000076293945, 375, 470]])
    assert t.extra["truncated"].tolist() == [False] and t.difficult.tolist() == [False]
    t = parse_voc_xml(ann / "2007_000063.xml")
    assert sorted(VOC_CLASSES[c] for c in t.classes) == ["chair", "dog"]
    assert len(parse_voc_xml(ann / "2007_000032.xml").classes) == 4


def test_voc_class_file_spacing_and_zero_lines(real_layouts):
    main = real_layouts / "VOCdevkit/VOC2007/ImageSets/Main"
    assert (main / "chair_trainval.txt").read_text() == "000005  1\n"  # "%s %2d": two spaces before 1
    assert read_class_file(main / "chair_trainval.txt") == {"000005": (1, 1)}
    sup = read_class_file(real_layouts / "supplementary/VOC2007_aeroplane_trainval_lines305-320.txt")
    assert sup["000648"] == (0, 10) and sup["000647"][0] == 1 and sup["000625"][0] == -1
    assert sorted({v for v, _ in sup.values()}) == [-1, 0, 1]
    assert [i for i, _ in read_image_set(main / "test.txt")] == ["000001", "000002", "000003", "000004"]


def test_voc2007_devkit_parity_class_files_equal_xml_rule(real_layouts):
    """Every label in the real per-class files equals what the XML implies (1 / 0 only-difficult / -1)."""
    root = real_layouts / "VOCdevkit/VOC2007"
    for split in ("trainval", "test"):
        ids = [i for i, _ in read_image_set(root / "ImageSets/Main" / f"{split}.txt")]
        labels = read_classification_labels(root / "ImageSets/Main", split, ids)
        for row, image_id in zip(labels, ids):
            np.testing.assert_array_equal(row, labels_from_objects(parse_voc_xml(root / "Annotations" / f"{image_id}.xml")))
    # and the 0 rule on a difficult-only class, checked on the real 000005 objects
    t = parse_voc_xml(root / "Annotations/000005.xml")
    t.difficult[:] = [False, True, True, True, True]
    assert labels_from_objects(t)[VOC_CLASSES.index("chair")] == 1
    t.difficult[:] = True
    assert labels_from_objects(t)[VOC_CLASSES.index("chair")] == 0


def test_voc_readers_on_the_real_devkit_files(real_layouts, tmp_path):
    shutil.copytree(real_layouts / "VOCdevkit", tmp_path / "VOCdevkit")  # nested devkit layout is accepted
    for year, ids in (("2007", ["000001", "000002", "000003", "000004", "000005"]),
                      ("2012", ["2007_000027", "2007_000032", "2007_000033", "2007_000039", "2007_000042"])):  # fmt: skip
        _place(tmp_path / "VOCdevkit" / f"VOC{year}", [f"JPEGImages/{i}.jpg" for i in ids])
    test = open_detection("voc2007", tmp_path, "test")
    assert [t.image_id for _, t in test.samples] == ["000001", "000002", "000003", "000004"]
    img, target, _ = test[0]  # the one real JPEG: its size is the annotated size
    assert img.size == (target.width, target.height) == (353, 500)
    trainval = open_classification("voc2007", tmp_path, "trainval")
    assert len(trainval) == 1 and trainval.targets[0][VOC_CLASSES.index("chair")] == 1
    assert (trainval.targets[0] == -1).sum() == 19
    voc12 = open_detection("voc2012", tmp_path, "trainval")
    assert len(voc12) == 5 and sum(len(t.classes) for _, t in voc12.samples) == 1 + 4 + 3 + 1 + 2


# ----------------------------------------------------------------------------------------------- COCO
def test_coco_reader_on_real_val2017(real_layouts, tmp_path):
    from pycocotools import mask as mask_utils

    from vicreg_bench.data.coco import decode_mask

    src = real_layouts / "coco/annotations/instances_val2017.json"
    (tmp_path / "coco/annotations").mkdir(parents=True)
    shutil.copy(src, tmp_path / "coco/annotations/instances_val2017.json")
    raw = json.loads(src.read_text())
    for im in raw["images"]:
        _place(tmp_path / "coco/val2017", [im["file_name"]])
    ds = open_detection("coco", tmp_path, "val2017")
    assert len(ds) == 5 and len(ds.classes) == 80
    assert ds.category_ids[:3] == [1, 2, 3] and ds.category_ids[-1] == 90 and ds.classes[-1] == "toothbrush"
    assert ds.classes[ds.category_ids.index(44)] == "bottle"
    assert [t.image_id for _, t in ds.samples] == sorted(im["id"] for im in raw["images"])
    assert sum(len(t.classes) for _, t in ds.samples) == 36
    by_id = {a["id"]: a for a in raw["annotations"]}
    n_poly = 0
    for _, t in ds.samples:
        for k, ann_id in enumerate(t.extra["annotation_ids"]):
            a = by_id[ann_id]
            x, y, w, h = a["bbox"]
            np.testing.assert_allclose(t.boxes[k], [x, y, x + w, y + h], rtol=0, atol=1e-3)
            assert ds.category_ids[t.classes[k]] == a["category_id"] and t.difficult[k] == bool(a["iscrowd"])
            m = decode_mask(t.masks[k], t.height, t.width)
            assert m.shape == (t.height, t.width)
            if a["iscrowd"]:  # the uncompressed RLE of annotation 904400464689
                assert ann_id == 904400464689 and int(m.sum()) == 791 == sum(a["segmentation"]["counts"][1::2])
            else:
                n_poly += 1
                rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], t.height, t.width))
                assert int(m.sum()) == int(mask_utils.area(rle))
                assert abs(m.sum() - a["area"]) <= 0.05 * a["area"] + 5  # the json's area is the polygon's
    assert n_poly == 35


# ----------------------------------------------------------------------------------------------- ImageNet
def _wnids(real_layouts) -> list[str]:
    return [ln.split()[0] for ln in (real_layouts / "imagenet/LOC_synset_mapping.txt").read_text().splitlines()]


def _imagenet_train_with_all_classes(root: Path, wnids: list[str]) -> None:
    _place(root / "imagenet/train", [f"{w}/{w}_1.JPEG" for w in wnids])


@pytest.mark.parametrize("split,fname", [("train_1pct", "1percent.txt"), ("train_10pct", "10percent.txt")])
def test_simclr_subset_lists(real_layouts, tmp_path, split, fname):
    wnids = _wnids(real_layouts)
    _imagenet_train_with_all_classes(tmp_path, wnids)
    lines = (real_layouts / "imagenet/imagenet_subsets" / fname).read_text().split()
    _place(tmp_path / "imagenet/train", [f"{ln.split('_')[0]}/{ln}" for ln in lines])
    # the folder name of the SimCLR repository is accepted as well as subsets/
    shutil.copytree(real_layouts / "imagenet/imagenet_subsets", tmp_path / "imagenet/imagenet_subsets")
    ds = open_classification("imagenet", tmp_path, split)
    assert len(ds) == 50 and len(ds.classes) == 1000 and ds.classes == wnids  # sorted wnids = Kaggle's order
    first = lines[0]  # n04235860_14959.JPEG -> train/n04235860/n04235860_14959.JPEG
    assert (f"train/{first.split('_')[0]}/{first}", wnids.index(first.split("_")[0])) in ds.samples


def test_imagenet_val_in_wnid_folders_labels_match_the_usual_class_index(real_layouts, tmp_path):
    wnids = _wnids(real_layouts)
    _imagenet_train_with_all_classes(tmp_path, wnids)
    rows = [ln.split() for ln in (real_layouts / "imagenet/val_in_wnid_folders_list/ImageNet_val.txt").read_text().splitlines()]
    _place(tmp_path / "imagenet", [rel for rel, _ in rows])
    ds = open_classification("imagenet", tmp_path, "val")
    assert sorted(ds.samples) == sorted((rel, int(idx)) for rel, idx in rows)


def test_imagenet_flat_val_with_loc_val_solution(real_layouts, tmp_path):
    wnids = _wnids(real_layouts)
    _imagenet_train_with_all_classes(tmp_path, wnids)
    csv = (real_layouts / "imagenet/LOC_val_solution.csv").read_text().splitlines()[1:]
    _place(tmp_path / "imagenet/val", [f"{row.split(',')[0]}.JPEG" for row in csv])
    shutil.copy(real_layouts / "imagenet/LOC_val_solution.csv", tmp_path / "imagenet/LOC_val_solution.csv")
    ds = open_classification("imagenet", tmp_path, "val")
    assert len(ds) == 50
    # the same 50 images, labelled independently in the wnid-folder list: both give the same labels
    rows = [ln.split() for ln in (real_layouts / "imagenet/val_in_wnid_folders_list/ImageNet_val.txt").read_text().splitlines()]
    expected = {Path(rel).name: int(idx) for rel, idx in rows}
    assert {Path(p).name: t for p, t in ds.samples} == expected


# ----------------------------------------------------------------------------------------------- iNat
def test_inat_reader_on_the_tfds_dummy_json(real_layouts, tmp_path):
    src = real_layouts / "inaturalist2018/tfds_dummy_data"
    (tmp_path / "inat2018").mkdir()
    for split in ("train", "val"):
        shutil.copy(src / f"{split}_annos/{split}2018.json", tmp_path / "inat2018" / f"{split}2018.json")
        doc = json.loads((src / f"{split}_annos/{split}2018.json").read_text())
        _place(tmp_path / "inat2018", [im["file_name"] for im in doc["images"]])
    train = open_classification("inat2018", tmp_path, "train")
    assert train.classes == ["7477", "2820", "2757", "4219"]
    assert sorted(train.samples) == sorted([
        ("train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg", 0),
        ("train_val2018/Aves/2820/22c733d9199c35d2578232e3997e3da0.jpg", 1),
        ("train_val2018/Aves/2757/e5641ce8fd794bf149d49f56d23465ba.jpg", 2),
        ("train_val2018/Mammalia/4219/60c8365f55c2f4e790b6b9212b9fb042.jpg", 3),
    ])  # fmt: skip
    val = open_classification("inat2018", tmp_path, "val")
    assert len(val) == 3 and sorted(val.targets) == [0, 1, 2]


def test_inat_reader_with_the_official_fields_and_8142_classes(real_layouts, tmp_path):
    """A train2018.json built from the real record fragments (image 1, obfuscated category 8133, info,
    licenses) plus the other 8141 categories: all documented fields, the official label range."""
    image = {"license": 3, "file_name": "train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4a.jpg",
             "rights_holder": "Jonathan Carpenter", "height": 600, "width": 800, "id": 1}  # fmt: skip
    cat8133 = {"kingdom": "TBCSEQ", "name": "8133", "family": "WBFNIJ", "supercategory": "Plantae", "class": "YIZOWL",
               "id": 8133, "phylum": "UPQJHC", "genus": "JRIDJA", "order": "QHFAVB"}  # fmt: skip
    cats = [dict(cat8133, id=i, name=str(i)) for i in range(8142)]
    cats[8133] = cat8133
    doc = {"info": {"year": 2018, "version": "1.0"}, "images": [image],
           "annotations": [{"image_id": 1, "category_id": 8133, "id": 1}], "categories": cats, "licenses": []}  # fmt: skip
    (tmp_path / "inat2018").mkdir()
    (tmp_path / "inat2018/train2018.json").write_text(json.dumps(doc))
    _place(tmp_path / "inat2018", [image["file_name"]])
    ds = open_classification("inat2018", tmp_path, "train")
    assert len(ds.classes) == 8142 and ds.samples == [(image["file_name"], 8133)]


# ----------------------------------------------------------------------------------------------- Places205
def test_places_reader_on_the_documented_line_format(tmp_path):
    """No real list line exists publicly (FORMAT_NOTE.txt); this uses the documented format and the one
    real file name: '<path relative to images256> <label>', one space."""
    root = tmp_path / "places205"
    rel = "a/abbey/gsun_0003586c3eedd97457b2d729ebfe18b5.jpg"
    lists = root / "trainvalsplit_places205"
    lists.mkdir(parents=True)
    (lists / "train_places205.csv").write_text(f"{rel} 0\nb/bar/gsun_1.jpg 1\n")
    (lists / "val_places205.csv").write_text("a/abbey/gsun_2.jpg 0\n")
    _place(root / "data/vision/torralba/deeplearning/images256", [rel, "b/bar/gsun_1.jpg", "a/abbey/gsun_2.jpg"])
    train = open_classification("places205", tmp_path, "train")
    assert train.classes == ["abbey", "bar"] and train.samples == [(rel, 0), ("b/bar/gsun_1.jpg", 1)]
    assert train.root == root / "data/vision/torralba/deeplearning/images256"
    assert open_classification("places205", tmp_path, "val").samples == [("a/abbey/gsun_2.jpg", 0)]

"""Bad data: corrupt images (error / skip) and malformed annotation files name the file and line or entry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from vicreg_bench.data.base import BadImageError, BadItem, collate_skipping_bad
from vicreg_bench.data.errors import DatasetMissingError, MalformedDataError
from vicreg_bench.data.registry import open_classification, open_detection
from vicreg_bench.data.transforms import eval_transform


def _copy(synthetic_root: Path, tmp_path: Path, folder: str) -> Path:
    shutil.copytree(synthetic_root / folder, tmp_path / folder)
    return tmp_path / folder


def _replace_line(path: Path, lineno: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = text
    path.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------- images
@pytest.fixture
def imagenet_with_bad_images(synthetic_root, tmp_path):
    _copy(synthetic_root, tmp_path, "imagenet")
    ds = open_classification("imagenet", tmp_path, "val")
    truncated, garbage = ds.root / ds.samples[1][0], ds.root / ds.samples[4][0]
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage.write_bytes(b"this is not a jpeg")
    return tmp_path, truncated, garbage


def test_corrupt_image_stops_with_path_and_decoder_error(imagenet_with_bad_images):
    root, truncated, garbage = imagenet_with_bad_images
    ds = open_classification("imagenet", root, "val", transform=eval_transform(size=32, resize=36))
    with pytest.raises(BadImageError, match=re.escape(str(truncated)) + r": cannot decode image \(OSError: (?i:.*truncated)"):
        ds[1]
    with pytest.raises(BadImageError, match=re.escape(str(garbage)) + r": cannot decode image \(UnidentifiedImageError"):
        ds[4]
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    with pytest.raises(BadImageError, match=re.escape(str(truncated))):
        list(loader)


def test_corrupt_image_skipped_and_reported(imagenet_with_bad_images):
    root, truncated, garbage = imagenet_with_bad_images
    ds = open_classification("imagenet", root, "val", transform=eval_transform(size=32, resize=36), on_bad_image="skip")
    item = ds[1]
    assert isinstance(item, BadItem) and item.index == 1 and item.path == str(truncated) and "truncated" in item.error.lower()
    loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate_skipping_bad)
    seen, skipped = 0, []
    for batch, bad in loader:
        seen += len(batch[0])
        skipped += bad
    assert seen == len(ds) - 2 and sorted(b.path for b in skipped) == sorted([str(truncated), str(garbage)])


def test_corrupt_detection_image_skipped(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "VOC2012")
    ds = open_detection("voc2012", tmp_path, "trainval", on_bad_image="skip")
    (root / ds.samples[0][0]).write_bytes(b"\xff\xd8\xff")
    assert isinstance(ds[0], BadItem) and not isinstance(ds[1], BadItem)


# ----------------------------------------------------------------------------------------------- VOC
def test_bad_xml_names_file_and_line(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "VOC2012")
    image_id = (root / "ImageSets/Main/trainval.txt").read_text().split()[2]
    xml = root / "Annotations" / f"{image_id}.xml"
    _replace_line(xml, 5, "\t<source>")  # an unclosed element
    with pytest.raises(MalformedDataError, match=re.escape(str(xml)) + r": line \d+ column \d+: bad XML"):
        open_detection("voc2012", tmp_path, "trainval")


def test_unknown_voc_class_and_bad_box(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "VOC2012")
    image_id = (root / "ImageSets/Main/trainval.txt").read_text().split()[0]
    xml = root / "Annotations" / f"{image_id}.xml"
    text = xml.read_text()
    name = re.search(r"<name>(\w+)</name>", text).group(1)
    xml.write_text(text.replace(f"<name>{name}</name>", "<name>unicorn</name>", 1))
    with pytest.raises(MalformedDataError, match=re.escape(str(xml)) + r": object 1 \(unicorn\): class 'unicorn'"):
        open_detection("voc2012", tmp_path, "trainval")
    xml.write_text(re.sub(r"<xmin>\d+</xmin>", "<xmin>abc</xmin>", text, count=1))
    with pytest.raises(MalformedDataError, match=r"<xmin> 'abc' is not a number"):
        open_detection("voc2012", tmp_path, "trainval")


def test_voc_label_out_of_range_and_list_consistency(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "VOC2007")
    main = root / "ImageSets/Main"
    per_class = main / "dog_test.txt"
    original = per_class.read_text()
    first_id = original.split()[0]
    _replace_line(per_class, 3, f"{original.splitlines()[2].split()[0]}  2")
    with pytest.raises(MalformedDataError, match=re.escape(str(per_class)) + r": line 3: label 2 is out of range"):
        open_classification("voc2007", tmp_path, "test")
    per_class.write_text("".join(original.splitlines(keepends=True)[1:]))
    with pytest.raises(MalformedDataError, match=re.escape(str(per_class)) + f": no line for image {first_id}"):
        open_classification("voc2007", tmp_path, "test")
    per_class.write_text(original + "999999 -1\n")
    with pytest.raises(MalformedDataError, match=re.escape(str(per_class)) + r": line \d+: image id 999999 is not in test.txt"):
        open_classification("voc2007", tmp_path, "test")
    per_class.write_text(original)
    (main / "cat_test.txt").unlink()
    with pytest.raises(DatasetMissingError, match="cat_test.txt"):
        open_classification("voc2007", tmp_path, "test")


def test_voc_list_naming_a_missing_image(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "VOC2007")
    ids = (root / "ImageSets/Main/test.txt").read_text().split()
    (root / "JPEGImages" / f"{ids[4]}.jpg").unlink()
    with pytest.raises(MalformedDataError, match=re.escape(str(root / "ImageSets/Main/test.txt")) + f": line 5: image JPEGImages/{ids[4]}.jpg does not exist"):
        open_detection("voc2007", tmp_path, "test")
    (root / "Annotations" / f"{ids[6]}.xml").unlink()
    with pytest.raises(MalformedDataError, match=r"test.txt: line 7: annotation Annotations/\d+.xml does not exist"):
        open_detection("voc2007", tmp_path, "test")


# ----------------------------------------------------------------------------------------------- COCO
def _coco(synthetic_root, tmp_path) -> tuple[Path, dict]:
    root = _copy(synthetic_root, tmp_path, "coco")
    path = root / "annotations/instances_val2017.json"
    return path, json.loads(path.read_text())


def test_coco_json_without_images_and_invalid_json(synthetic_root, tmp_path):
    path, d = _coco(synthetic_root, tmp_path)
    del d["images"]
    path.write_text(json.dumps(d))
    with pytest.raises(MalformedDataError, match=re.escape(str(path)) + r": no 'images' list"):
        open_detection("coco", tmp_path, "val2017")
    path.write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(MalformedDataError, match=re.escape(str(path)) + r": line 2 column \d+: invalid JSON"):
        open_detection("coco", tmp_path, "val2017")


def test_coco_category_not_in_categories_and_dangling_image(synthetic_root, tmp_path):
    path, d = _coco(synthetic_root, tmp_path)
    d["annotations"][3]["category_id"] = 2  # bicycle: a real COCO id, but not in this file's categories
    ann_id = d["annotations"][3]["id"]
    path.write_text(json.dumps(d))
    with pytest.raises(MalformedDataError, match=re.escape(f"{path}: annotations[3] (id {ann_id}): category_id 2 is not in 'categories'")):
        open_detection("coco", tmp_path, "val2017")
    d["annotations"][3]["category_id"] = 1
    d["annotations"][5]["image_id"] = 123456789
    path.write_text(json.dumps(d))
    with pytest.raises(MalformedDataError, match=re.escape("annotations[5]") + r".*image_id 123456789 is not in 'images'"):
        open_detection("coco", tmp_path, "val2017")


def test_coco_missing_image(synthetic_root, tmp_path):
    path, d = _coco(synthetic_root, tmp_path)
    im = sorted(d["images"], key=lambda i: i["id"])[2]
    (path.parent.parent / "val2017" / im["file_name"]).unlink()
    with pytest.raises(MalformedDataError, match=re.escape(f"image id {im['id']}: val2017/{im['file_name']} does not exist")):
        open_detection("coco", tmp_path, "val2017")


# ----------------------------------------------------------------------------------------------- iNat
def test_inat_category_not_in_categories_and_no_images(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "inat2018")
    path = root / "val2018.json"
    d = json.loads(path.read_text())
    d["annotations"][2]["category_id"] = 8141
    path.write_text(json.dumps(d))
    with pytest.raises(MalformedDataError, match=re.escape(f"{path}: annotations[2] (id {d['annotations'][2]['id']}): category_id 8141 is not in 'categories'")):
        open_classification("inat2018", tmp_path, "val")
    del d["images"]
    path.write_text(json.dumps(d))
    with pytest.raises(MalformedDataError, match=re.escape(str(path)) + r": no 'images' list"):
        open_classification("inat2018", tmp_path, "val")
    (root / "train2018.json").unlink()
    with pytest.raises(DatasetMissingError, match="train2018.json"):
        open_classification("inat2018", tmp_path, "train")


def test_inat_missing_image(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "inat2018")
    d = json.loads((root / "val2018.json").read_text())
    (root / d["images"][3]["file_name"]).unlink()
    with pytest.raises(MalformedDataError, match=re.escape(f"val2018.json: images[3]: the json names image '{d['images'][3]['file_name']}'")):
        open_classification("inat2018", tmp_path, "val")


# ----------------------------------------------------------------------------------------------- Places, ImageNet
def test_places_label_out_of_range_bad_line_and_missing_image(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "places205")
    val = root / "trainvalsplit_places205/val_places205.csv"
    original = val.read_text()
    rel = original.splitlines()[1].split(" ")[0]
    _replace_line(val, 2, f"{rel} 99")
    with pytest.raises(MalformedDataError, match=re.escape(f"{val}: line 2: label 99 is out of range (the train list has 8 classes)")):
        open_classification("places205", tmp_path, "val")
    _replace_line(val, 2, f"{rel},3")
    with pytest.raises(MalformedDataError, match=re.escape(f"{val}: line 2: expected '<relative/path.jpg> <label>'")):
        open_classification("places205", tmp_path, "val")
    _replace_line(val, 2, f"{rel} x")
    with pytest.raises(MalformedDataError, match=re.escape(f"{val}: line 2: label 'x' is not an integer")):
        open_classification("places205", tmp_path, "val")
    val.write_text(original)
    (root / "data/vision/torralba/deeplearning/images256" / rel).unlink()
    with pytest.raises(MalformedDataError, match=re.escape(f"{val}:2: the list names image '{rel}', which does not exist")):
        open_classification("places205", tmp_path, "val")


def test_places_imagefolder_fallback(tmp_path):
    from PIL import Image

    for split, n in (("train", 2), ("val", 1)):
        for cls in ("abbey", "bar"):
            for i in range(n):
                p = tmp_path / "places205" / split / cls / f"{i}.jpg"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8)).save(p)
    ds = open_classification("places205", tmp_path, "val")
    assert ds.classes == ["abbey", "bar"] and ds.samples == [("val/abbey/0.jpg", 0), ("val/bar/0.jpg", 1)]
    (tmp_path / "places205/val/zoo").mkdir()
    (tmp_path / "places205/val/zoo/0.jpg").write_bytes((tmp_path / "places205/val/bar/0.jpg").read_bytes())
    with pytest.raises(MalformedDataError, match="zoo: class folder not among the 2 training classes"):
        open_classification("places205", tmp_path, "val")


def test_imagenet_subset_with_unknown_wnid_or_missing_file(synthetic_root, tmp_path):
    root = _copy(synthetic_root, tmp_path, "imagenet")
    lst = root / "subsets/1percent.txt"
    original = lst.read_text()
    _replace_line(lst, 4, "n99999999_1.JPEG")
    with pytest.raises(MalformedDataError, match=re.escape(f"{lst}: line 4: wnid 'n99999999' is not one of the 10 train classes")):
        open_classification("imagenet", tmp_path, "train_1pct")
    wnid = original.splitlines()[3].split("_")[0]
    _replace_line(lst, 4, f"{wnid}_123456789.JPEG")
    with pytest.raises(MalformedDataError, match=re.escape(f"{lst}:4: the subset list names image 'train/{wnid}/{wnid}_123456789.JPEG'")):
        open_classification("imagenet", tmp_path, "train_1pct")
    lst.unlink()
    with pytest.raises(DatasetMissingError, match="1percent.txt"):
        open_classification("imagenet", tmp_path, "train_1pct")
    empty = root / "train" / "n00000000"
    empty.mkdir()
    with pytest.raises(MalformedDataError, match="n00000000: class folder holds no image files"):
        open_classification("imagenet", tmp_path, "train")

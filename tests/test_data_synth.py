"""The synthetic suite: official layouts, annotation consistency, determinism."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vicreg_bench.cli import main as cli_main
from vicreg_bench.data.synth import MARKER, make_synthetic_suite
from vicreg_bench.data.synth_detection import _rle_uncompressed
from vicreg_bench.data.voc import VOC_CLASSES
from vicreg_bench.errors import UserError


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(synthetic_root, tmp_path):
    again = make_synthetic_suite(tmp_path / "again", size="tiny", seed=0)
    a, b = _tree_digest(synthetic_root), _tree_digest(again)
    assert a.keys() == b.keys()
    assert a == b
    # a different seed changes the pixels (compare one image whose name does not depend on the seed)
    other = make_synthetic_suite(tmp_path / "other", size="tiny", seed=1)
    name = "VOC2007/JPEGImages/000001.jpg"
    assert (other / name).read_bytes() != (synthetic_root / name).read_bytes()


def test_existing_suite_is_kept_and_foreign_folder_refused(synthetic_root, tmp_path):
    before = (synthetic_root / MARKER).stat().st_mtime_ns
    make_synthetic_suite(synthetic_root, size="tiny", seed=0)  # same parameters: nothing rewritten
    assert (synthetic_root / MARKER).stat().st_mtime_ns == before
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        make_synthetic_suite(tmp_path, size="tiny")
    with pytest.raises(UserError, match="--size"):
        make_synthetic_suite(tmp_path / "x", size="huge")


def test_imagenet_layout_and_subset_lists(synthetic_root):
    root = synthetic_root / "imagenet"
    wnids = sorted(p.name for p in (root / "train").iterdir())
    assert len(wnids) == 10 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert sorted(p.name for p in (root / "val").iterdir()) == wnids
    assert all(p.name.startswith("ILSVRC2012_val_") for p in (root / "val").rglob("*.JPEG"))
    for name in ("1percent.txt", "10percent.txt"):
        lines = (root / "subsets" / name).read_text().splitlines()
        assert lines and all(ln.endswith(".JPEG") and " " not in ln for ln in lines)
        assert {ln.split("_")[0] for ln in lines} == set(wnids)  # every class in every subset
        for ln in lines:
            assert (root / "train" / ln.split("_")[0] / ln).is_file()


def test_places_lists_are_space_separated_and_labels_follow_sorted_folders(synthetic_root):
    root = synthetic_root / "places205"
    images = root / "data/vision/torralba/deeplearning/images256"
    for split in ("train", "val"):
        lines = (root / "trainvalsplit_places205" / f"{split}_places205.csv").read_text().splitlines()
        assert lines and all("," not in ln and len(ln.split(" ")) == 2 for ln in lines)
        for ln in lines:
            rel, label = ln.split(" ")
            assert (images / rel).is_file() and rel.startswith(rel.split("/")[1][0] + "/")
    train = [ln.split(" ") for ln in (root / "trainvalsplit_places205/train_places205.csv").read_text().splitlines()]
    folders = sorted({"/".join(rel.split("/")[:-1]) for rel, _ in train})
    assert all(folders.index("/".join(rel.split("/")[:-1])) == int(lbl) for rel, lbl in train)


def test_inat_json_has_the_documented_fields(synthetic_root):
    root = synthetic_root / "inat2018"
    for split in ("train", "val"):
        d = json.loads((root / f"{split}2018.json").read_text())
        assert set(d) == {"info", "images", "categories", "annotations", "licenses"}
        assert set(d["images"][0]) == {"id", "width", "height", "file_name", "license", "rights_holder"}
        assert set(d["categories"][0]) == {"id", "name", "supercategory", "kingdom", "phylum", "class", "order",
                                           "family", "genus"}  # fmt: skip
        assert set(d["annotations"][0]) == {"id", "image_id", "category_id"}
        assert [c["id"] for c in d["categories"]] == list(range(len(d["categories"])))
        for im in d["images"]:
            parts = im["file_name"].split("/")
            assert parts[0] == "train_val2018" and len(parts) == 4
            with Image.open(root / im["file_name"]) as img:
                assert img.size == (im["width"], im["height"])


@pytest.mark.parametrize("year,splits", [("2007", ("train", "val", "trainval", "test")), ("2012", ("train", "val", "trainval"))])
def test_voc_devkit_files_agree_with_the_xml(synthetic_root, year, splits):
    root = synthetic_root / f"VOC{year}"
    main = root / "ImageSets" / "Main"
    n_difficult = n_objects = n_zero = 0
    for split in splits:
        ids = main.joinpath(f"{split}.txt").read_text().split()
        for cls in VOC_CLASSES:
            text = main.joinpath(f"{cls}_{split}.txt").read_text()
            rows = [ln for ln in text.splitlines()]
            assert [r[: -3] for r in rows] == ids
            assert all(r[-3] == " " and r[-2:] in ("-1", " 1", " 0") for r in rows)  # "%s %2d"
            n_zero += sum(r.endswith(" 0") for r in rows)
        assert all((root / "JPEGImages" / f"{i}.jpg").is_file() for i in ids)
    for xml in sorted((root / "Annotations").glob("*.xml")):
        tree = ET.parse(xml).getroot()
        w, h = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        for obj in tree.findall("object"):
            n_objects += 1
            n_difficult += int(obj.findtext("difficult"))
            x0, y0, x1, y1 = (int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            assert 1 <= x0 <= x1 <= w and 1 <= y0 <= y1 <= h
    assert n_objects > len(list((root / "Annotations").glob("*.xml")))  # several objects per image on average
    assert 0 < n_difficult < n_objects / 2
    if year == "2007":
        assert n_zero > 0  # some images hold only difficult objects of a class


def test_coco_json_polygons_match_boxes_and_crowd_rle_decodes(synthetic_root):
    from pycocotools import mask as mask_utils

    for split in ("train2017", "val2017"):
        d = json.loads((synthetic_root / "coco/annotations" / f"instances_{split}.json").read_text())
        ids = [c["id"] for c in d["categories"]]
        assert ids != list(range(1, len(ids) + 1)) and {1, 3}.issubset(ids)  # real, non-contiguous ids
        size = {im["id"]: (im["height"], im["width"]) for im in d["images"]}
        crowd = [a for a in d["annotations"] if a["iscrowd"]]
        assert crowd and all(isinstance(a["segmentation"]["counts"], list) for a in crowd)
        for a in d["annotations"]:
            h, w = size[a["image_id"]]
            if a["iscrowd"]:
                rle = mask_utils.frPyObjects(a["segmentation"], h, w)
                assert int(mask_utils.area(rle)) == a["area"]
                np.testing.assert_allclose(mask_utils.toBbox(rle), a["bbox"])
            else:
                poly = np.asarray(a["segmentation"][0]).reshape(-1, 2)
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                np.testing.assert_allclose(a["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=0.011)
                assert 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h
        for im in d["images"]:
            with Image.open(synthetic_root / "coco" / split / im["file_name"]) as img:
                assert img.size == (im["width"], im["height"])


def test_uncompressed_rle_round_trips_through_pycocotools():
    from vicreg_bench.data.coco import decode_mask

    rng = np.random.default_rng(0)
    for first in (0, 1):
        m = rng.random((7, 5)) > 0.5
        m[0, 0] = bool(first)
        rle = _rle_uncompressed(m)
        assert sum(rle["counts"]) == m.size
        back = decode_mask(rle, 7, 5)
        np.testing.assert_array_equal(back, m)


def test_images_are_real_jpegs_of_the_documented_size(synthetic_root):
    paths = sorted((synthetic_root / "imagenet/train").rglob("*.JPEG"))[:5]
    for p in paths:
        with Image.open(p) as img:
            assert img.format == "JPEG" and img.mode == "RGB" and 60 <= min(img.size) <= 80


def test_cli_synth_writes_a_suite(tmp_path, capsys):
    assert cli_main(["data", "synth", "--root", str(tmp_path / "s"), "--size", "tiny", "--seed", "3"]) == 0
    assert json.loads((tmp_path / "s" / MARKER).read_text()) == {"generator_version": 1, "size": "tiny", "seed": 3}
    assert "--data-root" in capsys.readouterr().out
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    assert cli_main(["data", "synth", "--root", str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err

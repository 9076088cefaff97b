"""Every reader on the synthetic suite, through the same registry the benchmarks use."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vicreg_bench.data.base import BadItem, ClassificationDataset, DetectionDataset, DetectionTarget
from vicreg_bench.data.coco import decode_mask
from vicreg_bench.data.registry import (
    CLASSIFICATION_SPLITS,
    DETECTION_SPLITS,
    open_classification,
    open_detection,
    resolve_data_root,
)
from vicreg_bench.data.transforms import eval_transform
from vicreg_bench.data.voc import VOC_CLASSES, labels_from_objects
from vicreg_bench.errors import UserError

EXPECTED_COUNTS = {  # the tiny suite
    ("imagenet", "train"): 60, ("imagenet", "val"): 30, ("imagenet", "train_1pct"): 10, ("imagenet", "train_10pct"): 20,
    ("places205", "train"): 48, ("places205", "val"): 24, ("inat2018", "train"): 48, ("inat2018", "val"): 24,
    ("voc2007", "trainval"): 40, ("voc2007", "test"): 40, ("voc2007", "train"): 20, ("voc2007", "val"): 20,
}  # fmt: skip


@pytest.mark.parametrize("name,split", sorted(EXPECTED_COUNTS))
def test_classification_readers(synthetic_root, name, split):
    ds = open_classification(name, synthetic_root, split, transform=eval_transform(size=56, resize=64))
    assert isinstance(ds, ClassificationDataset) and ds.name == name and ds.split == split
    assert len(ds) == EXPECTED_COUNTS[(name, split)]
    img, target, index = ds[0]
    assert img.shape == (3, 56, 56) and index == 0
    if name == "voc2007":
        assert ds.classes == list(VOC_CLASSES)
        assert target.dtype == np.int8 and target.shape == (20,) and set(np.unique(target)) <= {-1, 0, 1}
        assert (np.stack(ds.targets) == 1).any(axis=0).all()  # every class has positives in every split
    else:
        labels = ds.targets
        assert all(isinstance(t, int) for t in labels) and set(labels) == set(range(len(ds.classes)))
    assert len(ds.manifest_sha256()) == 64
    assert [p for p, _ in ds.manifest()] == sorted(p for p, _ in ds.samples)


def test_class_orders(synthetic_root):
    imagenet = open_classification("imagenet", synthetic_root, "train")
    assert imagenet.classes == sorted(imagenet.classes) and imagenet.classes[0] == "n01440764"
    assert all(p.split("/")[1] == imagenet.classes[t] for p, t in imagenet.samples)
    val = open_classification("imagenet", synthetic_root, "val")
    assert val.classes == imagenet.classes and all(p.split("/")[1] == val.classes[t] for p, t in val.samples)
    sub = open_classification("imagenet", synthetic_root, "train_1pct")
    train_set = set(imagenet.samples)
    assert all((p, t) in train_set for p, t in sub.samples)  # the subset is labelled like train
    places = open_classification("places205", synthetic_root, "train")
    assert places.classes == sorted(places.classes)  # official labels follow the alphabetical folders
    assert all(p.rsplit("/", 1)[0].endswith(places.classes[t]) for p, t in places.samples)
    inat = open_classification("inat2018", synthetic_root, "val")
    assert all(p.split("/")[2] == str(t) for p, t in inat.samples)  # folder = category id = label


def test_manifest_is_stable_and_location_independent(synthetic_root, tmp_path):
    a = open_classification("places205", synthetic_root, "val").manifest_sha256()
    assert a == open_classification("places205", synthetic_root, "val").manifest_sha256()
    shutil.copytree(synthetic_root / "places205", tmp_path / "places205")
    assert open_classification("places205", tmp_path, "val").manifest_sha256() == a
    assert open_classification("places205", synthetic_root, "train").manifest_sha256() != a
    voc = open_detection("voc2007", synthetic_root, "test")
    assert voc.manifest_sha256() == open_detection("voc2007", synthetic_root, "test").manifest_sha256()


@pytest.mark.parametrize("name,split,count", [("voc2007", "trainval", 40), ("voc2007", "test", 40),
                                              ("voc2012", "trainval", 24), ("coco", "train2017", 24),
                                              ("coco", "val2017", 12)])  # fmt: skip
def test_detection_readers(synthetic_root, name, split, count):
    ds = open_detection(name, synthetic_root, split)
    assert isinstance(ds, DetectionDataset) and len(ds) == count and ds.name == name
    img, target, _ = ds[0]
    assert isinstance(target, DetectionTarget)
    assert img.size == (target.width, target.height)
    n = len(target.classes)
    assert n >= 1 and target.boxes.shape == (n, 4) and target.difficult.shape == (n,)
    assert (target.boxes[:, 2] >= target.boxes[:, 0]).all() and (target.boxes[:, 3] >= target.boxes[:, 1]).all()
    assert len(ds.manifest_sha256()) == 64


def test_voc_classification_equals_devkit_rule_on_the_xml(synthetic_root):
    for split in ("trainval", "test"):
        cls = open_classification("voc2007", synthetic_root, split)
        det = open_detection("voc2007", synthetic_root, split)
        assert [p for p, _ in cls.samples] == [p for p, _ in det.samples]
        for (_, vec), (_, target) in zip(cls.samples, det.samples):
            np.testing.assert_array_equal(vec, labels_from_objects(target))
    # the synthetic VOC2012 person objects carry a <part> (head) that must not become an object
    ds = open_detection("voc2012", synthetic_root, "trainval")
    n_person = sum(int((t.classes == VOC_CLASSES.index("person")).sum()) for _, t in ds.samples)
    xml_objects = sum((ds.root / "Annotations" / f"{t.image_id}.xml").read_text().count("<object>") for _, t in ds.samples)
    assert sum(len(t.classes) for _, t in ds.samples) == xml_objects
    assert n_person > 0 and "<part>" in "".join(p.read_text() for p in (ds.root / "Annotations").glob("*.xml"))
    assert ds.annotations_dir.is_dir() and ds.image_ids == [t.image_id for _, t in ds.samples]


def test_coco_contiguous_classes_and_masks_match_boxes(synthetic_root):
    ds = open_detection("coco", synthetic_root, "val2017")
    assert ds.category_ids == sorted(ds.category_ids) and ds.category_ids[0] == 1
    assert ds.classes[0] == "person" and len(ds.classes) == len(ds.category_ids)
    assert ds.coco is not None and sorted(ds.coco.getImgIds()) == [t.image_id for _, t in ds.samples]
    n_crowd = 0
    for _, t in ds.samples:
        for k in range(len(t.classes)):
            m = decode_mask(t.masks[k], t.height, t.width)
            ys, xs = np.nonzero(m)
            x0, y0, x1, y1 = t.boxes[k]
            assert xs.min() >= np.floor(x0) - 1 and xs.max() <= np.ceil(x1) and ys.min() >= np.floor(y0) - 1
            n_crowd += int(t.difficult[k])
            cid = ds.category_ids[t.classes[k]]
            assert ds.coco.anns[t.extra["annotation_ids"][k]]["category_id"] == cid
    assert n_crowd >= 1


def test_detection_transform_gets_image_and_target(synthetic_root):
    seen = []

    def tf(img, target):
        seen.append((img.size, len(target.classes)))
        return torch.zeros(1), target

    ds = open_detection("voc2007", synthetic_root, "test", transform=tf)
    img, target, i = ds[3]
    assert img.shape == (1,) and seen and seen[0][1] == len(target.classes)


def test_loader_batches_through_collate(synthetic_root):
    from vicreg_bench.data.base import collate_skipping_bad

    ds = open_classification("imagenet", synthetic_root, "val", transform=eval_transform(size=32, resize=36))
    batch, bad = collate_skipping_bad([ds[i] for i in range(4)])
    assert bad == [] and batch[0].shape == (4, 3, 32, 32) and batch[1].tolist() == ds.targets[:4]
    assert not isinstance(ds[0], BadItem)


def test_registry_rejects_unknown_names_and_splits(synthetic_root):
    with pytest.raises(UserError, match="unknown classification dataset"):
        open_classification("cifar10", synthetic_root, "train")
    with pytest.raises(UserError, match="unknown split 'test' for classification dataset 'imagenet'"):
        open_classification("imagenet", synthetic_root, "test")
    with pytest.raises(UserError, match="on_bad_image"):
        open_detection("coco", synthetic_root, "val2017", on_bad_image="ignore")
    assert set(CLASSIFICATION_SPLITS) == {"imagenet", "places205", "inat2018", "voc2007"}
    assert set(DETECTION_SPLITS) == {"voc2007", "voc2012", "coco"}


def test_missing_dataset_is_a_user_error_naming_the_folder(tmp_path):
    from vicreg_bench.data.errors import DatasetMissingError

    with pytest.raises(DatasetMissingError, match=str(tmp_path / "imagenet")):
        open_classification("imagenet", tmp_path, "train")
    with pytest.raises(DatasetMissingError, match="VOC2007"):
        open_detection("voc2007", tmp_path, "test")


def test_resolve_data_root(tmp_path, monkeypatch):
    monkeypatch.delenv("VICREG_BENCH_DATA", raising=False)
    with pytest.raises(UserError, match="--data-root DIR or set \\$VICREG_BENCH_DATA"):
        resolve_data_root(None)
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.setenv("VICREG_BENCH_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path
    with pytest.raises(UserError, match="not a folder"):
        resolve_data_root(tmp_path / "nope")

"""PASCAL VOC 2007 / 2012 in the devkit layout: classification labels for the SVM, boxes for detection.

Layout (`VOC2007/` or `VOCdevkit/VOC2007/` under the data root): `ImageSets/Main/<split>.txt` lists the
image ids, `ImageSets/Main/<class>_<split>.txt` gives each id's label for that class ("%s %2d": 1 present,
-1 absent, 0 only difficult objects), `Annotations/<id>.xml` holds the boxes, `JPEGImages/<id>.jpg` the image.

Class order: the 20 class names sorted (`VOC_CLASSES`), which is also detectron2's order.

Devkit semantics kept here:
- Only the `<object>` children of `<annotation>` are objects; the person-layout `<part>` elements
  (head, hand, foot) nested in an object have their own `<bndbox>` and are NOT objects.
- `<difficult>` absent (e.g. VOC2012 action annotations) means 0; `<truncated>` absent means 0.
- Boxes are returned as the XML gives them: 1-based inclusive pixel coordinates, floats (some VOC2012
  files have fractional ones). detectron2 subtracts 1 from xmin/ymin when it loads them.
- Difficult objects are kept, flagged in `DetectionTarget.difficult`: detectron2 trains on them, and
  the VOC evaluation ignores them.
- Classification vector per image (from the per-class files): 1 / -1 / 0, int8, in `VOC_CLASSES` order.
  `labels_from_objects` derives the same vector from the XML (1 if a non-difficult object of the class,
  0 if only difficult ones, -1 if none), which is how the devkit wrote the files.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import numpy as np

from vicreg_bench.data.base import ClassificationDataset, DetectionDataset, DetectionTarget
from vicreg_bench.data.errors import MalformedDataError
from vicreg_bench.data.files import FolderIndex, parse_int, read_lines, require_dir, require_file
from vicreg_bench.data.layouts import dataset_dir

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
SPLITS = {"voc2007": ("train", "val", "trainval", "test"), "voc2012": ("train", "val", "trainval")}
LABEL_VALUES = (1, -1, 0)


class VOCClassification(ClassificationDataset):
    """Multi-label VOC: target = int8 vector of 20 (1 present, -1 absent, 0 difficult)."""

    name = "voc2007"


class VOCDetection(DetectionDataset):
    name = "voc2007"

    @property
    def annotations_dir(self) -> Path:
        return self.root / "Annotations"

    @property
    def image_ids(self) -> list[str]:
        return [t.image_id for _, t in self.samples]


def voc_root(name: str, data_root: Path) -> Path:
    return require_dir(dataset_dir(name, data_root), f"PASCAL {name.upper()} devkit")


def read_image_set(path: Path) -> list[tuple[str, int]]:
    """(image id, line number) for each line of `ImageSets/Main/<split>.txt`."""
    require_file(path, "VOC image list")
    rows, seen = [], set()
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 1:
            raise MalformedDataError(f"{path}: line {lineno}: expected one image id per line, got {line!r}")
        if parts[0] in seen:
            raise MalformedDataError(f"{path}: line {lineno}: image id {parts[0]} is listed twice")
        seen.add(parts[0])
        rows.append((parts[0], lineno))
    if not rows:
        raise MalformedDataError(f"{path}: the image list is empty")
    return rows


def read_class_file(path: Path) -> dict[str, tuple[int, int]]:
    """{image id: (label, line number)} from `<class>_<split>.txt` ("%s %2d" lines; 1, -1 or 0)."""
    require_file(path, "VOC per-class label list")
    out: dict[str, tuple[int, int]] = {}
    for lineno, line in read_lines(path):
        parts = line.split()
        if len(parts) != 2:
            raise MalformedDataError(f"{path}: line {lineno}: expected '<image id> <1|-1|0>', got {line!r}")
        label = parse_int(parts[1], path, lineno, "label")
        if label not in LABEL_VALUES:
            raise MalformedDataError(f"{path}: line {lineno}: label {label} is out of range (expected 1, -1 or 0)")
        out[parts[0]] = (label, lineno)
    return out


def read_classification_labels(main_dir: Path, split: str, ids: list[str]) -> np.ndarray:
    """N x 20 int8 matrix from the 20 per-class files; each must list exactly the split's ids."""
    labels = np.zeros((len(ids), len(VOC_CLASSES)), dtype=np.int8)
    row = {image_id: i for i, image_id in enumerate(ids)}
    for c, cls in enumerate(VOC_CLASSES):
        path = main_dir / f"{cls}_{split}.txt"
        per_image = read_class_file(path)
        for image_id, (label, lineno) in per_image.items():
            if image_id not in row:
                raise MalformedDataError(f"{path}: line {lineno}: image id {image_id} is not in {split}.txt")
            labels[row[image_id], c] = label
        if len(per_image) != len(ids):
            missing = next(i for i in ids if i not in per_image)
            raise MalformedDataError(f"{path}: no line for image {missing} of {split}.txt ({len(per_image)} of {len(ids)} ids)")
    return labels


def _number(el: ET.Element | None, tag: str, path: Path, where: str, default: float | None = None) -> float:
    child = el.find(tag) if el is not None else None
    if child is None or child.text is None or not child.text.strip():
        if default is not None:
            return default
        raise MalformedDataError(f"{path}: {where}: <{tag}> is missing")
    try:
        return float(child.text.strip())
    except ValueError:
        raise MalformedDataError(f"{path}: {where}: <{tag}> {child.text.strip()!r} is not a number") from None


def parse_voc_xml(path: Path, classes: tuple[str, ...] = VOC_CLASSES) -> DetectionTarget:
    """Objects of one annotation file (direct `<object>` children only; `<part>`s are not objects)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise MalformedDataError(f"{path}: line {line} column {col}: bad XML ({e})") from None
    except FileNotFoundError:
        raise MalformedDataError(f"{path}: annotation file not found") from None
    if root.tag != "annotation":
        raise MalformedDataError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    size = root.find("size")
    width = int(_number(size, "width", path, "<size>", default=0))
    height = int(_number(size, "height", path, "<size>", default=0))
    index = {c: i for i, c in enumerate(classes)}
    boxes, labels, difficult, truncated = [], [], [], []
    for k, obj in enumerate(root.findall("object")):
        name_el = obj.find("name")
        name = (name_el.text or "").strip() if name_el is not None else ""
        where = f"object {k + 1} ({name or 'no <name>'})"
        if name not in index:
            raise MalformedDataError(f"{path}: {where}: class {name!r} is not one of the {len(classes)} VOC classes")
        bb = obj.find("bndbox")
        if bb is None:
            raise MalformedDataError(f"{path}: {where}: <bndbox> is missing")
        box = [_number(bb, t, path, where) for t in ("xmin", "ymin", "xmax", "ymax")]
        if box[2] < box[0] or box[3] < box[1]:
            raise MalformedDataError(f"{path}: {where}: box {box} has xmax < xmin or ymax < ymin")
        boxes.append(box)
        labels.append(index[name])
        difficult.append(int(_number(obj, "difficult", path, where, default=0)) == 1)
        truncated.append(int(_number(obj, "truncated", path, where, default=0)) == 1)
    return DetectionTarget(
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.asarray(labels, dtype=np.int64),
        difficult=np.asarray(difficult, dtype=bool),
        image_id=path.stem,
        width=width,
        height=height,
        extra={"truncated": np.asarray(truncated, dtype=bool)},
    )


def labels_from_objects(target: DetectionTarget, num_classes: int = len(VOC_CLASSES)) -> np.ndarray:
    """The devkit's classification label of an image: 1 / 0 (only difficult) / -1 per class."""
    out = np.full(num_classes, -1, dtype=np.int8)
    for c, diff in zip(target.classes.tolist(), target.difficult.tolist()):
        if not diff:
            out[c] = 1
        elif out[c] == -1:
            out[c] = 0
    return out


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS[name]:
        raise ValueError(f"{name} split must be one of {SPLITS[name]}, got {split!r}")


def _check_images(root: Path, rows: list[tuple[str, int]], list_path: Path) -> None:
    index = FolderIndex(require_dir(root / "JPEGImages", "VOC JPEGImages"))
    missing = [(i, ln) for i, ln in rows if not index.exists(f"{i}.jpg")]
    if missing:
        (image_id, lineno), n = missing[0], len(missing)
        more = f" ({n} listed images are missing in all)" if n > 1 else ""
        raise MalformedDataError(f"{list_path}: line {lineno}: image JPEGImages/{image_id}.jpg does not exist{more}")


def open_voc_classification(
    name: str, data_root: Path, split: str, transform: Callable | None = None, on_bad_image: str = "error"
) -> VOCClassification:
    _check_split(name, split)
    root = voc_root(name, data_root)
    main = root / "ImageSets" / "Main"
    list_path = main / f"{split}.txt"
    rows = read_image_set(list_path)
    ids = [i for i, _ in rows]
    labels = read_classification_labels(main, split, ids)
    _check_images(root, rows, list_path)
    samples = [(f"JPEGImages/{i}.jpg", labels[k]) for k, i in enumerate(ids)]
    ds = VOCClassification(root, samples, list(VOC_CLASSES), split=split, transform=transform, on_bad_image=on_bad_image)
    ds.name = name
    return ds


def open_voc_detection(
    name: str, data_root: Path, split: str, transform: Callable | None = None, on_bad_image: str = "error"
) -> VOCDetection:
    _check_split(name, split)
    root = voc_root(name, data_root)
    list_path = root / "ImageSets" / "Main" / f"{split}.txt"
    rows = read_image_set(list_path)
    ann = FolderIndex(require_dir(root / "Annotations", "VOC Annotations"))
    samples = []
    for image_id, lineno in rows:
        if not ann.exists(f"{image_id}.xml"):
            raise MalformedDataError(f"{list_path}: line {lineno}: annotation Annotations/{image_id}.xml does not exist")
        samples.append((f"JPEGImages/{image_id}.jpg", parse_voc_xml(root / "Annotations" / f"{image_id}.xml")))
    _check_images(root, rows, list_path)
    ds = VOCDetection(root, samples, list(VOC_CLASSES), split=split, transform=transform, on_bad_image=on_bad_image)
    ds.name = name
    return ds

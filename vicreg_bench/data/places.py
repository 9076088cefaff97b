"""Places205, from its official list files or from an ImageFolder tree.

Official layout (the one VISSL, mmselfsup and RotNet read):
`places205/trainvalsplit_places205/{train,val}_places205.csv`, whose lines are
"<path relative to images256> <label>" separated by ONE SPACE despite the .csv suffix
(e.g. "a/abbey/gsun_0003586c3eedd97457b2d729ebfe18b5.jpg 0"), with the images under
`places205/data/vision/torralba/deeplearning/images256/` (or `places205/images256/`).

Class order: the official integer labels (0..204). A label's name is its folder in the train list
("a/abbey/..." -> "abbey", "a/apartment_building/outdoor/..." -> "apartment_building/outdoor").
The number of classes is 1 + the largest train label; a val label outside that range is an error.

Fallback layout: `places205/{train,val}/<class>/*.jpg` (ImageFolder; class index = sorted folder names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from vicreg_bench.data.base import ClassificationDataset
from vicreg_bench.data.errors import DatasetMissingError, MalformedDataError
from vicreg_bench.data.files import (
    check_listed_images,
    list_class_folders,
    parse_int,
    read_lines,
    require_dir,
    scan_image_folder,
)
from vicreg_bench.data.layouts import PLACES_IMAGES_ROOT, dataset_dir

SPLITS = ("train", "val")
LIST_DIR = "trainvalsplit_places205"
IMAGE_ROOTS = (PLACES_IMAGES_ROOT, "images256")


class Places205(ClassificationDataset):
    name = "places205"


def list_file(root: Path, split: str) -> Path:
    return root / LIST_DIR / f"{split}_places205.csv"


def read_places_list(path: Path) -> list[tuple[str, int, int]]:
    """(relative path, label, line number) per line of an official Places205 list."""
    rows = []
    for lineno, line in read_lines(path):
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0]:
            raise MalformedDataError(
                f"{path}: line {lineno}: expected '<relative/path.jpg> <label>' separated by one space, got {line!r}"
            )
        label = parse_int(parts[1], path, lineno, "label")
        if label < 0:
            raise MalformedDataError(f"{path}: line {lineno}: label {label} is out of range (labels start at 0)")
        rows.append((parts[0], label, lineno))
    if not rows:
        raise MalformedDataError(f"{path}: the list file is empty")
    return rows


def class_name_of(rel_path: str) -> str:
    """"a/abbey/gsun_x.jpg" -> "abbey"; "a/apartment_building/outdoor/x.jpg" -> "apartment_building/outdoor"."""
    parts = rel_path.split("/")[:-1]
    if len(parts) >= 2 and len(parts[0]) == 1:
        parts = parts[1:]
    return "/".join(parts) or "?"


def places_classes(train_rows: list[tuple[str, int, int]]) -> list[str]:
    num = 1 + max(label for _, label, _ in train_rows)
    names = [""] * num
    for rel, label, _ in train_rows:
        if not names[label]:
            names[label] = class_name_of(rel)
    return [n or f"label_{i}" for i, n in enumerate(names)]


def images_root(root: Path) -> Path:
    for rel in IMAGE_ROOTS:
        if (root / rel).is_dir():
            return root / rel
    raise DatasetMissingError(
        f"{root / PLACES_IMAGES_ROOT}: Places205 image folder not found (the list files' paths are relative to it)"
    )


def open_places205(
    data_root: Path, split: str, transform: Callable | None = None, on_bad_image: str = "error"
) -> Places205:
    if split not in SPLITS:
        raise ValueError(f"places205 split must be one of {SPLITS}, got {split!r}")
    root = require_dir(dataset_dir("places205", data_root), "Places205")
    if not (root / LIST_DIR).is_dir() and (root / "train").is_dir():
        classes = list_class_folders(root / "train") if split == "val" else None
        classes, samples = scan_image_folder(root, split, classes)
        return Places205(root, samples, classes, split=split, transform=transform, on_bad_image=on_bad_image)
    for s in ("train", split):
        if not list_file(root, s).is_file():
            raise DatasetMissingError(f"{list_file(root, s)}: Places205 {s} list not found")
    train_rows = read_places_list(list_file(root, "train"))
    classes = places_classes(train_rows)
    path = list_file(root, split)
    rows = train_rows if split == "train" else read_places_list(path)
    for rel, label, lineno in rows:
        if label >= len(classes):
            raise MalformedDataError(
                f"{path}: line {lineno}: label {label} is out of range (the train list has {len(classes)} classes)"
            )
    img_root = images_root(root)
    check_listed_images(img_root, [(rel, f"{path}:{lineno}") for rel, _, lineno in rows], "the list")
    samples = sorted((rel, label) for rel, label, _ in rows)
    return Places205(img_root, samples, classes, split=split, transform=transform, on_bad_image=on_bad_image)

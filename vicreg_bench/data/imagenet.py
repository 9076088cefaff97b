"""ImageNet-1k in the ImageFolder layout, plus SimCLR's 1% / 10% label subsets.

Class order: the sorted wnids of `train/` (n01440764 = 0 ... n15075141 = 999), the order of torchvision's
ImageFolder, of timm's `imagenet_synsets.txt` and of Kaggle's `LOC_synset_mapping.txt`.

Splits:
- `train`, `val`: `imagenet/{train,val}/<wnid>/*`. A flat `val/` (the ILSVRC tar, Kaggle) is accepted
  with `imagenet/LOC_val_solution.csv`, whose first wnid per row is the label.
- `train_1pct`, `train_10pct`: SimCLR's `1percent.txt` / `10percent.txt` (12,811 / 128,116 lines
  `n04235860_14959.JPEG`), each naming `train/n04235860/n04235860_14959.JPEG`. Looked up in
  `imagenet/subsets/`, then `imagenet/imagenet_subsets/` (the folder name in the SimCLR repository).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from vicreg_bench.data.base import ClassificationDataset
from vicreg_bench.data.errors import DatasetMissingError, MalformedDataError
from vicreg_bench.data.files import (
    check_listed_images,
    is_image_file,
    list_class_folders,
    read_lines,
    require_dir,
    scan_image_folder,
)
from vicreg_bench.data.layouts import dataset_dir

SPLITS = ("train", "val", "train_1pct", "train_10pct")
SUBSET_FILES = {"train_1pct": "1percent.txt", "train_10pct": "10percent.txt"}
SUBSET_DIRS = ("subsets", "imagenet_subsets")


class ImageNet(ClassificationDataset):
    name = "imagenet"


def imagenet_classes(root: Path) -> list[str]:
    """Sorted wnids of `train/` (or of `val/` when there is no train folder)."""
    for split in ("train", "val"):
        if (root / split).is_dir():
            classes = list_class_folders(root / split)
            if classes:
                return classes
    raise DatasetMissingError(f"{root}: no class folders in train/ or val/ (expected train/<wnid>/*.JPEG)")


def find_subset_file(root: Path, split: str) -> Path:
    name = SUBSET_FILES[split]
    for d in SUBSET_DIRS:
        if (root / d / name).is_file():
            return root / d / name
    raise DatasetMissingError(f"{root / SUBSET_DIRS[0] / name}: SimCLR subset list for {split} not found")


def read_subset_list(path: Path, classes: list[str]) -> list[tuple[str, int, str]]:
    """(relative path, label, "file:line") per line of a SimCLR subset list."""
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for lineno, line in read_lines(path):
        wnid = line.split("_", 1)[0]
        if " " in line or "_" not in line or not is_image_file(line):
            raise MalformedDataError(f"{path}: line {lineno}: expected an image name like n04235860_14959.JPEG, got {line!r}")
        if wnid not in index:
            raise MalformedDataError(f"{path}: line {lineno}: wnid {wnid!r} is not one of the {len(classes)} train classes")
        out.append((f"train/{wnid}/{line}", index[wnid], f"{path}:{lineno}"))
    if not out:
        raise MalformedDataError(f"{path}: the subset list is empty")
    return out


def read_loc_val_solution(path: Path, classes: list[str]) -> dict[str, int]:
    """Kaggle's `LOC_val_solution.csv`: "ImageId,PredictionString" with "<wnid> x y x y ..." -> {image id: label}."""
    index = {c: i for i, c in enumerate(classes)}
    labels: dict[str, int] = {}
    for lineno, line in read_lines(path):
        if lineno == 1 and line.startswith("ImageId"):
            continue
        image_id, _, pred = line.partition(",")
        wnid = pred.split()[0] if pred.split() else ""
        if wnid not in index:
            raise MalformedDataError(f"{path}: line {lineno}: wnid {wnid!r} is not one of the {len(classes)} train classes")
        labels[image_id] = index[wnid]
    return labels


def _flat_val(root: Path, classes: list[str]) -> list[tuple[str, int]]:
    solution = root / "LOC_val_solution.csv"
    if not solution.is_file():
        raise MalformedDataError(
            f"{root / 'val'}: images are not in <wnid> folders and {solution} (their labels) is missing"
        )
    labels = read_loc_val_solution(solution, classes)
    names = sorted(p.name for p in (root / "val").iterdir() if is_image_file(p.name))
    samples = []
    for name in names:
        stem = name.rsplit(".", 1)[0]
        if stem not in labels:
            raise MalformedDataError(f"{solution}: no row for val image {name}")
        samples.append((f"val/{name}", labels[stem]))
    return samples


def open_imagenet(
    data_root: Path, split: str, transform: Callable | None = None, on_bad_image: str = "error"
) -> ImageNet:
    root = require_dir(dataset_dir("imagenet", data_root), "ImageNet")
    classes = imagenet_classes(root)
    if split == "train":
        _, samples = scan_image_folder(root, "train")
    elif split == "val":
        val_dir = require_dir(root / "val", "val split")
        if list_class_folders(val_dir):
            _, samples = scan_image_folder(root, "val", classes)
        else:
            samples = _flat_val(root, classes)
    elif split in SUBSET_FILES:
        rows = read_subset_list(find_subset_file(root, split), classes)
        check_listed_images(root, [(rel, src) for rel, _, src in rows], "the subset list")
        samples = sorted((rel, label) for rel, label, _ in rows)
    else:
        raise ValueError(f"imagenet split must be one of {SPLITS}, got {split!r}")
    return ImageNet(root, samples, classes, split=split, transform=transform, on_bad_image=on_bad_image)

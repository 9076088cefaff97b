"""Open any dataset split by name: the one entry point tasks, `extract`, `data check` and the tests use.

| name        | kind           | splits                                      | class order                  |
|-------------|----------------|---------------------------------------------|------------------------------|
| `imagenet`  | classification | train, val, train_1pct, train_10pct         | sorted wnids                 |
| `places205` | classification | train, val                                  | official labels 0..204       |
| `inat2018`  | classification | train, val                                  | official category ids        |
| `voc2007`   | classification | trainval, test (also train, val)            | 20 classes sorted, 1/-1/0    |
| `voc2007`   | detection      | trainval, test (also train, val)            | 20 classes sorted            |
| `voc2012`   | detection      | trainval (also train, val)                  | 20 classes sorted            |
| `coco`      | detection      | train2017, val2017                          | sorted category ids          |
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from vicreg_bench.data.base import BAD_IMAGE_POLICIES, ClassificationDataset, DetectionDataset
from vicreg_bench.errors import UserError

CLASSIFICATION_SPLITS: dict[str, tuple[str, ...]] = {
    "imagenet": ("train", "val", "train_1pct", "train_10pct"),
    "places205": ("train", "val"),
    "inat2018": ("train", "val"),
    "voc2007": ("trainval", "test", "train", "val"),
}
DETECTION_SPLITS: dict[str, tuple[str, ...]] = {
    "voc2007": ("trainval", "test", "train", "val"),
    "voc2012": ("trainval", "train", "val"),
    "coco": ("train2017", "val2017"),
}
DATA_ROOT_ENV = "VICREG_BENCH_DATA"


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """`--data-root` if given, else `$VICREG_BENCH_DATA`; a UserError if neither names a folder."""
    if data_root is None or str(data_root) == "":
        env = os.environ.get(DATA_ROOT_ENV, "")
        if not env:
            raise UserError(f"no data root: pass --data-root DIR or set ${DATA_ROOT_ENV}")
        data_root, origin = env, f"${DATA_ROOT_ENV}"
    else:
        origin = "--data-root"
    path = Path(data_root).expanduser()
    if not path.is_dir():
        raise UserError(f"{path}: data root ({origin}) is not a folder")
    return path


def _check(table: dict[str, tuple[str, ...]], kind: str, name: str, split: str, on_bad_image: str) -> None:
    if name not in table:
        raise UserError(f"unknown {kind} dataset {name!r}; expected one of {', '.join(table)}")
    if split not in table[name]:
        raise UserError(f"unknown split {split!r} for {kind} dataset {name!r}; expected one of {', '.join(table[name])}")
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise UserError(f"on_bad_image must be one of {', '.join(BAD_IMAGE_POLICIES)}, got {on_bad_image!r}")


def open_classification(
    name: str,
    data_root: str | os.PathLike,
    split: str,
    transform: Callable | None = None,
    on_bad_image: str = "error",
) -> ClassificationDataset:
    """A classification split; raises DatasetMissingError / MalformedDataError (UserErrors) naming the file."""
    _check(CLASSIFICATION_SPLITS, "classification", name, split, on_bad_image)
    root = Path(data_root)
    if name == "imagenet":
        from vicreg_bench.data.imagenet import open_imagenet

        return open_imagenet(root, split, transform, on_bad_image)
    if name == "places205":
        from vicreg_bench.data.places import open_places205

        return open_places205(root, split, transform, on_bad_image)
    if name == "inat2018":
        from vicreg_bench.data.inat import open_inat2018

        return open_inat2018(root, split, transform, on_bad_image)
    from vicreg_bench.data.voc import open_voc_classification

    return open_voc_classification(name, root, split, transform, on_bad_image)


def open_detection(
    name: str,
    data_root: str | os.PathLike,
    split: str,
    transform: Callable | None = None,
    on_bad_image: str = "error",
) -> DetectionDataset:
    """A detection split; the transform is called as `transform(image, target) -> (image, target)`."""
    _check(DETECTION_SPLITS, "detection", name, split, on_bad_image)
    root = Path(data_root)
    if name == "coco":
        from vicreg_bench.data.coco import open_coco

        return open_coco(root, split, transform, on_bad_image)
    from vicreg_bench.data.voc import open_voc_detection

    return open_voc_detection(name, root, split, transform, on_bad_image)

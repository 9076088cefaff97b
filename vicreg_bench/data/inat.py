"""iNaturalist 2018 from the official `train2018.json` / `val2018.json` (COCO-style, visipedia/inat_comp).

Documented fields: images{id, width, height, file_name, license, rights_holder},
annotations{id, image_id, category_id} (one per image), categories{id, name, supercategory, kingdom, ...}.
`file_name` is relative to the dataset folder: "train_val2018/<supercategory>/<category id>/<hash>.jpg".

Class order: the official category ids (label = `category_id`, 8142 classes, ids 0..8141); `classes[i]` is
the name of category i as the json gives it (the competition files obfuscate some names: "8133").
Each split uses the categories of its own json; the official files list all 8142 in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from vicreg_bench.data.base import ClassificationDataset
from vicreg_bench.data.errors import MalformedDataError
from vicreg_bench.data.files import check_listed_images, load_json, require_dir, require_file
from vicreg_bench.data.layouts import dataset_dir

SPLITS = ("train", "val")
NUM_CLASSES_OFFICIAL = 8142


class INaturalist2018(ClassificationDataset):
    name = "inat2018"


def _entries(d: Any, path: Path, key: str) -> list[dict]:
    if not isinstance(d, dict) or key not in d:
        raise MalformedDataError(f"{path}: no {key!r} list at the top level (expected the official iNat json)")
    if not isinstance(d[key], list):
        raise MalformedDataError(f"{path}: {key!r} is not a list")
    for k, e in enumerate(d[key]):
        if not isinstance(e, dict):
            raise MalformedDataError(f"{path}: {key}[{k}] is not an object")
    return d[key]


def _field(e: dict, name: str, typ: type, path: Path, where: str) -> Any:
    v = e.get(name)
    if not isinstance(v, typ) or isinstance(v, bool):
        raise MalformedDataError(f"{path}: {where}: field {name!r} missing or not {typ.__name__} (got {v!r})")
    return v


def parse_inat_json(path: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(class names indexed by category id, [(file_name, category_id)] in file order); validates every entry."""
    d = load_json(path)
    images = _entries(d, path, "images")
    annotations = _entries(d, path, "annotations")
    categories = _entries(d, path, "categories")
    names: dict[int, str] = {}
    for k, c in enumerate(categories):
        cid = _field(c, "id", int, path, f"categories[{k}]")
        names[cid] = str(c.get("name", cid))
    if sorted(names) != list(range(len(names))):
        bad = next(i for i, cid in enumerate(sorted(names)) if cid != i)
        raise MalformedDataError(
            f"{path}: category ids must be 0..{len(names) - 1} (the official labels); id {bad} is missing"
        )
    files: dict[int, str] = {}
    for k, im in enumerate(images):
        iid = _field(im, "id", int, path, f"images[{k}]")
        fname = _field(im, "file_name", str, path, f"images[{k}] (id {iid})")
        if iid in files:
            raise MalformedDataError(f"{path}: images[{k}]: duplicate image id {iid}")
        files[iid] = fname
    label_of: dict[int, int] = {}
    for k, a in enumerate(annotations):
        where = f"annotations[{k}] (id {a.get('id')})"
        iid = _field(a, "image_id", int, path, where)
        cid = _field(a, "category_id", int, path, where)
        if iid not in files:
            raise MalformedDataError(f"{path}: {where}: image_id {iid} is not in 'images'")
        if cid not in names:
            raise MalformedDataError(f"{path}: {where}: category_id {cid} is not in 'categories' (label out of range)")
        if label_of.get(iid, cid) != cid:
            raise MalformedDataError(f"{path}: {where}: image {iid} already has category {label_of[iid]}")
        label_of[iid] = cid
    samples = []
    for k, im in enumerate(images):
        if im["id"] not in label_of:
            raise MalformedDataError(f"{path}: images[{k}] (id {im['id']}): no annotation gives its category")
        samples.append((im["file_name"], label_of[im["id"]]))
    classes = [names[i] for i in range(len(names))]
    return classes, samples


def open_inat2018(
    data_root: Path, split: str, transform: Callable | None = None, on_bad_image: str = "error"
) -> INaturalist2018:
    if split not in SPLITS:
        raise ValueError(f"inat2018 split must be one of {SPLITS}, got {split!r}")
    root = require_dir(dataset_dir("inat2018", data_root), "iNaturalist 2018")
    path = require_file(root / f"{split}2018.json", f"iNat2018 {split} annotations")
    classes, samples = parse_inat_json(path)
    check_listed_images(root, [(rel, f"{path}: images[{k}]") for k, (rel, _) in enumerate(samples)], "the json")
    return INaturalist2018(root, sorted(samples), classes, split=split, transform=transform, on_bad_image=on_bad_image)

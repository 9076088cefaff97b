"""COCO 2017 instances (boxes and masks) through pycocotools.

Layout: `coco/annotations/instances_{train,val}2017.json`, images in `coco/{train,val}2017/`.

Class order: the json's categories sorted by id. COCO ids are not contiguous (1..90 with gaps for the 80
classes); class index i is the i-th smallest id, so person (1) = 0, ..., toothbrush (90) = 79 — the same
order as detectron2's contiguous ids. `dataset.category_ids[i]` maps back to the json id (what COCOeval
and a results json need).

Targets: boxes are `bbox` [x, y, w, h] converted to [x1, y1, x2, y2] in the json's pixel coordinates;
`difficult` holds `iscrowd`; `masks[k]` is the annotation's `segmentation` unchanged (a list of polygons,
or an RLE dict with `counts` as a list (uncompressed) or a string); `decode_mask` rasterises either.
Images are in id order and images without annotations are kept (detectron2 drops them for training only).
`dataset.coco` is the `pycocotools.coco.COCO` index of the same json, ready for `COCOeval`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vicreg_bench.data.base import DetectionDataset, DetectionTarget
from vicreg_bench.data.errors import MalformedDataError
from vicreg_bench.data.files import FolderIndex, load_json, require_dir, require_file
from vicreg_bench.data.layouts import dataset_dir

SPLITS = ("train2017", "val2017")


class COCODetection(DetectionDataset):
    name = "coco"
    coco: Any = None  # pycocotools.coco.COCO
    category_ids: list[int] = []


def _list(d: dict, key: str, path: Path) -> list[dict]:
    if key not in d:
        raise MalformedDataError(f"{path}: no {key!r} list at the top level (expected a COCO instances json)")
    if not isinstance(d[key], list) or not all(isinstance(e, dict) for e in d[key]):
        raise MalformedDataError(f"{path}: {key!r} must be a list of objects")
    return d[key]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_coco(d: Any, path: Path) -> None:
    """Check what the reader and pycocotools rely on; errors name the entry (`annotations[k] (id N)`)."""
    if not isinstance(d, dict):
        raise MalformedDataError(f"{path}: top level is not an object (expected a COCO instances json)")
    images, annotations, categories = (_list(d, k, path) for k in ("images", "annotations", "categories"))
    cat_ids = set()
    for k, c in enumerate(categories):
        if not isinstance(c.get("id"), int) or "name" not in c:
            raise MalformedDataError(f"{path}: categories[{k}]: needs an integer 'id' and a 'name'")
        if c["id"] in cat_ids:
            raise MalformedDataError(f"{path}: categories[{k}]: duplicate category id {c['id']}")
        cat_ids.add(c["id"])
    image_ids = set()
    for k, im in enumerate(images):
        where = f"images[{k}]"
        if not isinstance(im.get("id"), int) or not isinstance(im.get("file_name"), str):
            raise MalformedDataError(f"{path}: {where}: needs an integer 'id' and a 'file_name'")
        if not isinstance(im.get("width"), int) or not isinstance(im.get("height"), int):
            raise MalformedDataError(f"{path}: {where} (id {im['id']}): needs integer 'width' and 'height'")
        if im["id"] in image_ids:
            raise MalformedDataError(f"{path}: {where}: duplicate image id {im['id']}")
        image_ids.add(im["id"])
    for k, a in enumerate(annotations):
        where = f"annotations[{k}] (id {a.get('id')})"
        if a.get("image_id") not in image_ids:
            raise MalformedDataError(f"{path}: {where}: image_id {a.get('image_id')!r} is not in 'images'")
        if a.get("category_id") not in cat_ids:
            raise MalformedDataError(f"{path}: {where}: category_id {a.get('category_id')!r} is not in 'categories'")
        bbox = a.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise MalformedDataError(f"{path}: {where}: 'bbox' must be [x, y, width, height], got {bbox!r}")
        if a.get("iscrowd", 0) not in (0, 1):
            raise MalformedDataError(f"{path}: {where}: 'iscrowd' must be 0 or 1, got {a.get('iscrowd')!r}")
        seg = a.get("segmentation")
        if seg is not None and not _valid_segmentation(seg):
            raise MalformedDataError(
                f"{path}: {where}: 'segmentation' must be a list of polygons [x1, y1, x2, y2, ...] "
                "or an RLE {'counts', 'size'}"
            )


def _valid_segmentation(seg: Any) -> bool:
    if isinstance(seg, dict):
        return "counts" in seg and isinstance(seg.get("size"), list) and len(seg["size"]) == 2
    if isinstance(seg, list):
        return all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 and all(_is_number(v) for v in p) for p in seg)
    return False


def build_coco_index(d: dict):
    """A pycocotools COCO over an already-loaded dict (pycocotools' own loader prints and re-reads the file)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = d
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def decode_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """H x W bool mask of a COCO `segmentation` (polygons, uncompressed or compressed RLE), via pycocotools."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    with warnings.catch_warnings():  # pycocotools' Cython code warns about numpy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode([rle])[:, :, 0].astype(bool)


def open_coco(
    data_root: Path, split: str, transform: Callable | None = None, on_bad_image: str = "error"
) -> COCODetection:
    if split not in SPLITS:
        raise ValueError(f"coco split must be one of {SPLITS}, got {split!r}")
    root = require_dir(dataset_dir("coco", data_root), "COCO")
    path = require_file(root / "annotations" / f"instances_{split}.json", f"COCO {split} instances json")
    d = load_json(path)
    validate_coco(d, path)
    require_dir(root / split, f"COCO {split} image")
    coco = build_coco_index(d)
    category_ids = sorted(coco.cats)
    index = {cid: i for i, cid in enumerate(category_ids)}
    classes = [coco.cats[cid]["name"] for cid in category_ids]
    files = FolderIndex(root / split)
    samples = []
    for image_id in sorted(coco.imgs):
        im = coco.imgs[image_id]
        if not files.exists(im["file_name"]):
            raise MalformedDataError(f"{path}: image id {image_id}: {split}/{im['file_name']} does not exist under {root}")
        anns = coco.imgToAnns.get(image_id, [])
        xywh = np.asarray([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        target = DetectionTarget(
            boxes=np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1),
            classes=np.asarray([index[a["category_id"]] for a in anns], dtype=np.int64),
            difficult=np.asarray([a.get("iscrowd", 0) == 1 for a in anns], dtype=bool),
            masks=[a.get("segmentation") for a in anns],
            image_id=image_id,
            width=im["width"],
            height=im["height"],
            extra={"annotation_ids": [a.get("id") for a in anns], "area": [a.get("area") for a in anns]},
        )
        samples.append((f"{split}/{im['file_name']}", target))
    ds = COCODetection(root, samples, classes, split=split, transform=transform, on_bad_image=on_bad_image)
    ds.coco = coco
    ds.category_ids = category_ids
    return ds

"""The synthetic VOC2007 / VOC2012 and COCO datasets: objects of fixed looks on random scenes, in the
devkit's XML + ImageSets layout and COCO's instances json (polygons and crowd RLEs)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vicreg_bench.data import synth_draw as D
from vicreg_bench.data.layouts import FOLDERS
from vicreg_bench.data.synth_files import BACKGROUND_MUTE, SuiteSize, dataset_rng, jpeg, write
from vicreg_bench.data.voc import VOC_CLASSES

# VOC / COCO object looks, by VOC class name (COCO "airplane" reuses "aeroplane").
VOC_LOOKS = {
    "aeroplane": D.Look("cross", "solid", 0.58, upright=True),
    "bicycle": D.Look("hourglass", "stripes", 0.5, upright=True),
    "bird": D.Look("triangle", "solid", 0.15, upright=True),
    "boat": D.Look("trapezoid", "stripes", 0.62, 0.15, upright=True),
    "bottle": D.Look("ellipse", "solid", 0.35, aspect=0.45, upright=True),
    "bus": D.Look("square", "checker", 0.13, upright=True),
    "car": D.Look("semicircle", "solid", 0.0, upright=True),
    "cat": D.Look("pentagon", "stripes", 0.08, upright=True),
    "chair": D.Look("lshape", "solid", 0.07, upright=True),
    "cow": D.Look("hexagon", "dots", 0.0, 0.15, upright=True),
    "diningtable": D.Look("tshape", "solid", 0.09, upright=True),
    "dog": D.Look("circle", "solid", 0.1, upright=True),
    "horse": D.Look("arrow", "solid", 0.05, upright=True),
    "motorbike": D.Look("diamond", "stripes", 0.97, upright=True),
    "person": D.Look("star", "solid", 0.92, upright=True),
    "pottedplant": D.Look("heart", "dots", 0.3, upright=True),
    "sheep": D.Look("circle", "dots", 0.6, 0.15, upright=True),
    "sofa": D.Look("crescent", "solid", 0.78, upright=True),
    "train": D.Look("square", "stripes", 0.45, upright=True),
    "tvmonitor": D.Look("octagon", "rings", 0.66, upright=True),
}
# (id, name, supercategory) of real COCO categories, with their real (non-contiguous) ids.
COCO_CATEGORIES = ((1, "person", "person"), (3, "car", "vehicle"), (5, "airplane", "vehicle"),
                   (16, "bird", "animal"), (17, "cat", "animal"), (18, "dog", "animal"),
                   (44, "bottle", "kitchen"), (62, "chair", "furniture"))  # fmt: skip
COCO_LOOK_NAME = {"airplane": "aeroplane"}


@dataclass
class DrawnObject:
    label: int
    polygon: np.ndarray  # final pixel coordinates
    mask: np.ndarray  # final-resolution bool mask of the visible part
    truncated: bool
    difficult: bool


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _overlaps(box: tuple[float, float, float, float], boxes: list, margin: float) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + margin and b[0] < x1 + margin and y0 < b[3] + margin and b[1] < y1 + margin for b in boxes)


def detection_image(
    rng: np.random.Generator, labels: list[int], looks: list[D.Look], wh: tuple[int, int], allow_hard: bool
) -> tuple[Image.Image, list[DrawnObject]]:
    """Objects of the given classes on a random scene, without overlaps. The first object is always
    easy; with `allow_hard` later ones may be small or cut by the border (VOC's difficult cases)."""
    w, h = wh
    cv = D.Canvas(w, h)
    D.random_scene(cv, rng, mute=BACKGROUND_MUTE)
    s = min(w, h)
    placed, objects = [], []
    for k, label in enumerate(labels):
        kind = "easy" if k == 0 or not allow_hard else ["easy", "easy", "small", "cut"][rng.integers(4)]
        for _ in range(30):
            r = s * (rng.uniform(0.05, 0.075) if kind == "small" else rng.uniform(0.18, 0.3))
            outline = D.object_outline(looks[label], rng, r)
            lo, hi = outline.min(0), outline.max(0)
            if np.any(hi - lo >= (w, h)):
                continue
            if kind == "cut":  # centre near a border, so part of the object falls outside
                side, off = rng.integers(4), rng.uniform(-0.3, 0.3) * r
                along_x, along_y = rng.uniform(r, w - r), rng.uniform(r, h - r)
                cx, cy = [(off, along_y), (w - off, along_y), (along_x, off), (along_x, h - off)][side]
            else:  # fully inside the image
                cx, cy = rng.uniform(-lo[0], w - hi[0]), rng.uniform(-lo[1], h - hi[1])
            box = (cx + lo[0], cy + lo[1], cx + hi[0], cy + hi[1])
            if not _overlaps(box, placed, margin=1.0):
                break
        else:
            continue
        placed.append(box)
        poly = outline + np.array([cx, cy])
        mask = D.paint_object(cv, looks[label], rng, poly, r)
        full = _polygon_area(poly)
        visible = cv.final_mask(mask)
        if visible.sum() < 4:
            continue
        inside = float(visible.sum()) / max(full, 1e-6)
        truncated = kind == "cut" and inside < 0.97
        ys, xs = np.nonzero(visible)
        small = max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) < 0.15 * s
        objects.append(DrawnObject(label, poly, visible, truncated, small or (truncated and inside < 0.6)))
    return cv.image(rng), objects


# ----------------------------------------------------------------------------------------------- VOC
def _voc_xml(year: str, image_id: str, w: int, h: int, objects: list[DrawnObject], with_parts: bool) -> str:
    lines = ["<annotation>", f"\t<folder>VOC{year}</folder>", f"\t<filename>{image_id}.jpg</filename>",
             "\t<source>", f"\t\t<database>The VOC{year} Database</database>",
             f"\t\t<annotation>PASCAL VOC{year} (vicreg-bench synthetic)</annotation>",
             "\t\t<image>procedural</image>", "\t</source>",
             "\t<size>", f"\t\t<width>{w}</width>", f"\t\t<height>{h}</height>", "\t\t<depth>3</depth>", "\t</size>",
             "\t<segmented>0</segmented>"]  # fmt: skip
    for o in objects:
        ys, xs = np.nonzero(o.mask)
        box = (xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1)  # VOC: 1-based inclusive pixels
        lines += ["\t<object>", f"\t\t<name>{VOC_CLASSES[o.label]}</name>", "\t\t<pose>Unspecified</pose>",
                  f"\t\t<truncated>{int(o.truncated)}</truncated>", f"\t\t<difficult>{int(o.difficult)}</difficult>",
                  "\t\t<bndbox>", f"\t\t\t<xmin>{box[0]}</xmin>", f"\t\t\t<ymin>{box[1]}</ymin>",
                  f"\t\t\t<xmax>{box[2]}</xmax>", f"\t\t\t<ymax>{box[3]}</ymax>", "\t\t</bndbox>"]  # fmt: skip
        if with_parts and VOC_CLASSES[o.label] == "person":  # person-layout part: NOT an object
            head = (box[0], box[1], box[2], box[1] + max(1, (box[3] - box[1]) // 3))
            lines += ["\t\t<part>", "\t\t\t<name>head</name>", "\t\t\t<bndbox>",
                      f"\t\t\t\t<xmin>{head[0]}</xmin>", f"\t\t\t\t<ymin>{head[1]}</ymin>",
                      f"\t\t\t\t<xmax>{head[2]}</xmax>", f"\t\t\t\t<ymax>{head[3]}</ymax>",
                      "\t\t\t</bndbox>", "\t\t</part>"]  # fmt: skip
        lines.append("\t</object>")
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


def _voc_labels(objects: list[DrawnObject]) -> list[int]:
    """The devkit's per-class label: 1 a non-difficult object, 0 only difficult ones, -1 none."""
    out = [-1] * len(VOC_CLASSES)
    for o in objects:
        out[o.label] = 1 if not o.difficult else max(out[o.label], 0)
    return out


def write_voc(root: Path, size: SuiteSize, seed: int, year: str) -> None:
    rng = dataset_rng(seed, f"voc{year}")
    out = root / FOLDERS[f"voc{year}"]
    looks = [VOC_LOOKS[c] for c in VOC_CLASSES]
    splits = {"trainval": size.voc07_trainval, "test": size.voc07_test} if year == "2007" else {"trainval": size.voc12_trainval}
    total = sum(splits.values())
    if year == "2007":
        ids = [f"{i:06d}" for i in range(1, total + 1)]
    else:
        ids = sorted(f"{y}_{n:06d}" for y, n in zip(rng.integers(2008, 2012, total), rng.choice(9000, total, replace=False)))
    order = rng.permutation(total)  # like the real devkit, trainval and test ids interleave
    split_ids, start = {}, 0
    for split, n in splits.items():
        split_ids[split] = sorted(ids[i] for i in order[start : start + n])
        start += n
    # train / val: alternate blocks of 20 trainval images; as image k's first object is class k % 20,
    # each block, hence each split, holds every class
    tv = split_ids["trainval"]
    split_ids["train"] = [i for k, i in enumerate(tv) if (k // len(VOC_CLASSES)) % 2 == 0]
    split_ids["val"] = [i for k, i in enumerate(tv) if (k // len(VOC_CLASSES)) % 2 == 1]
    labels_of: dict[str, list[int]] = {}
    for split in splits:
        for k, image_id in enumerate(split_ids[split]):
            first = k % len(VOC_CLASSES)  # every class gets easy positives in every split
            extra = [int(c) for c in rng.integers(0, len(VOC_CLASSES), rng.integers(0, 3))]
            wh = size.det_sizes[rng.integers(len(size.det_sizes))]
            img, objects = detection_image(rng, [first] + extra, looks, wh, allow_hard=True)
            write(out / "JPEGImages" / f"{image_id}.jpg", jpeg(img))
            write(out / "Annotations" / f"{image_id}.xml", _voc_xml(year, image_id, *wh, objects, year == "2012"))
            labels_of[image_id] = _voc_labels(objects)
    main = out / "ImageSets" / "Main"
    for split, ids_ in split_ids.items():
        write(main / f"{split}.txt", "".join(f"{i}\n" for i in ids_))
        for c, cls in enumerate(VOC_CLASSES):
            write(main / f"{cls}_{split}.txt", "".join(f"{i} {labels_of[i][c]:2d}\n" for i in ids_))


# ----------------------------------------------------------------------------------------------- COCO
def _rle_uncompressed(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def write_coco(root: Path, size: SuiteSize, seed: int) -> None:
    from pycocotools import mask as mask_utils

    rng = dataset_rng(seed, "coco")
    out = root / FOLDERS["coco"]
    looks = [VOC_LOOKS[COCO_LOOK_NAME.get(name, name)] for _, name, _ in COCO_CATEGORIES]
    categories = [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in COCO_CATEGORIES]
    next_image, next_ann = 1, 1
    for split, n in (("train2017", size.coco_train), ("val2017", size.coco_val)):
        images, annotations = [], []
        for k in range(n):
            image_id = next_image * 37 + int(rng.integers(0, 37))  # sparse, like real COCO ids
            next_image += 1
            wh = size.det_sizes[rng.integers(len(size.det_sizes))]
            first = k % len(COCO_CATEGORIES)
            extra = [int(c) for c in rng.integers(0, len(COCO_CATEGORIES), rng.integers(0, 3))]
            crowd = k % 8 == 3  # a crowd region: several small instances annotated as one RLE mask
            img, objects = detection_image(rng, [first] + extra, looks, wh, allow_hard=False)
            if crowd:
                img, crowd_mask, crowd_label = _add_crowd(rng, img, looks, wh, objects)
            file_name = f"{image_id:012d}.jpg"
            write(out / split / file_name, jpeg(img))
            images.append({"license": 1, "file_name": file_name, "height": wh[1], "width": wh[0],
                           "date_captured": "2013-11-14 16:28:13", "id": image_id})  # fmt: skip
            for o in objects:
                poly = [round(float(v), 2) for v in o.polygon.reshape(-1)]
                rle = mask_utils.merge(mask_utils.frPyObjects([poly], wh[1], wh[0]))
                x0, y0 = o.polygon.min(0)
                x1, y1 = o.polygon.max(0)
                annotations.append({"segmentation": [poly], "area": float(mask_utils.area(rle)), "iscrowd": 0,
                                    "image_id": image_id, "bbox": [round(float(x0), 2), round(float(y0), 2),
                                    round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                                    "category_id": COCO_CATEGORIES[o.label][0], "id": next_ann})  # fmt: skip
                next_ann += 1
            if crowd and crowd_mask is not None:
                ys, xs = np.nonzero(crowd_mask)
                annotations.append({"segmentation": _rle_uncompressed(crowd_mask), "area": int(crowd_mask.sum()),
                                    "iscrowd": 1, "image_id": image_id,
                                    "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1),
                                             int(ys.max() - ys.min() + 1)],
                                    "category_id": COCO_CATEGORIES[crowd_label][0], "id": 900000000 + next_ann})  # fmt: skip
                next_ann += 1
        doc = {
            "info": {"description": "vicreg-bench synthetic COCO 2017 layout", "url": "", "version": "1.0",
                     "year": 2017, "contributor": "vicreg-bench", "date_created": "2017/09/01"},
            "licenses": [{"url": "http://creativecommons.org/licenses/by/2.0/", "id": 1, "name": "Attribution License"}],
            "images": images, "annotations": annotations, "categories": categories,
        }  # fmt: skip
        write(out / "annotations" / f"instances_{split}.json", json.dumps(doc))


def _add_crowd(rng, img: Image.Image, looks, wh, objects: list[DrawnObject]):
    """Draw 4-7 small same-class instances in a free band of the image; return their union mask."""
    w, h = wh
    label = int(rng.integers(len(looks)))
    cv = D.Canvas(w, h)
    rgb = np.moveaxis(np.asarray(img, np.float32) / 255.0, -1, 0)
    cv.paint(np.repeat(np.repeat(rgb, D.SUPERSAMPLE, 1), D.SUPERSAMPLE, 2))
    taken = np.zeros((h, w), bool)
    for o in objects:
        taken |= o.mask
    union = np.zeros((h, w), bool)
    r = min(w, h) * 0.05
    for _ in range(int(rng.integers(4, 8))):
        for _ in range(20):
            cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
            x0, x1, y0, y1 = int(cx - r - 1), int(cx + r + 2), int(cy - r - 1), int(cy + r + 2)
            if not taken[max(y0, 0) : y1, max(x0, 0) : x1].any():
                break
        else:
            continue
        _, mask = D.draw_object(cv, looks[label], rng, cx, cy, r)
        m = cv.final_mask(mask)
        union |= m
        taken |= m
    if union.sum() == 0:
        return img, None, label
    return cv.image(rng, noise=0.0), union, label


"""Write the synthetic mini-suite: every dataset in its official layout, with learnable procedural images.

    vicreg-bench data synth --root DIR [--size tiny|small] [--seed N]

writes under DIR the data-root layout the readers expect (`imagenet/`, `places205/`, `inat2018/`,
`VOC2007/`, `VOC2012/`, `coco/`), with the files users would have: ImageNet class folders and SimCLR subset
lists, Places205 list files, iNat json, VOC XML + ImageSets (all 20 per-class lists, both years), COCO
instances json with polygon masks and crowd RLEs. Point `--data-root` (or $VICREG_BENCH_DATA) at DIR.

What the labels are, so that they can be learnt from pixels:
- imagenet: class = shape + fill texture of one large object (random colours, position, size, rotation)
  on a random scene background;
- places205: class = the scene (beach, forest path, highway, ...), with random small distractor objects;
- inat2018: class = species = shape + texture + colours; shapes are shared inside a supercategory;
- VOC / COCO: 1-3 objects per image, each class a fixed shape/texture/colour look; boxes and masks are
  the drawn polygons. VOC marks small and mostly cut-off objects `difficult` (the devkit's convention).

`tiny` (64 px, 8-10 classes, a few dozen images per split; seconds) is for the tests; `small` (96 px, a
few hundred images per split) is for the demo. The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vicreg_bench.data import synth_draw as D
from vicreg_bench.data.layouts import FOLDERS, PLACES_IMAGES_ROOT
from vicreg_bench.data.voc import VOC_CLASSES
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_write_json

GENERATOR_VERSION = 1
MARKER = "SYNTHETIC_SUITE.json"
SIZES = ("tiny", "small")


@dataclass(frozen=True)
class SuiteSize:
    image: int  # classification images are about image x image
    det_sizes: tuple[tuple[int, int], ...]  # (width, height) choices of the detection images
    imagenet_classes: int
    imagenet_train: int  # per class
    imagenet_val: int
    places_classes: int
    places_train: int
    places_val: int
    inat_classes: int
    inat_train: int
    inat_val: int
    voc07_trainval: int
    voc07_test: int
    voc12_trainval: int
    coco_train: int
    coco_val: int


SUITE_SIZES = {
    "tiny": SuiteSize(64, ((64, 48), (48, 64), (64, 64)), 10, 6, 3, 8, 6, 3, 8, 6, 3, 40, 40, 24, 24, 12),
    "small": SuiteSize(96, ((128, 96), (96, 128), (112, 112)), 10, 40, 20, 10, 30, 15, 10, 30, 15, 250, 250, 200, 200, 100),
}

# Real ImageNet wnids (every 100th of the sorted 1000), so the folders look like the real thing.
IMAGENET_WNIDS = ("n01440764", "n01860187", "n02097474", "n02165105", "n02669723",
                  "n03042490", "n03532672", "n03887697", "n04243546", "n04562935")  # fmt: skip
# ImageNet: each class is a shape + texture + colour combination (hues 0.1 apart: more than the hue jitter
# of the VICReg augmentation, so colour stays a partial cue; shape and texture make the rest).
IMAGENET_LOOKS = tuple(
    D.Look(shape, tex, hue)
    for shape, tex, hue in [("circle", "stripes", 0.0), ("triangle", "dots", 0.1), ("square", "checker", 0.2),
                            ("star", "solid", 0.3), ("cross", "rings", 0.4), ("heart", "stripes", 0.5),
                            ("hexagon", "dots", 0.6), ("arrow", "checker", 0.7), ("diamond", "rings", 0.8),
                            ("lshape", "solid", 0.9)]
)  # fmt: skip

# iNat: supercategory -> species looks (shape shared within a supercategory; texture and colours differ).
INAT_SPECIES = (
    ("Plantae", "Folium viride", D.Look("ellipse", "solid", 0.30)),
    ("Plantae", "Cor punctatum", D.Look("heart", "dots", 0.25, 0.15)),
    ("Aves", "Avis rubra", D.Look("triangle", "solid", 0.0)),
    ("Aves", "Avis striata", D.Look("triangle", "stripes", 0.6, 0.15)),
    ("Insecta", "Insectum flavum", D.Look("hexagon", "stripes", 0.14)),
    ("Insecta", "Insectum maculatum", D.Look("hexagon", "dots", 0.0)),
    ("Mammalia", "Mammal fuscum", D.Look("circle", "solid", 0.07)),
    ("Mammalia", "Mammal anulatum", D.Look("circle", "rings", 0.75, 0.15)),
    ("Plantae", "Stella viridis", D.Look("star", "checker", 0.35, 0.15)),
    ("Aves", "Sagitta caerulea", D.Look("arrow", "gradient", 0.6)),
)

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


# ----------------------------------------------------------------------------------------------- helpers
def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


def _hex(rng: np.random.Generator) -> str:
    return hashlib.md5(rng.bytes(16)).hexdigest()


def _rng(seed: int, dataset: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(dataset.encode()[:8].ljust(8, b"\0"), "little")])


def _image_size(rng: np.random.Generator, base: int) -> tuple[int, int]:
    w, h = [(base, base), (base * 9 // 8, base), (base, base * 9 // 8)][rng.integers(3)]
    return w, h


BACKGROUND_MUTE = 0.5  # scenes behind labelled objects are half-greyed, so the objects carry the signal


def classification_image(rng: np.random.Generator, look: D.Look, base: int) -> Image.Image:
    """One large object of `look` on a muted random scene, at a random position/size/rotation."""
    w, h = _image_size(rng, base)
    cv = D.Canvas(w, h)
    D.random_scene(cv, rng, mute=BACKGROUND_MUTE)
    s = min(w, h)
    radius = s * rng.uniform(0.28, 0.4)
    cx, cy = rng.uniform(radius * 0.85, w - radius * 0.85), rng.uniform(radius * 0.85, h - radius * 0.85)
    D.draw_object(cv, look, rng, cx, cy, radius)
    return cv.image(rng)


def scene_image(rng: np.random.Generator, scene: str, base: int) -> Image.Image:
    """A Places-like image: the scene, plus 1-3 distractor objects of random looks."""
    w, h = _image_size(rng, base)
    cv = D.Canvas(w, h)
    D.SCENES[scene](cv, rng)
    for _ in range(rng.integers(1, 4)):
        look = D.Look(list(D.SHAPES)[rng.integers(len(D.SHAPES))], D.TEXTURES[rng.integers(len(D.TEXTURES))])
        r = min(w, h) * rng.uniform(0.08, 0.18)
        D.draw_object(cv, look, rng, rng.uniform(r, w - r), rng.uniform(r, h - r), r)
    return cv.image(rng)


def _per_class_split(rng: np.random.Generator, num_classes: int, per_class: int) -> list[int]:
    labels = [c for c in range(num_classes) for _ in range(per_class)]
    return [labels[i] for i in rng.permutation(len(labels))]


# ----------------------------------------------------------------------------------------------- imagenet
def write_imagenet(root: Path, size: SuiteSize, seed: int) -> None:
    rng = _rng(seed, "imagenet")
    wnids = IMAGENET_WNIDS[: size.imagenet_classes]
    out = root / FOLDERS["imagenet"]
    train_names: dict[str, list[str]] = {w: [] for w in wnids}
    counters = {w: 0 for w in wnids}
    for label in _per_class_split(rng, len(wnids), size.imagenet_train):
        wnid = wnids[label]
        counters[wnid] += int(rng.integers(1, 40))  # real ImageNet file numbers have gaps
        name = f"{wnid}_{counters[wnid]}.JPEG"
        _write(out / "train" / wnid / name, _jpeg(classification_image(rng, IMAGENET_LOOKS[label], size.image)))
        train_names[wnid].append(name)
    for k, label in enumerate(_per_class_split(rng, len(wnids), size.imagenet_val), start=1):
        img = classification_image(rng, IMAGENET_LOOKS[label], size.image)
        _write(out / "val" / wnids[label] / f"ILSVRC2012_val_{k:08d}.JPEG", _jpeg(img))
    # SimCLR-style subset lists. A literal 1% / 10% of a few dozen images would be empty, so the synthetic
    # lists keep a fixed fraction per class instead (at least 1 / 2 images per class), class-balanced.
    for fname, frac, least in (("1percent.txt", 0.1, 1), ("10percent.txt", 0.3, 2)):
        lines = []
        for wnid in wnids:
            names = train_names[wnid]
            k = max(least, int(round(frac * len(names))))
            lines += [names[i] for i in sorted(rng.choice(len(names), size=min(k, len(names)), replace=False))]
        order = rng.permutation(len(lines))  # the real lists are not sorted
        _write(out / "subsets" / fname, "".join(lines[i] + "\n" for i in order))


# ----------------------------------------------------------------------------------------------- places
def write_places205(root: Path, size: SuiteSize, seed: int) -> None:
    rng = _rng(seed, "places205")
    scenes = sorted(_spread(sorted(D.SCENES), size.places_classes))
    out = root / FOLDERS["places205"]
    images = out / PLACES_IMAGES_ROOT
    for split, per_class in (("train", size.places_train), ("val", size.places_val)):
        lines = []
        for label in _per_class_split(rng, len(scenes), per_class):
            rel = f"{scenes[label]}/gsun_{_hex(rng)}.jpg"
            _write(images / rel, _jpeg(scene_image(rng, scenes[label], size.image)))
            lines.append(f"{rel} {label}\n")
        _write(out / "trainvalsplit_places205" / f"{split}_places205.csv", "".join(sorted(lines)))


def _spread(names: list[str], k: int) -> list[str]:
    """k names spread over the list (so tiny and small both get varied scenes)."""
    if k >= len(names):
        return list(names)
    idx = np.round(np.linspace(0, len(names) - 1, k)).astype(int)
    return [names[i] for i in idx]


# ----------------------------------------------------------------------------------------------- inat
def write_inat2018(root: Path, size: SuiteSize, seed: int) -> None:
    rng = _rng(seed, "inat2018")
    species = INAT_SPECIES[: size.inat_classes]
    out = root / FOLDERS["inat2018"]
    categories = [
        {"id": cid, "name": name, "supercategory": sup, "kingdom": "Animalia" if sup != "Plantae" else "Plantae",
         "phylum": "Synthetica", "class": sup, "order": "Procedurales", "family": name.split()[0] + "idae",
         "genus": name.split()[0]}
        for cid, (sup, name, _) in enumerate(species)
    ]  # fmt: skip
    licenses = [{"id": 1, "name": "Attribution-NonCommercial License", "url": "http://creativecommons.org/licenses/by-nc/4.0/"}]
    next_id = 1
    for split, per_class in (("train", size.inat_train), ("val", size.inat_val)):
        images, annotations = [], []
        for label in _per_class_split(rng, len(species), per_class):
            sup, _, look = species[label]
            img = classification_image(rng, look, size.image)
            file_name = f"train_val2018/{sup}/{label}/{_hex(rng)}.jpg"
            _write(out / file_name, _jpeg(img))
            images.append({"id": next_id, "width": img.width, "height": img.height, "file_name": file_name,
                           "license": 1, "rights_holder": "vicreg-bench synthetic"})  # fmt: skip
            annotations.append({"id": next_id, "image_id": next_id, "category_id": label})
            next_id += 1
        doc = {
            "info": {"year": 2018, "version": "synthetic", "description": "vicreg-bench synthetic iNat2018 layout",
                     "contributor": "vicreg-bench", "url": "", "date_created": "2018-02-01 00:00:00"},
            "images": images, "categories": categories, "annotations": annotations, "licenses": licenses,
        }  # fmt: skip
        _write(out / f"{split}2018.json", json.dumps(doc))


# ----------------------------------------------------------------------------------------------- detection scenes
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
    rng = _rng(seed, f"voc{year}")
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
            _write(out / "JPEGImages" / f"{image_id}.jpg", _jpeg(img))
            _write(out / "Annotations" / f"{image_id}.xml", _voc_xml(year, image_id, *wh, objects, year == "2012"))
            labels_of[image_id] = _voc_labels(objects)
    main = out / "ImageSets" / "Main"
    for split, ids_ in split_ids.items():
        _write(main / f"{split}.txt", "".join(f"{i}\n" for i in ids_))
        for c, cls in enumerate(VOC_CLASSES):
            _write(main / f"{cls}_{split}.txt", "".join(f"{i} {labels_of[i][c]:2d}\n" for i in ids_))


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

    rng = _rng(seed, "coco")
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
            _write(out / split / file_name, _jpeg(img))
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
        _write(out / "annotations" / f"instances_{split}.json", json.dumps(doc))


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


# ----------------------------------------------------------------------------------------------- suite
WRITERS = {
    "imagenet": write_imagenet,
    "places205": write_places205,
    "inat2018": write_inat2018,
    "voc2007": lambda root, size, seed: write_voc(root, size, seed, "2007"),
    "voc2012": lambda root, size, seed: write_voc(root, size, seed, "2012"),
    "coco": write_coco,
}


def make_synthetic_suite(root, size: str = "tiny", seed: int = 0, *, progress: bool = False) -> Path:
    """Write every dataset under `root` in the DESIGN.md data-root layout; returns `root`.

    An existing suite written with the same size, seed and generator version is kept as is (the marker
    file `SYNTHETIC_SUITE.json` is written last, so a half-written suite is regenerated). A folder that
    holds anything else is refused rather than overwritten."""
    if size not in SUITE_SIZES:
        raise UserError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    root = Path(root)
    wanted = {"generator_version": GENERATOR_VERSION, "size": size, "seed": int(seed)}
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == wanted:
                return root
        except json.JSONDecodeError:
            pass
    if root.exists():
        if not root.is_dir():
            raise UserError(f"{root}: --root exists and is not a folder")
        ours = set(FOLDERS.values()) | {MARKER}
        foreign = [p.name for p in root.iterdir() if p.name not in ours]
        if foreign:
            raise UserError(f"{root}: folder is not empty ({', '.join(sorted(foreign)[:3])}, ...); choose a new --root")
        for p in root.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    spec = SUITE_SIZES[size]
    for name, writer in WRITERS.items():
        t = time.time()
        writer(root, spec, int(seed))
        if progress:
            print(f"  {name:<10} {time.time() - t:5.1f} s", flush=True)
    atomic_write_json(marker, wanted)
    return root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, type=Path, help="folder to write the suite into (new or empty)")
    parser.add_argument("--size", choices=SIZES, default="tiny", help="tiny: unit tests (seconds); small: the demo")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")


def main(args: argparse.Namespace) -> int:
    t = time.time()
    print(f"writing the {args.size} synthetic suite (seed {args.seed}) to {args.root}")
    make_synthetic_suite(args.root, args.size, args.seed, progress=True)
    print(f"done in {time.time() - t:.1f} s; use it with --data-root {args.root}")
    return 0

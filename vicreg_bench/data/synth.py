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

import json
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vicreg_bench.data import synth_draw as D
from vicreg_bench.data.layouts import FOLDERS, PLACES_IMAGES_ROOT
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_write_json
from vicreg_bench.data.synth_detection import write_coco, write_voc
from vicreg_bench.data.synth_files import (
    BACKGROUND_MUTE,
    SIZES,
    SUITE_SIZES,
    SuiteSize,
    dataset_rng,
    hex_id,
    image_size,
    jpeg,
    write,
)

GENERATOR_VERSION = 1
MARKER = "SYNTHETIC_SUITE.json"

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


def classification_image(rng: np.random.Generator, look: D.Look, base: int) -> Image.Image:
    """One large object of `look` on a muted random scene, at a random position/size/rotation."""
    w, h = image_size(rng, base)
    cv = D.Canvas(w, h)
    D.random_scene(cv, rng, mute=BACKGROUND_MUTE)
    s = min(w, h)
    radius = s * rng.uniform(0.28, 0.4)
    cx, cy = rng.uniform(radius * 0.85, w - radius * 0.85), rng.uniform(radius * 0.85, h - radius * 0.85)
    D.draw_object(cv, look, rng, cx, cy, radius)
    return cv.image(rng)


def scene_image(rng: np.random.Generator, scene: str, base: int) -> Image.Image:
    """A Places-like image: the scene, plus 1-3 distractor objects of random looks."""
    w, h = image_size(rng, base)
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
    rng = dataset_rng(seed, "imagenet")
    wnids = IMAGENET_WNIDS[: size.imagenet_classes]
    out = root / FOLDERS["imagenet"]
    train_names: dict[str, list[str]] = {w: [] for w in wnids}
    counters = {w: 0 for w in wnids}
    for label in _per_class_split(rng, len(wnids), size.imagenet_train):
        wnid = wnids[label]
        counters[wnid] += int(rng.integers(1, 40))  # real ImageNet file numbers have gaps
        name = f"{wnid}_{counters[wnid]}.JPEG"
        write(out / "train" / wnid / name, jpeg(classification_image(rng, IMAGENET_LOOKS[label], size.image)))
        train_names[wnid].append(name)
    for k, label in enumerate(_per_class_split(rng, len(wnids), size.imagenet_val), start=1):
        img = classification_image(rng, IMAGENET_LOOKS[label], size.image)
        write(out / "val" / wnids[label] / f"ILSVRC2012_val_{k:08d}.JPEG", jpeg(img))
    # SimCLR-style subset lists. A literal 1% / 10% of a few dozen images would be empty, so the synthetic
    # lists keep a fixed fraction per class instead (at least 1 / 2 images per class), class-balanced.
    for fname, frac, least in (("1percent.txt", 0.1, 1), ("10percent.txt", 0.3, 2)):
        lines = []
        for wnid in wnids:
            names = train_names[wnid]
            k = max(least, int(round(frac * len(names))))
            lines += [names[i] for i in sorted(rng.choice(len(names), size=min(k, len(names)), replace=False))]
        order = rng.permutation(len(lines))  # the real lists are not sorted
        write(out / "subsets" / fname, "".join(lines[i] + "\n" for i in order))


# ----------------------------------------------------------------------------------------------- places
def write_places205(root: Path, size: SuiteSize, seed: int) -> None:
    rng = dataset_rng(seed, "places205")
    scenes = sorted(_spread(sorted(D.SCENES), size.places_classes))
    out = root / FOLDERS["places205"]
    images = out / PLACES_IMAGES_ROOT
    for split, per_class in (("train", size.places_train), ("val", size.places_val)):
        lines = []
        for label in _per_class_split(rng, len(scenes), per_class):
            rel = f"{scenes[label]}/gsun_{hex_id(rng)}.jpg"
            write(images / rel, jpeg(scene_image(rng, scenes[label], size.image)))
            lines.append(f"{rel} {label}\n")
        write(out / "trainvalsplit_places205" / f"{split}_places205.csv", "".join(sorted(lines)))


def _spread(names: list[str], k: int) -> list[str]:
    """k names spread over the list (so tiny and small both get varied scenes)."""
    if k >= len(names):
        return list(names)
    idx = np.round(np.linspace(0, len(names) - 1, k)).astype(int)
    return [names[i] for i in idx]


# ----------------------------------------------------------------------------------------------- inat
def write_inat2018(root: Path, size: SuiteSize, seed: int) -> None:
    rng = dataset_rng(seed, "inat2018")
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
            file_name = f"train_val2018/{sup}/{label}/{hex_id(rng)}.jpg"
            write(out / file_name, jpeg(img))
            images.append({"id": next_id, "width": img.width, "height": img.height, "file_name": file_name,
                           "license": 1, "rights_holder": "vicreg-bench synthetic"})  # fmt: skip
            annotations.append({"id": next_id, "image_id": next_id, "category_id": label})
            next_id += 1
        doc = {
            "info": {"year": 2018, "version": "synthetic", "description": "vicreg-bench synthetic iNat2018 layout",
                     "contributor": "vicreg-bench", "url": "", "date_created": "2018-02-01 00:00:00"},
            "images": images, "categories": categories, "annotations": annotations, "licenses": licenses,
        }  # fmt: skip
        write(out / f"{split}2018.json", json.dumps(doc))


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


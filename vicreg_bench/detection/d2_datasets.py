"""The detection splits, registered with detectron2 under the project's own names.

detectron2 registers its builtin datasets (`voc_2007_trainval`, `coco_2017_train`, ...) when it is imported,
from `$DETECTRON2_DATASETS` and with fixed metadata, COCO's 80 `thing_classes` among them. A COCO-layout
data root with other categories (the synthetic suite, a COCO subset) then fails in `load_coco_json`
("Attribute 'thing_classes' in the metadata of 'coco_2017_train' cannot be set to a different value"), and
a VOC root nested as `VOCdevkit/VOC2007/` (which vicreg-bench accepts) is not found. So the launcher
registers every split it uses from the data root it is given, under `vicreg_bench_<dataset>_<split>`, and
the builtin names of our configs are mapped to those (`project_names`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

PREFIX = "vicreg_bench_"
# detectron2's builtin name -> (vicreg-bench dataset, split): the splits our configs name
BUILTIN: dict[str, tuple[str, str]] = {
    "voc_2007_trainval": ("voc2007", "trainval"),
    "voc_2007_test": ("voc2007", "test"),
    "voc_2012_trainval": ("voc2012", "trainval"),
    "coco_2017_train": ("coco", "train2017"),
    "coco_2017_val": ("coco", "val2017"),
}


def project_name(dataset: str, split: str) -> str:
    return f"{PREFIX}{dataset}_{split}"


def register_split(dataset: str, split: str, data_root: str | Path) -> str:
    """Register one split with detectron2 and return its name; evaluator_type is set for `evaluator_for`
    ("pascal_voc" or "coco"). Again with the same root: nothing to do; with another root (one process,
    two data roots): registered anew, since detectron2 would otherwise keep reading the first one."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances, register_pascal_voc

    from vicreg_bench.data.layouts import dataset_dir
    from vicreg_bench.data.voc import VOC_CLASSES

    name = project_name(dataset, split)
    root = dataset_dir(dataset, Path(data_root)).resolve()
    if name in DatasetCatalog.list():
        if MetadataCatalog.get(name).get("vicreg_bench_root") == str(root):
            return name
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    if dataset == "coco":
        register_coco_instances(name, {}, str(root / "annotations" / f"instances_{split}.json"), str(root / split))
    elif dataset in ("voc2007", "voc2012"):
        register_pascal_voc(name, str(root), split, int(dataset[3:]), class_names=list(VOC_CLASSES))
        MetadataCatalog.get(name).set(evaluator_type="pascal_voc")
    else:
        raise ValueError(f"no detectron2 registration for dataset {dataset!r}")
    MetadataCatalog.get(name).set(vicreg_bench_root=str(root))
    return name


def project_names(names: Sequence[str], data_root: str | Path) -> tuple[str, ...]:
    """The config's dataset names with detectron2's builtin ones replaced by ours (registered from
    `data_root`); other names (datasets a user registered) are kept."""
    out = []
    for n in names:
        if n in BUILTIN:
            n = register_split(*BUILTIN[n], data_root)
        out.append(n)
    return tuple(out)


def evaluator_for(dataset_name: str, output_dir: str):
    """detectron2's evaluator for a registered dataset, chosen by its metadata's evaluator_type."""
    from detectron2.data import MetadataCatalog
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

    kind = MetadataCatalog.get(dataset_name).get("evaluator_type")
    if kind == "coco":
        return COCOEvaluator(dataset_name, output_dir=output_dir)
    if kind == "pascal_voc":
        return PascalVOCDetectionEvaluator(dataset_name)
    raise ValueError(f"dataset {dataset_name!r}: no evaluator for evaluator_type {kind!r} (expected coco or pascal_voc)")

"""Where each dataset lives under the data root, and the layout text `data check` prints when one is missing."""

from __future__ import annotations

from pathlib import Path

# dataset name -> folder under the data root (DESIGN.md "Task names and data layout")
FOLDERS: dict[str, str] = {
    "imagenet": "imagenet",
    "places205": "places205",
    "inat2018": "inat2018",
    "voc2007": "VOC2007",
    "voc2012": "VOC2012",
    "coco": "coco",
}
DATASETS: tuple[str, ...] = tuple(FOLDERS)

# Places205's official image root inside places205/ (the path its list files are relative to).
PLACES_IMAGES_ROOT = "data/vision/torralba/deeplearning/images256"

EXPECTED_LAYOUT: dict[str, str] = {
    "imagenet": """\
imagenet/
  train/<wnid>/*.JPEG          ImageFolder, one folder per class (n01440764 ...), class index = sorted wnids
  val/<wnid>/*.JPEG            same wnids (or: flat val/*.JPEG + imagenet/LOC_val_solution.csv, Kaggle form)
  subsets/1percent.txt         optional, SimCLR lists (lines "n04235860_14959.JPEG" -> train/n04235860/...)
  subsets/10percent.txt        optional; needed by the semi-supervised tasks (1% / 10% of the labels)""",
    "places205": f"""\
places205/
  trainvalsplit_places205/train_places205.csv   lines "a/abbey/gsun_<hash>.jpg 0" (path, SPACE, label 0..204)
  trainvalsplit_places205/val_places205.csv
  {PLACES_IMAGES_ROOT}/a/abbey/...  the images the lists name (or images256/ directly under places205/)
or, instead of the lists:
  train/<class>/*.jpg, val/<class>/*.jpg        ImageFolder, class index = sorted folder names""",
    "inat2018": """\
inat2018/
  train2018.json, val2018.json   official COCO-style json: images, annotations, categories (ids 0..8141)
  train_val2018/<supercategory>/<category id>/*.jpg   the image tree the json file_names point to""",
    "voc2007": """\
VOC2007/                       devkit layout (also accepted: VOCdevkit/VOC2007/)
  Annotations/<id>.xml         boxes with <difficult>
  JPEGImages/<id>.jpg
  ImageSets/Main/trainval.txt, test.txt
  ImageSets/Main/<class>_trainval.txt, <class>_test.txt   20 classes, lines "<id> 1|-1|0" (for the VOC07 SVMs)""",
    "voc2012": """\
VOC2012/                       devkit layout (also accepted: VOCdevkit/VOC2012/)
  Annotations/<id>.xml
  JPEGImages/<id>.jpg
  ImageSets/Main/trainval.txt""",
    "coco": """\
coco/
  annotations/instances_train2017.json, instances_val2017.json
  train2017/*.jpg, val2017/*.jpg""",
}


def dataset_dir(name: str, data_root: Path) -> Path:
    """The dataset's folder; VOC also accepts the devkit's `VOCdevkit/VOC20xx/` nesting."""
    folder = Path(data_root) / FOLDERS[name]
    if name.startswith("voc") and not folder.is_dir():
        nested = Path(data_root) / "VOCdevkit" / FOLDERS[name]
        if nested.is_dir():
            return nested
    return folder

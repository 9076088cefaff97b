"""The two dataset interfaces every reader implements, and the manifest that proves which data a run used.

Classification: item i is `(image, target, i)`; target is a class index (int) or, for VOC07's multi-label
SVM, an int8 vector in VOC's own encoding (1 present, -1 absent, 0 difficult).
Detection: item i is `(image, DetectionTarget, i)` with boxes in the annotation file's own pixel coordinates.

A corrupt image either raises `BadImageError` naming the file (policy "error", the default) or, with
policy "skip", yields a `BadItem` in place of the item; `collate_skipping_bad` drops those and returns
them, so the caller can count and list the skipped files in the results JSON.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

BAD_IMAGE_POLICIES = ("error", "skip")


class BadImageError(RuntimeError):
    """An image that cannot be decoded: the message names the file and the decoder's error."""


@dataclass(frozen=True)
class BadItem:
    """Stands in for an undecodable image under policy "skip" (picklable, so it crosses DataLoader workers)."""

    index: int
    path: str
    error: str


def load_rgb(path: Path) -> Image.Image:
    """Decode an image fully (so truncation is caught here, not later) and convert to RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises many types; all mean "this file is not a usable image"
        raise BadImageError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from e


def manifest_sha256(entries: Sequence[tuple[str, Any]]) -> str:
    """sha256 of the sorted (relative path, label) list, canonical JSON; equal hashes = same data."""
    rows = sorted((str(p), _jsonable(lbl)) for p, lbl in entries)
    blob = json.dumps(rows, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _jsonable(label: Any) -> Any:
    if isinstance(label, np.ndarray):
        return label.tolist()
    if isinstance(label, (list, tuple)):
        return [_jsonable(x) for x in label]
    if isinstance(label, np.generic):
        return label.item()
    return label


class _ImageDataset(ABC):
    """What both kinds share: images under `root`, `samples` of (relative path, target), the bad-image
    policy, and the manifest hash. Subclasses say how the transform applies and what the manifest lists."""

    name: str = "images"

    def __init__(
        self,
        root: Path,
        samples: list[tuple[str, Any]],
        classes: list[str],
        *,
        split: str,
        transform: Callable | None = None,
        on_bad_image: str = "error",
    ):
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
        self.root = Path(root)
        self.samples = samples  # (path relative to root, target)
        self.classes = classes
        self.split = split
        self.transform = transform
        self.on_bad_image = on_bad_image

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        rel, target = self.samples[i]
        try:
            img = load_rgb(self.root / rel)
        except BadImageError as e:
            if self.on_bad_image == "skip":
                return BadItem(i, str(self.root / rel), str(e))
            raise
        if self.transform is not None:
            img, target = self._apply_transform(img, target)
        return img, target, i

    @abstractmethod
    def _apply_transform(self, img: Image.Image, target: Any) -> tuple[Any, Any]:
        """The transformed (image, target)."""

    @abstractmethod
    def manifest(self) -> list[tuple[str, Any]]:
        """The sorted (relative path, label) list whose hash identifies the data."""

    def manifest_sha256(self) -> str:
        return manifest_sha256(self.manifest())


class ClassificationDataset(_ImageDataset):
    """Images with a class index (or a VOC label vector). Subclasses fill `root`, `samples`, `classes`."""

    name: str = "classification"

    def _apply_transform(self, img: Image.Image, target: Any) -> tuple[Any, Any]:
        return self.transform(img), target  # image-only transforms

    @property
    def targets(self) -> list[Any]:
        return [t for _, t in self.samples]

    def manifest(self) -> list[tuple[str, Any]]:
        return sorted((rel, _jsonable(t)) for rel, t in self.samples)


@dataclass
class DetectionTarget:
    boxes: np.ndarray  # (N, 4) float32 xmin, ymin, xmax, ymax in the annotation's pixel coordinates
    classes: np.ndarray  # (N,) int64 index into the dataset's `classes`
    difficult: np.ndarray  # (N,) bool (VOC difficult; COCO iscrowd)
    masks: list[Any] | None = None  # COCO: per object, polygons (list of lists) or an RLE dict
    image_id: Any = None  # VOC: "000005"; COCO: integer image id
    width: int = 0
    height: int = 0
    extra: dict = field(default_factory=dict)


class DetectionDataset(_ImageDataset):
    """Images with boxes, classes, difficult flags and (COCO) masks. Subclasses fill `samples`."""

    name: str = "detection"

    def _apply_transform(self, img: Image.Image, target: DetectionTarget) -> tuple[Any, DetectionTarget]:
        return self.transform(img, target)  # detection transforms move the boxes with the image

    def manifest(self) -> list[tuple[str, Any]]:
        return sorted(
            (rel, [t.boxes.round(2).tolist(), t.classes.tolist(), t.difficult.astype(int).tolist()])
            for rel, t in self.samples
        )


def collate_skipping_bad(batch: list):
    """Default-collate the good items; return `(collated_or_None, bad_items)`."""
    from torch.utils.data import default_collate

    good = [b for b in batch if not isinstance(b, BadItem)]
    bad = [b for b in batch if isinstance(b, BadItem)]
    return (default_collate(good) if good else None), bad

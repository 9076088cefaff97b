"""Sizes of the synthetic suite and the small helpers its writers share (seeded RNGs, JPEG bytes, files)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SIZES = ("tiny", "small")
BACKGROUND_MUTE = 0.5  # scenes behind labelled objects are half-greyed, so the objects carry the signal


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


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)


def hex_id(rng: np.random.Generator) -> str:
    return hashlib.md5(rng.bytes(16)).hexdigest()


def dataset_rng(seed: int, dataset: str) -> np.random.Generator:
    return np.random.default_rng([seed, int.from_bytes(dataset.encode()[:8].ljust(8, b"\0"), "little")])


def image_size(rng: np.random.Generator, base: int) -> tuple[int, int]:
    w, h = [(base, base), (base * 9 // 8, base), (base, base * 9 // 8)][rng.integers(3)]
    return w, h


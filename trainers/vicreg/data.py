"""Training data: any ImageFolder, a deterministic global batch order, per-sample seeded augmentation.

Data order: each epoch shuffles the image indices with a generator seeded by (seed, epoch), cuts the
permutation into global batches of `batch_size` (the incomplete last one is dropped, so every step has
the full global batch that the covariance term divides by), and rank r of W takes the r-th contiguous
slice of each global batch. Gathering the ranks' projections in rank order therefore rebuilds the
exact global batch one process would see. The state needed to resume mid-epoch is just
(seed, epoch, step within the epoch).

Augmentation randomness: the sampler hands the dataset (index, epoch) keys and the dataset seeds a
numpy generator from (seed, epoch, index), so the views are the same whichever process or loader
worker builds them.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision.datasets.folder import IMG_EXTENSIONS, ImageFolder

from vicreg_bench.errors import UserError

from .augment import TwoViewTransform

MAX_SUBSTITUTES = 10


def resolve_image_folder(data: str | Path) -> Path:
    """`--data DIR`: an ImageFolder root (class subfolders), or a root holding `train/` (the official
    `--data-dir` layout, e.g. ImageNet or the synthetic suite's `imagenet/`), whose `train/` is used."""
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserError(f"--data {data}: not a directory (expected an ImageFolder: one subfolder of images per class)")
    subdirs = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subdirs and subdirs <= {"train", "val", "subsets", "test"}:
        return root / "train"
    return root


def _list_images(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    try:
        folder = ImageFolder(str(root), allow_empty=True)
        samples, classes = list(folder.samples), list(folder.classes)
    except FileNotFoundError:
        samples, classes = [], []
    if not samples:  # a flat folder of images is fine for self-supervised training
        flat = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
        samples, classes = [(str(p), 0) for p in flat], [root.name]
    return samples, classes


class TwoViewImageFolder(Dataset):
    """Images of an ImageFolder, each returned as two augmented views and its class index (unused by
    the loss). Items are addressed by (index, epoch) keys from `GlobalBatchSampler`."""

    def __init__(self, root: str | Path, transform: TwoViewTransform, seed: int = 0):
        self.root = resolve_image_folder(root)
        self.samples, self.classes = _list_images(self.root)
        if not self.samples:
            raise UserError(
                f"--data {root}: no images found under {self.root} (expected class subfolders with "
                f"{', '.join(sorted(IMG_EXTENSIONS))} files)"
            )
        self.transform = transform
        self.seed = seed
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def sample_rng(self, index: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index])

    def _load(self, index: int) -> tuple[Image.Image, int]:
        """The image at `index`; an unreadable file is replaced by the next readable one (with a warning),
        deterministically, so a corrupt file in a huge dataset does not kill a long run."""
        for attempt in range(MAX_SUBSTITUTES + 1):
            path, label = self.samples[(index + attempt) % len(self.samples)]
            try:
                with Image.open(path) as img:
                    return img.convert("RGB"), label
            except OSError as exc:
                if path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(f"--data: cannot read image {path} ({exc}); using the next image in its place", stacklevel=2)
        raise UserError(f"--data: {MAX_SUBSTITUTES + 1} consecutive images from {self.samples[index][0]} cannot be read")

    def __getitem__(self, key: tuple[int, int] | int):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        img, label = self._load(index)
        view_a, view_b = self.transform(img, self.sample_rng(index, epoch))
        return view_a, view_b, label


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's slice of every global batch of the epoch, starting at `start_step`."""

    def __init__(self, num_samples: int, global_batch: int, *, rank: int = 0, world_size: int = 1, seed: int = 0):
        if global_batch % world_size:
            raise UserError(f"--batch-size {global_batch}: must be divisible by the number of processes ({world_size})")
        if num_samples < global_batch:
            raise UserError(
                f"--batch-size {global_batch}: larger than the dataset ({num_samples} images); lower --batch-size"
            )
        self.num_samples = num_samples
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.num_samples // self.global_batch

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch = epoch
        self.start_step = start_step

    def epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator()
        g.manual_seed(int(self.seed) * 1_000_003 + int(epoch))
        return torch.randperm(self.num_samples, generator=g)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order(self.epoch).tolist()
        for step in range(self.start_step, self.steps_per_epoch):
            start = step * self.global_batch + self.rank * self.local_batch
            yield [(i, self.epoch) for i in order[start : start + self.local_batch]]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

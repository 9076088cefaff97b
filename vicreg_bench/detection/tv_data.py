"""The torchvision engine's data: train sets joined into one, seeded augmentation per image, the endless
orientation-grouped batch stream (detectron2's ASPECT_RATIO_GROUPING), and the test view."""

from __future__ import annotations

import itertools
from typing import Any, Sequence

import numpy as np
import torch

from vicreg_bench.data.base import BadItem
from vicreg_bench.detection.transforms import InputSizes, eval_image, train_sample


class ConcatDetection:
    """Several detection datasets seen as one (VOC2007 trainval + VOC2012 trainval)."""

    def __init__(self, datasets: Sequence[Any]):
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[Any, int]:
        k = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.datasets[k], i - int(self.offsets[k])

    def target(self, i: int):
        ds, j = self.locate(i)
        return ds.samples[j][1]

    def __getitem__(self, i: int):
        ds, j = self.locate(i)
        return ds[j]


class TrainView(torch.utils.data.Dataset):
    """Item `(index, aug_seed)` -> (uint8 image, torchvision target), augmented with that seed."""

    def __init__(self, data: ConcatDetection, settings: Any):
        self.data = data
        self.settings = settings

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key):
        i, seed = key
        item = self.data[i]
        if isinstance(item, BadItem):
            return None
        img, target, _ = item
        s = self.settings
        return train_sample(img, target, np.random.default_rng(seed), s.sizes, box_offset=s.box_offset, with_masks=s.with_masks, drop_crowd=s.drop_crowd)


def trainable_indices(data: ConcatDetection, drop_crowd: bool) -> np.ndarray:
    """Images with at least one usable object (detectron2 FILTER_EMPTY_ANNOTATIONS; crowd-only COCO images out)."""
    keep = []
    for i in range(len(data)):
        t = data.target(i)
        usable = ~np.asarray(t.difficult, dtype=bool) if drop_crowd else np.ones(len(t.classes), dtype=bool)
        if usable.any():
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


class GroupedInfiniteBatches:
    """Endless per-process batches of `(index, aug_seed)`, grouped by orientation, skipping `start_batch`."""

    def __init__(self, indices: np.ndarray, landscape: np.ndarray, batch: int, rank: int, world: int, seed: int, start_batch: int = 0):
        if len(indices) == 0:
            raise ValueError("no training image has a usable object")
        self.indices, self.landscape, self.batch = indices, landscape, batch
        self.rank, self.world, self.seed, self.start_batch = rank, world, seed, start_batch

    def __iter__(self):
        buckets: dict[bool, list] = {True: [], False: []}
        produced = 0
        for epoch in itertools.count():
            perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.indices))
            for pos in range(self.rank, len(perm), self.world):
                i = int(self.indices[perm[pos]])
                aug_seed = int(np.random.SeedSequence([self.seed, epoch, pos]).generate_state(1)[0])
                bucket = buckets[bool(self.landscape[i])]
                bucket.append((i, aug_seed))
                if len(bucket) == self.batch:
                    if produced >= self.start_batch:
                        yield list(bucket)
                    produced += 1
                    bucket.clear()


def collate(batch: list):
    good = [b for b in batch if b is not None]
    return [b[0] for b in good], [b[1] for b in good]



class TestView(torch.utils.data.Dataset):
    __test__ = False  # not a pytest class

    def __init__(self, dataset: Any, sizes: InputSizes, indices: Sequence[int]):
        self.dataset, self.sizes, self.indices = dataset, sizes, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        item = self.dataset[i]
        if isinstance(item, BadItem):
            return i, None, None
        img, _, _ = item
        tensor, orig_hw = eval_image(img, self.sizes)
        return i, tensor, orig_hw

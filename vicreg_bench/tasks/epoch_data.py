"""What the training loop iterates over: the same global batches and augmentations for 1 or N processes.

Every process draws the same seeded permutation of an epoch and takes a strided share of each global
batch; every image's random augmentation is seeded by (seed, epoch, index). So 1 or N processes, 0 or 8
DataLoader workers, a fresh or a resumed run, all train on the same augmented images.
"""

from __future__ import annotations

import numpy as np
import torch

from vicreg_bench import distributed as D


class EpochBatches(torch.utils.data.Sampler):
    """This process's part of each global batch of one epoch's seeded permutation.

    Every process draws the same permutation (seed, epoch) and takes a strided slice of each global batch,
    so 1 or N processes see the same global batches. A last batch too small to give every process at least
    2 images (BatchNorm in training mode needs 2) is dropped. `global_sizes` lists the global batch sizes,
    so a loss can be normalised by the global batch whatever its split between processes.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size = rank, world_size
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        perm = torch.randperm(n, generator=g).tolist()
        self.global_batches: list[list[int]] = []
        for b in range(0, n, batch_size):
            chunk = perm[b:b + batch_size]
            if len(chunk) < 2 * world_size and b > 0:
                break
            self.global_batches.append(chunk)
        self.global_sizes = [len(c) for c in self.global_batches]

    def __iter__(self):
        return iter([c[self.rank::self.world_size] for c in self.global_batches])

    def __len__(self) -> int:
        return len(self.global_batches)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (int(seed) * 1_000_003 + epoch * 1009 + rank) % (2**63 - 1)


class SeededAugmentation(torch.utils.data.Dataset):
    """Seeds the augmentation RNG from (seed, epoch, image index) before each image is transformed.

    So an image gets the same random crop and flip whichever process or DataLoader worker loads it:
    1 or N processes, 0 or 8 workers, a fresh or a resumed run all train on the same augmented images.
    """

    def __init__(self, dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        torch.manual_seed((epoch_seed(self.seed, self.epoch) * 7_919 + int(i) * 104_729 + 1) % (2**63 - 1))
        return self.dataset[i]


def epoch_loader(dataset, *, batch_size: int, seed: int, epoch: int, workers: int, device: str):
    """DataLoader over this process's share of an epoch; `.batch_sampler.global_sizes` has the global batches."""
    from vicreg_bench.data.base import collate_skipping_bad

    sampler = EpochBatches(len(dataset), batch_size, seed, epoch, D.get_rank(), D.get_world_size())
    return torch.utils.data.DataLoader(
        SeededAugmentation(dataset, seed, epoch),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        collate_fn=collate_skipping_bad,
        prefetch_factor=4 if workers > 0 else None,
    )


def feature_batches(fs, device: str, batch_size: int = 4096, shard: bool = False):
    """(features on device, labels) batches of a FeatureSet; with `shard`, only this process's share."""
    idx = np.arange(fs.num_images)
    if shard:
        idx = idx[D.get_rank()::D.get_world_size()]
    for b in range(0, len(idx), batch_size):
        sel = idx[b:b + batch_size]
        yield torch.from_numpy(fs.features[sel]).to(device), torch.from_numpy(fs.labels[sel])


def image_batches(dataset, device: str, batch_size: int, workers: int):
    """This process's share of a dataset as (images, labels) batches (for evaluation)."""
    from vicreg_bench.data.base import collate_skipping_bad

    idx = list(range(D.get_rank(), len(dataset), D.get_world_size()))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, idx), batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=str(device).startswith("cuda"), collate_fn=collate_skipping_bad)
    for good, _bad in loader:
        if good is not None:
            images, targets, _ = good
            yield images, targets

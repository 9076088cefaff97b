"""`FeatureSet`: the frozen features of one dataset split, as the extractor hands them to tasks."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from vicreg_bench.fileio import atomic_path


@dataclass
class FeatureSet:
    """Frozen features of one dataset split, in dataset order, without the images that were skipped."""

    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64 class indices, or (N, C) int8 VOC vectors (1 / -1 / 0)
    paths: list[str]  # relative to the dataset root, aligned with `features`
    manifest_sha256: str
    skipped: list[dict] = field(default_factory=list)  # [{"index", "path", "error"}] under --on-bad-image skip
    class_names: list[str] = field(default_factory=list)
    dataset: str = ""
    split: str = ""
    transform: dict = field(default_factory=dict)  # {"name", ...parameters}
    key: str = ""  # cache key
    throughput: dict = field(default_factory=dict)  # of the extraction that produced it
    from_cache: bool = False

    @property
    def num_images(self) -> int:
        return int(self.features.shape[0])

    def save_npz(self, path: str | os.PathLike) -> None:
        """The DESIGN.md feature file: features, labels, class_names (+ paths), written atomically."""
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    features=self.features.astype(np.float32, copy=False),
                    labels=self.labels,
                    class_names=np.array(self.class_names, dtype=str),
                    paths=np.array(self.paths, dtype=str),
                )


"""What every benchmark task receives and returns, so `run` can drive them all the same way.

A task is a function `run_<task>(ctx: TaskContext) -> TaskOutput`. It reads data through the readers in
`vicreg_bench.data`, frozen features through `ctx.features` (the shared on-disk cache), keeps resumable
state under `ctx.work_dir`, and returns metrics with the fixed names of DESIGN.md. `run` turns the output
into the results JSON entry (`vicreg_bench.results.task_entry`) and records failures and skips itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


@dataclass
class TaskContext:
    ckpt_path: Path
    state_dict: dict  # torchvision names, no fc (vicreg_bench.checkpoints.load_backbone)
    ckpt_info: Any  # vicreg_bench.checkpoints.BackboneInfo: arch, method, sha256, normalize_input, ...
    data_root: Path
    work_dir: Path  # this task's own folder under the run's output dir: checkpoints, logs, resume state
    cache_dir: Path  # feature cache shared by tasks and runs
    device: str = "cpu"  # "cpu" or "cuda[:i]"
    protocol: str = "paper"  # "paper" | "fast"
    seed: int = 0
    options: dict = field(default_factory=dict)  # run flags: det_engine, svm_variant, epochs, batch_size, ...
    # get_features(dataset, split, transform_name) -> vicreg_bench.features.FeatureSet (cached extraction)
    features: Callable[..., Any] | None = None
    # distributed info (torchrun): rank / world size of this process
    rank: int = 0
    world_size: int = 1


@dataclass
class TaskOutput:
    metrics: dict  # fixed names: top1/top5, mAP + per_class_AP, k20_top1..., AP/AP50/AP75, bbox_AP..., segm_AP...
    protocol_name: str  # e.g. "linear_paper", "linear_fast", "knn_dino", "svm_vissl", "det_torchvision_c4"
    protocol_params: dict  # every setting that changes the numbers (hashed into the results JSON)
    dataset: dict  # {"name", "splits", "num_images", "manifest_sha256"} (dicts keyed by split role)
    engine: str | None = None  # "detectron2" | "torchvision" for detection; else None
    throughput: dict = field(default_factory=dict)  # e.g. {"extract_images_per_s": ..., "train_iter_s": ...}
    extra: dict = field(default_factory=dict)  # anything else worth keeping (best epoch, skipped files, ...)

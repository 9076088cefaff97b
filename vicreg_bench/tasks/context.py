"""What every benchmark task receives and returns, so `run` can drive them all the same way.

A task is a function `run(ctx: TaskContext) -> TaskOutput` registered with
`vicreg_bench.tasks.registry.register_task`. It reads data through the readers in `vicreg_bench.data`,
frozen features through `ctx.features` (the shared on-disk cache), keeps resumable state under
`ctx.work_dir`, and returns metrics with the fixed names of DESIGN.md. `run` turns the output into the
results JSON entry (`vicreg_bench.results.entry.task_entry`) and records failures and skips itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vicreg_bench.tasks.options import TaskOptions


class TaskSkipped(Exception):
    """Raised by a task's protocol or run when it does not apply to this backbone (e.g. detection on a ViT):
    the task is recorded as `skipped` with this message, and the run goes on."""


@dataclass(frozen=True)
class RunSettings:
    """Run-wide settings every task shares: image sizes, compute dtype, data loading (the run's flags)."""

    image_size: int = 224  # crop size of the transforms (paper 224)
    resize: int | None = None  # resize before the crop (None: image_size * 256 / 224)
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    workers: int | None = None  # DataLoader workers per process (None: from the CPU count)
    on_bad_image: str = "error"  # error | skip


@dataclass
class TaskContext:
    ckpt_path: Path
    state_dict: dict  # torchvision names, no fc (vicreg_bench.checkpoints.load_backbone)
    ckpt_info: Any  # vicreg_bench.checkpoints.BackboneInfo: arch, method, sha256, normalize_input, ...
    data_root: Path
    work_dir: Path  # this task's own folder under the run's output dir: checkpoints, logs, resume state
    cache_dir: Path  # feature cache shared by tasks and runs
    options: TaskOptions  # this task's typed options (its registration's `options` class)
    settings: RunSettings = field(default_factory=RunSettings)
    device: str = "cpu"  # "cpu" or "cuda[:i]"
    protocol: str = "paper"  # "paper" | "fast"
    seed: int = 0
    # (dataset, split, transform_name) -> vicreg_bench.features.FeatureSet (cached extraction)
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

"""Build a task's TaskContext in a test: typed options from plain keyword values, as `run` parses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vicreg_bench.tasks.catalog import all_tasks, task_context
from vicreg_bench.tasks.context import RunSettings, TaskContext
from vicreg_bench.tasks.options import RawOption, resolve_options


def typed_options(task: str, **options: Any):
    """The task's typed options with these values (raises OptionError like `--option` would)."""
    spec = all_tasks()[task]
    return resolve_options([spec], [RawOption(k, v, f"test option {k}") for k, v in options.items()])[task]


def task_ctx(task: str, state: dict, info: Any, data: Path, work: Path, *, protocol: str = "paper",
             image_size: int = 224, resize: int | None = None, workers: int | None = 0, features: Any = None,
             device: str = "cpu", seed: int = 0, on_bad_image: str = "error", **options: Any) -> TaskContext:
    return task_context(
        task, state, info, data_root=data, work_dir=work / "work" / task, cache_dir=work / "cache", options=options,
        settings=RunSettings(image_size=image_size, resize=resize, workers=workers, on_bad_image=on_bad_image),
        device=device, protocol=protocol, seed=seed, features=features)

"""Task names -> the function that runs them, the datasets they read, and the suites they belong to.

`run` resolves `--suite` / `--tasks` here, runs the data preflight on `datasets_for(tasks)` before any
compute, and imports a task's module only when the task runs (detection pulls in heavy engines).
A task may also name a `protocol` function `(ctx) -> (protocol_name, params)` that says, before anything
runs, which protocol it would run: `run` compares its hash with the results already on disk to skip
finished tasks. Suites follow DESIGN.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from vicreg_bench.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: str
    function: str
    datasets: tuple[str, ...]  # dataset names the preflight must find (vicreg_bench.data.check)
    summary: str
    has_fast: bool  # a `--protocol fast` variant exists (on cached features)
    protocol: str | None = None  # function (ctx) -> (protocol_name, params), in the same module

    def load(self) -> Callable:
        return getattr(importlib.import_module(self.module), self.function)

    def load_protocol(self) -> Callable | None:
        return getattr(importlib.import_module(self.module), self.protocol) if self.protocol else None


_CLS = "vicreg_bench.tasks.classification"
_SEMI = "vicreg_bench.tasks.semisup"
_DET = "vicreg_bench.tasks.detection"

# Run order: cheap frozen-feature tasks first (a crash loses least), then training, then detection.
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("imagenet_knn", _CLS, "run_imagenet_knn", ("imagenet",),
                 "weighted k-NN on ImageNet (DINO protocol)", True, "protocol_imagenet_knn"),
        TaskSpec("voc07_svm", _CLS, "run_voc07_svm", ("voc2007",),
                 "VOC07 linear SVMs (VISSL protocol)", True, "protocol_voc07_svm"),
        TaskSpec("imagenet_linear", _CLS, "run_imagenet_linear", ("imagenet",),
                 "ImageNet linear probe", True, "protocol_imagenet_linear"),
        TaskSpec("places205_linear", _CLS, "run_places205_linear", ("places205",),
                 "Places205 linear probe", True, "protocol_places205_linear"),
        TaskSpec("inat18_linear", _CLS, "run_inat18_linear", ("inat2018",),
                 "iNaturalist 2018 linear probe", True, "protocol_inat18_linear"),
        TaskSpec("imagenet_semisup_1pct", _SEMI, "run_imagenet_semisup_1pct", ("imagenet",),
                 "fine-tuning on 1% of the ImageNet labels", False, "protocol_imagenet_semisup_1pct"),
        TaskSpec("imagenet_semisup_10pct", _SEMI, "run_imagenet_semisup_10pct", ("imagenet",),
                 "fine-tuning on 10% of the ImageNet labels", False, "protocol_imagenet_semisup_10pct"),
        TaskSpec("voc07_det", _DET, "run_voc07_det", ("voc2007", "voc2012"),
                 "VOC07+12 Faster R-CNN R50-C4, tested on VOC07", False, "protocol_voc07_det"),
        TaskSpec("coco_det", _DET, "run_coco_det", ("coco",),
                 "COCO Mask R-CNN R50-FPN, box and mask AP", False, "protocol_coco_det"),
    ]
}

SUITES: dict[str, tuple[str, ...]] = {
    "table1": ("imagenet_linear", "imagenet_semisup_1pct", "imagenet_semisup_10pct"),
    "table2": ("places205_linear", "voc07_svm", "inat18_linear", "voc07_det", "coco_det"),
    "knn": ("imagenet_knn",),
    "all": tuple(TASKS),
    # The classification tasks on cached features, no augmentation (forces --protocol fast).
    "fast": ("imagenet_knn", "voc07_svm", "imagenet_linear", "places205_linear", "inat18_linear"),
}


def resolve_tasks(suite: str | None = None, tasks: str | list[str] | None = None) -> list[str]:
    """`--tasks a,b` wins over `--suite`; default suite `all`. Unknown names are a UserError listing the valid ones."""
    if tasks:
        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
        unknown = [t for t in names if t not in TASKS]
        if unknown:
            raise UserError(f"--tasks: unknown task(s) {', '.join(unknown)}; expected some of {', '.join(TASKS)}")
        if not names:
            raise UserError("--tasks: empty task list")
        seen: list[str] = []
        for t in names:
            if t not in seen:
                seen.append(t)
        # keep the registry's run order
        return [t for t in TASKS if t in seen]
    suite = suite or "all"
    if suite not in SUITES:
        raise UserError(f"--suite: unknown suite {suite!r}; expected one of {', '.join(SUITES)}")
    return list(SUITES[suite])


def datasets_for(tasks: list[str]) -> list[str]:
    """The datasets the given tasks read, each once, in a stable order."""
    out: list[str] = []
    for t in tasks:
        for d in TASKS[t].datasets:
            if d not in out:
                out.append(d)
    return out


def suites_of(task: str) -> list[str]:
    return [s for s, members in SUITES.items() if task in members]

"""The task registry: every fact about a task, registered where the task is defined.

A task module decorates its run function (as timm's `register_model` does):

    @register_task(name="imagenet_knn", summary="...", protocol=protocol_imagenet_knn, options=KnnOptions,
                   data={"imagenet": (("classification", "train"), ("classification", "val"))}, ...)
    def run_imagenet_knn(ctx: TaskContext) -> TaskOutput: ...

Everyone else reads the registration and never spells a task name: `run` (suites, order, options, plans),
the data preflight (datasets and splits), the results schema (metric rule), `compare` (columns, paper
settings, engine), the published tables (which paper column is which metric), the demo (its budgets and
lanes) and a cluster launcher (resources). `vicreg_bench.tasks.catalog` imports the built-in task modules
so that every registration has happened before anyone reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from vicreg_bench.tasks.options import TaskOptions

SPLIT_KINDS = ("classification", "detection")


@dataclass(frozen=True)
class Column:
    """One column of `compare`'s table: a metric of the task, under a group header (the paper's table)."""

    metric: str
    group: int | str  # the VICReg paper's table number (1, 2 or 5), or a group name for tasks outside the paper
    label: str  # short header
    order: int  # position among all columns (the paper's left-to-right order)


@dataclass(frozen=True)
class PublishedKey:
    """Which printed column of a published table holds this task's `metric`."""

    paper: str  # key of the paper in vicreg_bench.published.PAPERS
    table: int | str  # the table's number (or short name, see vicreg_bench.published)
    column: str  # the column name as printed
    metric: str


@dataclass(frozen=True)
class Resources:
    """What one run of the task needs at paper scale (a cluster launcher sizes its job from this)."""

    device: str = "gpu"  # "gpu" or "cpu"
    gpus: int = 1
    cpus: int = 10
    mem_gb: int = 64
    hours: float = 24.0


@dataclass(frozen=True)
class DemoPreset:
    """A task's scale-down in `vicreg-bench demo --size NAME`: option values, and whether it runs in a
    `vicreg-bench run` of its own (beside the others, to use both cores)."""

    options: Mapping[str, Any] = field(default_factory=dict)
    own_run: bool = False


@dataclass(frozen=True)
class TaskSpec:
    name: str
    summary: str
    run: Callable[..., Any]  # (TaskContext) -> TaskOutput
    protocol: Callable[..., tuple[str, dict]]  # (TaskContext) -> (protocol name, params), before running
    options: type[TaskOptions]
    data: Mapping[str, tuple[tuple[str, str], ...]]  # dataset -> ((reader kind, split), ...) the task reads
    metrics: tuple[str, ...]  # the fixed metric names it reports (DESIGN.md)
    headline: tuple[str, ...]  # the metrics a "does it beat random init" check compares
    result_schema: str = "task"  # the $defs rule of results_schema.json checking its metrics
    columns: tuple[Column, ...] = ()
    paper_settings: Mapping[str, Any] = field(default_factory=dict)  # compare marks cells that differ
    published: tuple[PublishedKey, ...] = ()
    suites: tuple[str, ...] = ()  # besides `all`; `fast` is implied by has_fast
    order: int = 100  # run order: cheap frozen-feature tasks first (a crash loses least), detection last
    has_fast: bool = False  # a `--protocol fast` variant exists (on cached features)
    paper_engine: str | None = None  # the engine behind the published numbers, where engines differ
    resources: Resources = Resources()
    demo: Mapping[str, DemoPreset] = field(default_factory=dict)  # demo size -> preset

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(self.data)


_REGISTRY: dict[str, TaskSpec] = {}


def register_task(**facts: Any) -> Callable[[Callable], Callable]:
    """Decorator: register the decorated run function as the task `facts["name"]` (see TaskSpec)."""

    def decorate(run: Callable) -> Callable:
        spec = TaskSpec(run=run, **facts)
        check_spec(spec)
        if spec.name in _REGISTRY and _REGISTRY[spec.name].run is not run:
            raise ValueError(f"task {spec.name!r} is registered twice ({_REGISTRY[spec.name].run.__module__} and "
                             f"{run.__module__})")
        _REGISTRY[spec.name] = spec
        return run

    return decorate


def unregister_task(name: str) -> None:
    """Remove a registration (tests that register a task of their own)."""
    _REGISTRY.pop(name, None)


def check_spec(spec: TaskSpec) -> None:
    """Registration mistakes fail at import, not in the middle of a run."""
    if not spec.name.isidentifier():
        raise ValueError(f"task name {spec.name!r}: expected letters, digits and underscores")
    for ds, reqs in spec.data.items():
        for kind, _split in reqs:
            if kind not in SPLIT_KINDS:
                raise ValueError(f"task {spec.name}: data {ds}: reader kind {kind!r} is not one of {SPLIT_KINDS}")
    for m in spec.headline + tuple(c.metric for c in spec.columns) + tuple(p.metric for p in spec.published):
        if m not in spec.metrics:
            raise ValueError(f"task {spec.name}: metric {m!r} is not one of its metrics {spec.metrics}")
    if not issubclass(spec.options, TaskOptions):
        raise ValueError(f"task {spec.name}: options must subclass TaskOptions")


def registered() -> dict[str, TaskSpec]:
    """Every task registered so far, in run order (`order`, then registration order)."""
    items = sorted(enumerate(_REGISTRY.values()), key=lambda p: (p[1].order, p[0]))
    return {spec.name: spec for _, spec in items}

"""What a run will do, decided before any compute: its configuration, each task's typed options and
protocol, which tasks are already done (same protocol hash and seed), and whose data is missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vicreg_bench.errors import UserError
from vicreg_bench.results.entry import protocol_hash
from vicreg_bench.runner.summary import error_reason
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.context import RunSettings, TaskContext, TaskSkipped
from vicreg_bench.tasks.options import RawOption, TaskOptions, resolve_options
from vicreg_bench.tasks.registry import TaskSpec


@dataclass
class RunConfig:
    """Everything `vicreg-bench run` was asked, as the runner needs it (the CLI builds one per checkpoint)."""

    ckpt: Path
    out: Path
    tasks: list[str]
    suite: str  # recorded in the results: the suite name, or "custom" for --tasks
    protocol: str = "paper"  # paper | fast
    data_root: Path = Path(".")
    cache_dir: Path | None = None  # None: the default feature cache
    device: str = "auto"
    seed: int = 0
    method: str | None = None
    key: str | None = None
    label: str | None = None
    options: list[RawOption] = field(default_factory=list)
    settings: RunSettings = field(default_factory=RunSettings)
    extract_batch_size: int | None = None
    shard_size: int = 4096
    force: bool = False
    skip_missing: bool = False


def task_options(tasks: list[str], raw: list[RawOption], ignored: list[str] | None = None) -> dict[str, TaskOptions]:
    """Each task's typed options; a misspelt key or mistyped value is a UserError naming it. Options that
    only tasks not being run use are listed in `ignored`."""
    specs = all_tasks()
    return resolve_options([specs[t] for t in tasks], raw, specs.values(), ignored)


@dataclass
class TaskPlan:
    spec: TaskSpec
    protocol: tuple[str, dict] | None  # (name, params) it would record; None when planning failed or skips
    error: str | None = None  # planning failed for a reason that is not the user's (recorded as failed)
    skip: str | None = None  # the task does not apply to this backbone (recorded as skipped, with this reason)

    @property
    def hash(self) -> str | None:
        return protocol_hash(*self.protocol) if self.protocol else None


def plan_task(spec: TaskSpec, ctx: TaskContext) -> TaskPlan:
    """The protocol a task would run. A bad option is raised (the run stops before any compute); any other
    error (an engine that cannot be imported, say) is recorded and the other tasks still run."""
    try:
        return TaskPlan(spec, spec.protocol(ctx))
    except UserError:
        raise
    except TaskSkipped as e:
        return TaskPlan(spec, None, skip=str(e))
    except Exception as e:
        return TaskPlan(spec, None, error_reason(e))


def is_done(entry: dict | None, plan: TaskPlan, seed: int) -> bool:
    """A finished task of this very protocol (and seed) is in the results already."""
    if not entry or entry.get("status") != "ok" or entry.get("seed") != seed or plan.hash is None:
        return False
    return entry.get("protocol", {}).get("hash") == plan.hash


def data_problems(tasks: list[str], data_root: Path) -> dict[str, str]:
    """task -> why its data is unusable (missing / malformed splits, subset lists), for the given tasks."""
    from vicreg_bench.data.check import preflight, task_problems

    if not tasks:
        return {}
    statuses = preflight(tasks, data_root)
    out = {}
    for t in tasks:
        problems = task_problems(t, statuses)
        if problems:
            out[t] = "data missing or malformed: " + "; ".join(problems)
    return out

"""All tasks: imports every module of the `vicreg_bench.tasks` package (and plug-ins) so that their
registrations exist, then answers questions about them: which tasks a suite or `--tasks` list means, which
datasets they read, and a TaskContext for calling one directly.

A new task module in this package registers itself when imported: nothing else needs editing. Plug-ins: a
distribution can add tasks by declaring an entry point in the group `vicreg_bench.tasks` whose value is a
module that registers tasks with `vicreg_bench.tasks.registry.register_task`.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata
from pathlib import Path
from typing import Any

from vicreg_bench.errors import UserError
from vicreg_bench.tasks.context import RunSettings, TaskContext
from vicreg_bench.tasks.options import RawOption, resolve_options
from vicreg_bench.tasks.registry import TaskSpec, registered

ENTRY_POINT_GROUP = "vicreg_bench.tasks"
SUITE_ORDER = ("table1", "table2", "knn")  # the paper's tables first, in their order; other suites after
_loaded = False


def _load() -> None:
    global _loaded
    if _loaded:
        return
    package = importlib.import_module("vicreg_bench.tasks")
    for info in pkgutil.iter_modules(package.__path__, "vicreg_bench.tasks."):
        importlib.import_module(info.name)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value)
    _loaded = True


def all_tasks() -> dict[str, TaskSpec]:
    """name -> registration, in run order."""
    _load()
    return registered()


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise UserError(f"unknown task {name!r}; expected one of {', '.join(tasks)}")
    return tasks[name]


def suites() -> dict[str, list[str]]:
    """Suite name -> its tasks in run order: the registrations' own suites, then `all` and `fast`."""
    tasks = all_tasks()
    out: dict[str, list[str]] = {}
    for spec in tasks.values():
        for s in spec.suites:
            out.setdefault(s, []).append(spec.name)
    ordered = {s: out[s] for s in sorted(out, key=lambda s: (s not in SUITE_ORDER, SUITE_ORDER.index(s) if s in SUITE_ORDER else 0, s))}
    ordered["all"] = list(tasks)
    ordered["fast"] = [t for t, spec in tasks.items() if spec.has_fast]
    return ordered


def resolve_tasks(suite: str | None = None, tasks: str | list[str] | None = None) -> list[str]:
    """`--tasks a,b` wins over `--suite`; default suite `all`. Unknown names are a UserError listing the valid ones."""
    known = all_tasks()
    if tasks:
        names = [t.strip() for t in (tasks.split(",") if isinstance(tasks, str) else tasks) if t.strip()]
        unknown = [t for t in names if t not in known]
        if unknown:
            raise UserError(f"--tasks: unknown task(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
        if not names:
            raise UserError("--tasks: empty task list")
        return [t for t in known if t in names]  # the registry's run order
    suite = suite or "all"
    table = suites()
    if suite not in table:
        raise UserError(f"--suite: unknown suite {suite!r}; expected one of {', '.join(table)}")
    return list(table[suite])


def datasets_for(tasks: list[str]) -> list[str]:
    """The datasets the given tasks read, each once, in a stable order."""
    known = all_tasks()
    out: list[str] = []
    for t in tasks:
        for d in known[t].datasets:
            if d not in out:
                out.append(d)
    return out


def task_context(task: str, state_dict: dict, ckpt_info: Any, *, data_root: Path, work_dir: Path, cache_dir: Path,
                 options: dict[str, Any] | None = None, settings: RunSettings | None = None,
                 **fields: Any) -> TaskContext:
    """A TaskContext for calling one task directly (benchmarks, notebooks, tests): `options` are plain
    {key: value} pairs, typed and checked as `--option` values are; `fields` set the other TaskContext
    fields (device, protocol, seed, features, ...)."""
    raw = [RawOption(k, v, f"option {k}") for k, v in (options or {}).items()]
    typed = resolve_options([get_task(task)], raw)[task]
    return TaskContext(ckpt_path=Path(fields.pop("ckpt_path", "checkpoint.pth")), state_dict=state_dict,
                       ckpt_info=ckpt_info, data_root=Path(data_root), work_dir=Path(work_dir),
                       cache_dir=Path(cache_dir), options=typed, settings=settings or RunSettings(), **fields)

"""Which `vicreg-bench run` calls the demo makes, with which options, and how it judges the outcome.

Everything task-specific comes from the registry: each task's demo preset (its options and whether it
runs in a `run` of its own), and its headline metrics (the "does pretraining beat random init" check).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vicreg_bench.demo.budget import Budget
from vicreg_bench.errors import UserError
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.options import option_fields
from vicreg_bench.tasks.registry import TaskSpec


def is_detection(spec: TaskSpec) -> bool:
    """A task that reads a dataset through the detection readers (the slowest tasks)."""
    return any(kind == "detection" for reqs in spec.data.values() for kind, _ in reqs)


def task_groups(skip_detection: bool, size: str) -> list[list[str]]:
    """The suite as `vicreg-bench run` invocations: the main group, then each task whose demo preset asks
    for a run of its own (its options differ from the main group's, and it can use the other core)."""
    specs = [s for s in all_tasks().values() if not (skip_detection and is_detection(s))]
    own = [s.name for s in specs if s.demo.get(size) is not None and s.demo[size].own_run]
    main = [s.name for s in specs if s.name not in own]
    return [main] + [[t] for t in own]


def task_options(b: Budget, size: str, tasks: list[str], overrides: dict[str, dict[str, Any]]) -> dict[str, dict]:
    """task -> {option key: value} the demo sets: the budget's epochs / batch size for every task that has
    those options (evaluation only after the last epoch), the task's preset, then the user's overrides
    (`overrides[task]`, or `overrides["*"]` for every task that has the key)."""
    specs = all_tasks()
    out = {}
    for t in tasks:
        keys = option_fields(specs[t].options)
        values: dict[str, Any] = {}
        for key, value in (("epochs", b.eval_epochs), ("batch_size", b.eval_batch), ("eval_every", b.eval_epochs)):
            if key in keys:
                values[key] = value
        preset = specs[t].demo.get(size)
        if preset is not None:
            values.update(preset.options)
        values.update({k: v for k, v in overrides.get("*", {}).items() if k in keys})
        values.update(overrides.get(t, {}))
        out[t] = values
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def option_flags(per_task: dict[str, dict]) -> list[str]:
    """--option flags for a group: `KEY=VALUE` when every task of the group that has the key wants that value,
    else `TASK.KEY=VALUE` for each."""
    specs = all_tasks()
    flags: list[str] = []
    keys = list(dict.fromkeys(k for values in per_task.values() for k in values))
    for key in keys:
        holders = [t for t in per_task if key in option_fields(specs[t].options)]
        wanted = {_text(per_task[t][key]) for t in holders if key in per_task[t]}
        if len(wanted) == 1 and all(key in per_task[t] for t in holders):
            flags += ["--option", f"{key}={wanted.pop()}"]
        else:
            flags += [arg for t in holders if key in per_task[t] for arg in ("--option", f"{t}.{key}={_text(per_task[t][key])}")]
    return flags


def run_args(b: Budget, size: str, ckpt: Path, label: str, data: Path, out_dir: Path, cache: Path, seed: int,
             workers: int, tasks: list[str], overrides: dict[str, dict[str, Any]]) -> list[str]:
    """`vicreg-bench run` on `tasks` with the demo's scale-down (every override lands in the results)."""
    args = ["run", "--ckpt", str(ckpt), "--label", label, "--tasks", ",".join(tasks), "--data-root", str(data),
            "--out", str(out_dir), "--cache-dir", str(cache), "--device", "cpu", "--seed", str(seed),
            "--workers", str(workers), "--image-size", str(b.image_size)]
    return args + option_flags(task_options(b, size, tasks, overrides))


def parse_overrides(texts: list[str]) -> dict[str, dict[str, Any]]:
    """`[TASK.]KEY=VALUE` texts of `demo --option` -> {task or "*": {key: value text}}."""
    out: dict[str, dict[str, Any]] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {text!r}: expected [TASK.]KEY=VALUE, e.g. epochs=5")
        task, dot, key = key.strip().rpartition(".")
        if dot and task not in all_tasks():
            raise UserError(f"--option {text}: unknown task {task!r}; expected one of {', '.join(all_tasks())}")
        out.setdefault(task if dot else "*", {})[key] = value
    return out


def headline_check(trained: dict, random: dict, tasks: list[str]) -> list[dict]:
    """One row per headline metric of the tasks run: both values and whether pretraining won."""
    rows = []
    for spec in all_tasks().values():
        if spec.name not in tasks:
            continue
        for metric in spec.headline:
            values = []
            for doc in (trained, random):
                e = doc["tasks"].get(spec.name) or {}
                v = (e.get("metrics") or {}).get(metric) if e.get("status") == "ok" else None
                values.append(float(v) if isinstance(v, (int, float)) else None)
            t, r = values
            ok = t is not None and r is not None and t > r
            why = "" if ok else ("missing or failed" if t is None or r is None else "not above random init")
            rows.append({"task": spec.name, "metric": metric, "trained": t, "random_init": r, "beats_random": ok,
                         "why": why})
    return rows


def check_table(rows: list[dict]) -> str:
    def fmt(v: float | None) -> str:
        return "\u2014" if v is None else f"{v:.1f}"

    lines = [f"  {'task.metric':<30} {'VICReg':>8} {'random':>8} {'diff':>7}  beats random"]
    for r in rows:
        diff = "" if r["trained"] is None or r["random_init"] is None else f"{r['trained'] - r['random_init']:+.1f}"
        mark = "yes" if r["beats_random"] else f"NO ({r['why']})"
        lines.append(f"  {r['task'] + '.' + r['metric']:<30} {fmt(r['trained']):>8} {fmt(r['random_init']):>8} "
                     f"{diff:>7}  {mark}")
    return "\n".join(lines)

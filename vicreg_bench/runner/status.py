"""The state of every task of an output folder: done, failed, skipped (from results.json), running (its task
lock is held, or its SLURM job runs), queued (its SLURM job is pending), with the last lines of the log of
a failed task. `vicreg-bench status OUT` prints it; OUT is one run's folder or a folder of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vicreg_bench.errors import UserError
from vicreg_bench.locks import FileLock, describe_holder

JOBS_FILE = "slurm/jobs.json"  # written by the SLURM launcher: task -> job record
LOG_TAIL = 5


@dataclass
class TaskState:
    task: str
    state: str  # done | failed | skipped | running | queued | not started
    detail: str = ""
    log_tail: list[str] = field(default_factory=list)


@dataclass
class RunState:
    folder: Path
    checkpoint: str
    tasks: list[TaskState]


def tail(path: Path, n: int = LOG_TAIL) -> list[str]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [ln for ln in lines if ln.strip()][-n:]


def run_folders(out: Path) -> list[Path]:
    """OUT itself when it is a run's folder, else its sub-folders that are."""
    def is_run(p: Path) -> bool:
        return (p / "results.json").is_file() or (p / JOBS_FILE).is_file() or (p / ".locks").is_dir()

    if not out.is_dir():
        raise UserError(f"{out}: no such folder (expected the --out of `vicreg-bench run`)")
    if is_run(out):
        return [out]
    found = sorted(p for p in out.iterdir() if p.is_dir() and is_run(p))
    if not found:
        raise UserError(f"{out}: no results.json, SLURM jobs or running tasks here or in its sub-folders")
    return found


def _headline(entry: dict) -> str:
    from vicreg_bench.tasks.catalog import all_tasks

    spec = all_tasks().get(entry.get("_task", ""))
    metrics = entry.get("metrics") or {}
    names = list(spec.headline) if spec else [k for k, v in metrics.items() if isinstance(v, (int, float))][:2]
    shown = ", ".join(f"{m} {metrics[m]:.2f}" for m in names if isinstance(metrics.get(m), (int, float)))
    secs = f" in {entry['seconds']:.0f} s" if entry.get("seconds") is not None else ""
    return shown + secs


def run_state(folder: Path, job_states: Callable[[list[str]], dict[str, str]] | None = None) -> RunState:
    """Every task's state in one run folder; `job_states(job_ids)` gives SLURM states when jobs exist."""
    import json

    from vicreg_bench.results.io import read_results

    doc = read_results(folder / "results.json") if (folder / "results.json").is_file() else None
    jobs = json.loads((folder / JOBS_FILE).read_text()) if (folder / JOBS_FILE).is_file() else {}
    locks = {p.stem: p for p in (folder / ".locks").glob("*.lock")} if (folder / ".locks").is_dir() else {}
    names = list(dict.fromkeys([*(doc["tasks"] if doc else {}), *jobs, *locks]))
    slurm = job_states([str(j["job_id"]) for j in jobs.values()]) if jobs and job_states else {}
    states = []
    for task in names:
        entry = dict((doc or {}).get("tasks", {}).get(task) or {}, _task=task)
        lock = FileLock(locks[task]) if task in locks else None
        job = jobs.get(task)
        job_state = slurm.get(str(job["job_id"])) if job else None
        if lock is not None and lock.is_held_elsewhere():
            states.append(TaskState(task, "running", f"in {describe_holder(lock.holder())}"
                                    + (f", SLURM job {job['job_id']}" if job else "")))
        elif job_state in ("PENDING", "REQUEUED", "CONFIGURING"):
            states.append(TaskState(task, "queued", f"SLURM job {job['job_id']} {job_state}"))
        elif job_state in ("RUNNING", "COMPLETING"):
            states.append(TaskState(task, "running", f"SLURM job {job['job_id']} {job_state}"))
        elif entry.get("status") == "ok":
            states.append(TaskState(task, "done", _headline(entry)))
        elif entry.get("status") in ("failed", "skipped"):
            logs = [folder / "work" / task / "error.log"] + ([Path(job["stderr"])] if job and job.get("stderr") else [])
            log_tail = next((t for t in (tail(p) for p in logs) if t), [])
            states.append(TaskState(task, entry["status"], entry.get("reason") or "", log_tail))
        elif job_state is not None:
            logs = [Path(job[k]) for k in ("stderr", "stdout") if job.get(k)]
            log_tail = next((t for t in (tail(p) for p in logs) if t), [])
            state = "failed" if job_state not in ("COMPLETED",) else "not started"
            states.append(TaskState(task, state, f"SLURM job {job['job_id']} {job_state}, no result written",
                                    log_tail))
        else:
            states.append(TaskState(task, "not started"))
    ckpt = doc["checkpoint"] if doc else {}
    name = ckpt.get("label") or Path(ckpt.get("path", "?")).name
    return RunState(folder, name, states)


def render(runs: list[RunState]) -> str:
    lines = []
    for run in runs:
        lines.append(f"{run.folder}: {run.checkpoint}")
        if not run.tasks:
            lines.append("  no task recorded yet")
        width = max((len(t.task) for t in run.tasks), default=0)
        for t in run.tasks:
            lines.append(f"  {t.task:<{width}}  {t.state:<11} {t.detail}".rstrip())
            lines += [f"  {'':<{width}}  | {ln}" for ln in t.log_tail]
    return "\n".join(lines)

"""The demo's child processes: tools started as a user would run them, lanes of them beside the foreground
work, and per-stage wall / CPU times."""

from __future__ import annotations

import os
import re
import resource
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from vicreg_bench.errors import UserError


class Stages:
    """Stage headers with elapsed time, and per-stage wall / CPU seconds (CPU counts this process and the
    child processes the stage waited for)."""

    def __init__(self, total: int):
        self.total = total
        self.t0 = time.perf_counter()
        self.records: list[dict] = []
        self._current: dict | None = None

    @staticmethod
    def _cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def elapsed(self) -> str:
        s = int(time.perf_counter() - self.t0)
        return f"{s // 60}:{s % 60:02d}"

    def start(self, name: str, title: str) -> None:
        self.finish()
        n = len(self.records) + 1
        print(f"\n=== [{n}/{self.total}] {title}  (elapsed {self.elapsed()}) ===", flush=True)
        self._current = {"stage": name, "wall_s": time.perf_counter(), "cpu_s": self._cpu(), "reused": False,
                         "processes": []}

    def reused(self) -> None:
        if self._current is not None:
            self._current["reused"] = True

    def add_process(self, job: "Job") -> None:
        if self._current is not None and job.wall_s is not None:
            self._current["processes"].append({"name": job.name, "wall_s": round(job.wall_s, 1),
                                               "cpu_s": round(job.cpu_s or 0.0, 1), "exit_status": job.rc})

    def finish(self) -> None:
        if self._current is None:
            return
        c = self._current
        c["wall_s"] = round(time.perf_counter() - c["wall_s"], 1)
        c["cpu_s"] = round(self._cpu() - c["cpu_s"], 1)
        self.records.append(c)
        self._current = None

    def table(self) -> str:
        rows = [f"  {'stage / process':<44} {'wall s':>8} {'cpu s':>8}"]
        for r in self.records:
            rows.append(f"  {r['stage']:<44} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f}" + ("  (reused)" if r["reused"] else ""))
            if len(r["processes"]) > 1:  # side by side: show each one
                for p in r["processes"]:
                    rows.append(f"    {p['name']:<42} {p['wall_s']:>8.1f} {p['cpu_s']:>8.1f}")
        total_cpu = sum(r["cpu_s"] for r in self.records)
        rows.append(f"  {'total':<44} {time.perf_counter() - self.t0:>8.1f} {total_cpu:>8.1f}")
        return "\n".join(rows)


TASK_LINE = re.compile(r"^\[\d+/\d+\] \S+: (done|FAILED|failed|skipped|already)|^\S+: already done|^epoch \d+/\d+ done")


@dataclass
class Job:
    """A tool running as a child process; `wait()` reaps it and records its wall and CPU seconds."""

    name: str
    proc: subprocess.Popen
    t0: float
    log: Path | None = None
    rc: int | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    _tail: threading.Thread | None = None

    def wait(self) -> int:
        if self.rc is None:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.rc = os.waitstatus_to_exitcode(status)
            self.proc.returncode = self.rc  # reaped here, so Popen must not wait for it again
            self.wall_s = time.perf_counter() - self.t0
            self.cpu_s = usage.ru_utime + usage.ru_stime
        if self._tail is not None:
            self._tail.join(timeout=5)
        return self.rc

    def running(self) -> bool:
        return self.rc is None and self.proc.poll() is None

    def stop(self) -> None:
        """After an interruption: give the child (which got the same Ctrl-C) time to save, then end it."""
        if self.rc is not None or self.proc.returncode is not None:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_job(name: str, cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None,
              prefix: str = "", echo: str = "") -> Job:
    """Start a tool as a user would run it, echoing the command. With `log`, its output goes to that file
    and only its task / epoch lines are echoed (prefixed) to this console."""
    print(f"{echo}$ " + " ".join(shlex.quote(c) for c in cmd) + (f"  >> {log}" if log else ""), flush=True)
    handle, offset = None, 0
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "ab")
        offset = handle.tell()  # echo only what this run appends
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT if handle else None)
    except FileNotFoundError:
        raise UserError(f"cannot start {cmd[0]!r}: is vicreg-bench installed in this environment?") from None
    finally:
        if handle is not None:
            handle.close()
    job = Job(name, proc, time.perf_counter(), log)
    if log is not None:
        job._tail = threading.Thread(target=_echo_progress, args=(job, log, offset, prefix), daemon=True)
        job._tail.start()
    return job


def _echo_progress(job: Job, log: Path, offset: int, prefix: str) -> None:
    """Print the task-level lines a background tool writes to its log, as they appear."""
    pending = ""
    with open(log, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read().decode("utf-8", "replace")
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    last = line.split("\r")[-1].strip()
                    if TASK_LINE.search(last):
                        print(f"{prefix}{last}", flush=True)
            elif job.rc is not None or job.proc.poll() is not None:
                break
            else:
                time.sleep(0.5)


def run_job(name: str, cmd: list[str], st: Stages, *, env: dict[str, str] | None = None) -> int:
    """Run a tool in the foreground (its own progress output on this console) and record its time."""
    job = start_job(name, cmd, env=env)
    try:
        rc = job.wait()
    finally:
        job.stop()
    st.add_process(job)
    return rc


class Lane:
    """Tools run one after the other in a background thread, beside the foreground work; their output goes
    to one log file and their task lines are echoed with a prefix."""

    def __init__(self, commands: list[tuple[str, list[str]]], *, env: dict[str, str], log: Path, prefix: str):
        self.commands, self.env, self.log, self.prefix = commands, env, log, prefix
        self.jobs: list[Job] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Lane":
        self.thread.start()
        return self

    def _run(self) -> None:
        for name, cmd in self.commands:
            if self.stopped:
                return
            job = start_job(name, cmd, env=self.env, log=self.log, prefix=self.prefix, echo=self.prefix)
            self.jobs.append(job)
            if job.wait() not in (0, 1):
                return

    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self) -> list[Job]:
        self.thread.join()
        return self.jobs

    def stop(self) -> None:
        self.stopped = True
        for job in self.jobs:
            job.stop()
        self.thread.join(timeout=60)


def side_by_side_env() -> dict[str, str]:
    """Environment of two tools sharing the machine: each gets half the cores as compute threads
    (oversubscribed OpenMP threads spin and waste CPU), unbuffered output for the log echo."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 2) // 2))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def tool(name: str) -> list[str]:
    """The console script next to this Python (the venv's), else `python -m` of its module."""
    script = Path(sys.executable).with_name(name)
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", {"vicreg-bench": "vicreg_bench", "vicreg-train": "trainers.vicreg.train"}[name]]


"""What SLURM says about a cluster and its jobs, read from its own commands (no submitit cache in between).

- `cluster_problem()`: why no job could run here (no `sinfo`, the controller does not answer, no node up), or
  None. The tests marked `slurm` skip with this reason; the launchers refuse with it.
- `job_states(ids)`: each job's state word (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...).
  Asked of `squeue` first (the controller keeps finished jobs for MinJobAge), then `sacct` (clusters with
  accounting), then the job-completion log of `JobCompType=jobcomp/filetxt` (scripts/slurm_local.sh).
- `watch(ids)`: yields a `JobStateChange` each time a job's state changes, until every job has finished.

A job that submitit requeues (preemption, time limit) goes RUNNING -> PENDING -> RUNNING under the same id;
only the states in FINISHED end a watch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

# Terminal states (squeue/sacct long names). PREEMPTED is not among them: a preempted job that requeues comes back.
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                      "DEADLINE", "SPECIAL_EXIT", "REVOKED"})
UNKNOWN = "UNKNOWN"
_TIMEOUT_S = 20


def _run(cmd: list[str]) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None


def cluster_problem() -> str | None:
    """None when a SLURM controller answers and a node can run jobs; else the reason, in one line."""
    if shutil.which("sinfo") is None:
        return "no SLURM cluster: sinfo not found (scripts/slurm_local.sh starts a local one, as root)"
    proc = _run(["sinfo", "-h", "-N", "-o", "%N %t"])
    if proc is None or proc.returncode != 0:
        said = (proc.stderr.strip().splitlines() or ["no answer"])[-1] if proc is not None else f"no answer in {_TIMEOUT_S} s"
        return f"no SLURM cluster: controller not responding (sinfo: {said})"
    nodes = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    if not any(state.rstrip("*~#!%$@^-") in ("idle", "mix", "alloc", "comp") and not state.endswith("*")
               for _, state in nodes):
        shown = ", ".join(" ".join(n) for n in nodes) or "none"
        return f"no SLURM cluster: no node is up (sinfo nodes: {shown})"
    return None


def _base(job_id: str) -> str:
    return job_id.split(".")[0]


def _from_squeue(ids: list[str]) -> dict[str, str]:
    proc = _run(["squeue", "-h", "--states=all", "-o", "%i|%T", "-j", ",".join(ids)])
    if proc is None or proc.returncode != 0:
        # squeue refuses the whole list when one id is unknown to it: ask one by one.
        if len(ids) > 1:
            return {k: v for i in ids for k, v in _from_squeue([i]).items()}
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        job, _, state = line.partition("|")
        if job.strip() in ids:
            out[job.strip()] = state.strip()
    return out


def _from_sacct(ids: list[str]) -> dict[str, str]:
    if shutil.which("sacct") is None:
        return {}
    proc = _run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(ids)])
    if proc is None or proc.returncode != 0:
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        job, _, state = line.partition("|")
        if job in ids:
            out[job] = state.split()[0] if state else UNKNOWN  # "CANCELLED by 0" -> CANCELLED
    return out


@lru_cache(maxsize=1)
def jobcomp_log() -> Path | None:
    """The file of `JobCompType=jobcomp/filetxt`, from the running controller's configuration."""
    proc = _run(["scontrol", "show", "config"])
    if proc is None or proc.returncode != 0:
        return None
    conf = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", proc.stdout, flags=re.M))
    if conf.get("JobCompType") != "jobcomp/filetxt" or not conf.get("JobCompLoc"):
        return None
    return Path(conf["JobCompLoc"])


def _from_jobcomp(ids: list[str]) -> dict[str, str]:
    path = jobcomp_log()
    if path is None:
        return {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    out = {}
    for job, state in re.findall(r"^JobId=(\S+) .*?\bJobState=(\S+)", text, flags=re.M):
        if job in ids:
            out[job] = state  # the last line of a job wins: a requeued job is logged at each end
    return out


def job_states(job_ids: list[str]) -> dict[str, str]:
    """{job id: state} for every id given; UNKNOWN for ids no source knows (yet)."""
    ids = [_base(str(j)) for j in job_ids]
    states: dict[str, str] = {}
    for source in (_from_squeue, _from_sacct, _from_jobcomp):
        missing = [i for i in ids if i not in states]
        if not missing:
            break
        states.update(source(missing))
    return {i: states.get(i, UNKNOWN) for i in ids}


@dataclass(frozen=True)
class JobStateChange:
    job_id: str
    state: str
    previous: str | None  # None at the first observation
    seconds: float  # since the watch started

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def __str__(self) -> str:
        return f"SLURM job {self.job_id}: {self.state}"


def watch(job_ids: list[str], interval_s: float = 2.0, timeout_s: float | None = None,
          states: Callable[[list[str]], dict[str, str]] = job_states) -> Iterator[JobStateChange]:
    """Yield each job's state when it changes (first observation included) until all are in FINISHED.

    Polls every `interval_s` at most, and sooner early on (a tenth of the time watched, from 0.5 s), so a
    short job is not reported late by a whole interval. Raises TimeoutError after `timeout_s` seconds with jobs still unfinished (they keep running)."""
    t0 = time.monotonic()
    last: dict[str, str | None] = {str(j): None for j in job_ids}
    while True:
        now = states(list(last))
        for job, state in now.items():
            if state != last.get(job):
                yield JobStateChange(job, state, last.get(job), round(time.monotonic() - t0, 1))
                last[job] = state
        if all(s in FINISHED for s in last.values()):
            return
        if timeout_s is not None and time.monotonic() - t0 > timeout_s:
            waiting = ", ".join(f"{j} {s}" for j, s in last.items() if s not in FINISHED)
            raise TimeoutError(f"SLURM jobs still unfinished after {timeout_s:.0f} s: {waiting}")
        time.sleep(min(interval_s, max(0.5, (time.monotonic() - t0) / 10)))

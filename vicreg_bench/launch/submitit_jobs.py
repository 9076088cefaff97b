"""Submitting a Python call as a SLURM job through submitit, the way the VICReg, DINO and MAE repositories do.

Shared by `vicreg-train --launcher slurm` and the harness's SLURM launcher:

- `SlurmSettings`: the job's resources and placement, typed; `parse_extra` reads `--slurm-extra KEY=VALUE`;
- `make_executor(settings, folder)`: a submitit executor whose logs (`<job id>_0_log.out/.err`) and pickles go
  to `folder`;
- `submit(executor, fn, *args)`: the job runs `fn(*args)` inside a `CheckpointableCall`, so when SLURM
  signals a preemption or the time limit (USR2, `signal_delay_s` before the end), submitit requeues the same
  call; `fn` must then resume from its own checkpoints (the trainer's `--resume`, the harness's resumable
  tasks).

The job runs the Python of the submitting process (`sys.executable`), so it sees the same installation; the
folder must be on a filesystem every node sees.
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import submitit

from vicreg_bench.errors import UserError

from .slurm_state import cluster_problem


@dataclass(frozen=True)
class SlurmSettings:
    """One job's resources. None leaves a value to the cluster's defaults (partition, memory)."""

    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0  # 0: a CPU job (no --gpus-per-node is sent, so clusters without GPU GRES accept it)
    tasks_per_node: int = 1  # one task per GPU for torch.distributed jobs
    cpus_per_task: int = 1
    mem_gb: float | None = None  # per node; None: the cluster's DefMemPerCPU x CPUs
    timeout_min: int = 60
    constraint: str | None = None
    job_name: str = "vicreg-bench"
    signal_delay_s: int = 120  # USR2 this long before the time limit: time to checkpoint and requeue
    max_requeues: int = 30  # time-outs after which submitit stops requeueing (preemptions do not count)
    extra: dict[str, str] = field(default_factory=dict)  # any other sbatch option, without the leading --

    def __post_init__(self) -> None:
        for name in ("nodes", "tasks_per_node", "cpus_per_task", "timeout_min"):
            if getattr(self, name) < 1:
                raise UserError(f"SLURM {name.replace('_', '-')} {getattr(self, name)}: expected an integer >= 1")
        if self.gpus_per_node < 0:
            raise UserError(f"SLURM gpus-per-node {self.gpus_per_node}: expected an integer >= 0")
        if self.mem_gb is not None and self.mem_gb <= 0:
            raise UserError(f"SLURM mem-gb {self.mem_gb}: expected a positive number")

    def executor_parameters(self) -> dict[str, Any]:
        """The settings as submitit AutoExecutor parameters (`executor.update_parameters(**...)`)."""
        params: dict[str, Any] = dict(
            name=self.job_name, nodes=self.nodes, tasks_per_node=self.tasks_per_node, cpus_per_task=self.cpus_per_task,
            timeout_min=self.timeout_min, slurm_signal_delay_s=self.signal_delay_s,
        )
        if self.gpus_per_node:
            params["gpus_per_node"] = self.gpus_per_node
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        for key in ("partition", "account", "constraint"):
            if getattr(self, key):
                params[f"slurm_{key}"] = getattr(self, key)
        if self.extra:
            params["slurm_additional_parameters"] = dict(self.extra)
        return params


def parse_extra(items: list[str] | None) -> dict[str, str]:
    """`--slurm-extra KEY=VALUE` items as sbatch options: `qos=high` becomes `#SBATCH --qos=high`."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not value:
            raise UserError(f"--slurm-extra {item!r}: expected KEY=VALUE, an sbatch option without its '--' (e.g. qos=high)")
        out[key] = value
    return out


def make_executor(settings: SlurmSettings, folder: Path, python: str | None = None) -> submitit.AutoExecutor:
    """A submitit executor for SLURM with `settings`; job files and logs under `folder`.

    Raises UserError naming the reason when no SLURM cluster answers (rather than silently running locally,
    which submitit's AutoExecutor would do)."""
    problem = cluster_problem()
    if problem:
        raise UserError(f"--launcher slurm: {problem}")
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm", slurm_max_num_timeout=settings.max_requeues,
                                     slurm_python=python or shlex.quote(sys.executable))
    executor.update_parameters(**settings.executor_parameters())
    return executor


def _importable(fn: Callable) -> Callable:
    """`fn` itself, or, when it was defined in a script run as `python -m pkg.mod`, the same function imported
    as `pkg.mod.name`: the job then unpickles it by reference, not as a copy of the script."""
    if getattr(fn, "__module__", None) != "__main__":
        return fn
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is None or not spec.name or spec.name == "__main__":
        return fn  # a plain script: cloudpickle copies the function by value
    return getattr(importlib.import_module(spec.name), fn.__qualname__)


class CheckpointableCall:
    """`fn(*args, **kwargs)` as a submitit job that is requeued, unchanged, on preemption or time-out.

    With `torch_env=True` the job first exports the torch.distributed variables (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT) from the SLURM task, so `fn` can call `init_process_group("env://")` as under
    torchrun."""

    def __init__(self, fn: Callable, *args: Any, torch_env: bool = False, **kwargs: Any):
        self.fn = _importable(fn)
        self.args = args
        self.kwargs = kwargs
        self.torch_env = torch_env

    def __call__(self) -> Any:
        _requeue_from_this_process_only()
        if self.torch_env:
            export_torch_env()
        return self.fn(*self.args, **self.kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit in the job on USR2: the same call again; `fn` resumes from its own checkpoints."""
        return submitit.helpers.DelayedSubmission(self)

    def __repr__(self) -> str:
        return f"CheckpointableCall({getattr(self.fn, '__qualname__', self.fn)!r}, {len(self.args)} args)"


def _requeue_from_this_process_only() -> None:
    """SLURM signals every process of the job step, forked children (DataLoader workers) included, and a fork
    inherits submitit's USR2 handler: each child would checkpoint and requeue too. Keep the handler in the
    job's own process; elsewhere the signal is ignored."""
    handler, pid = signal.getsignal(signal.SIGUSR2), os.getpid()
    if not callable(handler):
        return

    def guarded(signum: int, frame: Any) -> None:
        if os.getpid() == pid:
            handler(signum, frame)

    signal.signal(signal.SIGUSR2, guarded)


def ignore_requeue_signal(worker_id: int | None = None) -> None:
    """`worker_init_fn` for DataLoaders that may run in a SLURM job: the worker ignores USR2, which the job's
    own process handles (checkpoint, requeue). Needed when workers start without forking (spawn, forkserver)."""
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def export_torch_env() -> None:
    """Inside a SLURM task: set RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT
    (the master port derives from the job id, so every task of the job agrees on it)."""
    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def submit(executor: submitit.AutoExecutor, fn: Callable, *args: Any, torch_env: bool = False,
           **kwargs: Any) -> submitit.Job:
    """Submit `fn(*args, **kwargs)` as one checkpointable job; returns the submitit Job (`.job_id`,
    `.paths.stdout`, `.paths.stderr`, `.result()`)."""
    try:
        return executor.submit(CheckpointableCall(fn, *args, torch_env=torch_env, **kwargs))
    except submitit.core.utils.FailedJobError as exc:  # sbatch refused the job: say what sbatch said
        raise UserError(f"sbatch refused the job: {str(exc).strip().splitlines()[-1]}") from None


def job_log_paths(job: submitit.Job) -> dict[str, str]:
    """The job's stdout and stderr files (task 0), as recorded next to its id."""
    return {"stdout": os.fspath(job.paths.stdout), "stderr": os.fspath(job.paths.stderr)}

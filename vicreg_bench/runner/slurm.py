"""`vicreg-bench run --launcher slurm`: one SLURM job per task, sized from the task's registered resources.

For each checkpoint and each task that is not done already (an `ok` entry of the same protocol in its
results.json) and not queued or running (its job in OUT/slurm/jobs.json), a job runs
`runner.local.run_suite` on that task alone. Jobs share the feature cache (a lock per cache entry makes a
second job wait for the first's extraction) and merge their entries into results.json under its lock.
A job that is preempted or reaches its time limit is requeued by submitit and resumes from the task's own
checkpoints (per-epoch state, detection checkpoints, cache shards). The command then follows the jobs,
printing each state change with its job id (or returns at once with --no-wait; `vicreg-bench status OUT`
tells where they are). Running the same command again submits only what is neither done nor in SLURM.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_write_json
from vicreg_bench.locks import locked
from vicreg_bench.runner.plan import RunConfig
from vicreg_bench.runner.status import JOBS_FILE
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.options import RawOption, option_fields
from vicreg_bench.tasks.registry import Resources

GPUS_PER_NODE = 8
ACTIVE = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "PREEMPTED")


@dataclass
class SlurmOptions:
    """What the --slurm-* flags say; None leaves a value to the task's registered resources."""

    partition: str | None = None
    account: str | None = None
    gpus_per_node: int | None = None
    nodes: int | None = None
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None
    constraint: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    poll_s: float = 5.0


def job_settings(task: str, resources: Resources, opts: SlurmOptions):
    """The SlurmSettings of one task's job: its registered resources, with the flags' values on top. One
    process per GPU (torch.distributed over the job's tasks) when the task runs several; CPU jobs get one."""
    from vicreg_bench.launch import SlurmSettings

    gpus = resources.gpus if resources.device == "gpu" else 0
    per_node = opts.gpus_per_node if opts.gpus_per_node is not None else min(gpus, GPUS_PER_NODE)
    nodes = opts.nodes if opts.nodes is not None else max(1, math.ceil(gpus / GPUS_PER_NODE) if per_node else 1)
    tasks = max(1, per_node)
    cpus = opts.cpus_per_task if opts.cpus_per_task is not None else max(1, resources.cpus // tasks)
    mem = opts.mem_gb if opts.mem_gb is not None else float(resources.mem_gb)
    minutes = opts.timeout_min if opts.timeout_min is not None else int(math.ceil(resources.hours * 60))
    return SlurmSettings(partition=opts.partition, account=opts.account, nodes=nodes, gpus_per_node=per_node,
                         tasks_per_node=tasks, cpus_per_task=cpus, mem_gb=mem, timeout_min=minutes,
                         constraint=opts.constraint, job_name=f"vb-{task}", extra=dict(opts.extra))


def run_task_job(config: RunConfig) -> int:
    """What a job runs: the run of one task (several processes join through the SLURM task environment),
    with torch's threads cut to the CPUs the job was given, so that jobs sharing a node do not oversubscribe
    it when the cluster does not bind CPUs."""
    import torch

    from vicreg_bench.features.extract import available_cpus
    from vicreg_bench.runner.local import run_suite

    torch.set_num_threads(min(torch.get_num_threads(), available_cpus()))
    return run_suite(config)


def options_for_task(task: str, raw: list[RawOption]) -> list[RawOption]:
    """The options of a run that `task` reads: a job runs one task, and the others' options would only
    print "ignored" notes in its log."""
    fields = option_fields(all_tasks()[task].options)
    return [r for r in raw if r.key.rpartition(".")[0] in ("", task) and r.key.rpartition(".")[2] in fields]


def read_jobs(out: Path) -> dict[str, dict]:
    path = out / JOBS_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e}); delete it to forget the recorded jobs") from None


def record_job(out: Path, task: str, record: dict) -> None:
    """Add a job to OUT/slurm/jobs.json, under a lock (several launchers may submit into one folder)."""
    path = out / JOBS_FILE
    with locked(path.with_name(".jobs.json.lock"), what=f"recording the job of {task}"):
        jobs = read_jobs(out)
        jobs[task] = record
        atomic_write_json(path, jobs)


def done_tasks(config: RunConfig) -> set[str]:
    """Tasks with an `ok` entry in the results of the protocol they would run now. Planned here, without a
    GPU: an `auto` precision is taken as the one the entry recorded (the device decides it). A task whose
    plan fails is not done (its job will say why)."""
    from dataclasses import replace as dc_replace

    from vicreg_bench.checkpoints import load_backbone
    from vicreg_bench.results.entry import protocol_hash
    from vicreg_bench.results.io import read_results
    from vicreg_bench.runner.plan import task_options
    from vicreg_bench.tasks.catalog import task_context

    path = config.out / "results.json"
    if not path.is_file() or config.force:
        return set()
    entries = read_results(path)["tasks"]
    candidates = [t for t in config.tasks
                  if (entries.get(t) or {}).get("status") == "ok" and entries[t].get("seed") == config.seed]
    if not candidates:
        return set()
    state_dict, info = load_backbone(config.ckpt, method=config.method, key=config.key)
    options = task_options(config.tasks, config.options)
    done = set()
    for t in candidates:
        recorded = entries[t]["protocol"]
        settings = config.settings
        if settings.precision == "auto" and isinstance(recorded["params"].get("precision"), str):
            settings = dc_replace(settings, precision=recorded["params"]["precision"])
        ctx = task_context(t, state_dict, info, data_root=config.data_root, work_dir=config.out / "work" / t,
                           cache_dir=config.out, settings=settings, protocol=config.protocol, seed=config.seed,
                           device="cpu")
        ctx.options = options[t]
        try:
            planned = protocol_hash(*all_tasks()[t].protocol(ctx))
        except Exception:  # noqa: BLE001 - a plan that fails here is decided by the job
            continue
        if planned == recorded["hash"]:
            done.add(t)
    return done


def submit_run(config: RunConfig, opts: SlurmOptions, say: Callable[..., None] = print) -> dict[str, str]:
    """Submit one job per task of `config` that is neither done nor queued/running; {task: job id} of the
    jobs submitted and of those found queued or running."""
    from vicreg_bench.launch import job_log_paths, job_states, make_executor, submit

    specs = all_tasks()
    jobs = read_jobs(config.out)
    active = job_states([j["job_id"] for j in jobs.values()]) if jobs else {}
    done = done_tasks(config)
    submitted: dict[str, str] = {}
    for task in config.tasks:
        if task in done:
            say(f"{config.out.name}/{task}: done already (results.json), not submitted; --force recomputes")
            continue
        record = jobs.get(task)
        if record and active.get(str(record["job_id"])) in ACTIVE:
            say(f"{config.out.name}/{task}: SLURM job {record['job_id']} is {active[str(record['job_id'])]}, "
                f"not submitted again")
            submitted[task] = str(record["job_id"])
            continue
        settings = job_settings(task, specs[task].resources, opts)
        executor = make_executor(settings, config.out / "slurm")
        job_config = replace(config, tasks=[task], options=options_for_task(task, config.options))
        job = submit(executor, run_task_job, job_config,
                     torch_env=settings.nodes * settings.tasks_per_node > 1)
        record_job(config.out, task, {"job_id": str(job.job_id), "submitted": round(time.time(), 1),
                                      "settings": settings.executor_parameters(), **job_log_paths(job)})
        say(f"{config.out.name}/{task}: submitted SLURM job {job.job_id} ({settings.nodes} node(s), "
            f"{settings.gpus_per_node} GPU(s)/node, {settings.cpus_per_task} CPU(s)/task, "
            f"{settings.timeout_min} min)")
        submitted[task] = str(job.job_id)
    return submitted


def follow(jobs: dict[str, tuple[Path, str]], poll_s: float, say: Callable[..., None] = print) -> None:
    """Print every state change of the jobs ({job id: (run folder, task)}) until all have finished."""
    from vicreg_bench.launch import watch

    for change in watch(list(jobs), interval_s=poll_s):
        folder, task = jobs[change.job_id]
        say(f"{folder.name}/{task}: SLURM job {change.job_id} {change.state} (after {change.seconds:.0f} s)")


def launch(configs: list[RunConfig], opts: SlurmOptions, wait: bool = True, say: Callable[..., None] = print) -> int:
    """Submit every checkpoint's tasks; with `wait`, follow the jobs and return 1 when a task failed."""
    from vicreg_bench.runner.status import run_state

    watched: dict[str, tuple[Path, str]] = {}
    for config in configs:
        for task, job_id in submit_run(config, opts, say).items():
            watched[job_id] = (config.out, task)
    if not wait:
        outs = " ".join(str(c.out) for c in configs)
        say(f"{len(watched)} job(s) submitted; `vicreg-bench status {outs}` shows where they are")
        return 0
    if watched:
        follow(watched, opts.poll_s, say)
    failed = 0
    for config in configs:
        from vicreg_bench.launch import job_states

        state = run_state(config.out, job_states)
        bad = [t for t in state.tasks if t.task in config.tasks and t.state not in ("done", "skipped")]
        for t in bad:
            say(f"{config.out.name}/{t.task}: {t.state} {t.detail}".rstrip())
            for line in t.log_tail:
                say(f"    | {line}")
        failed += len(bad)
        say(f"results: {config.out / 'results.json'}")
    return 1 if failed else 0

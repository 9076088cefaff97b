"""`vicreg-train --launcher slurm ...`: submit the same training as a SLURM job through submitit.

As the official run_with_submitit.py: one task per GPU (`--nodes` x `--gpus-per-node` tasks; one task per node
with `--gpus-per-node 0`, a CPU job), a USR2 signal 120 s before the time limit, and on preemption or timeout
the job requeues itself; the requeued job runs with `--resume` and continues from `<exp-dir>/model.pth`
(checkpoint often with `--checkpoint-every-steps` on long epochs). Each task exports the torchrun variables
(RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and runs the training function it was given.

The submission itself (settings, checkpointable job, state polling) is `vicreg_bench.launch`, shared with the
harness. This module never imports the training code: `train.main` hands it the function the job runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Callable

from vicreg_bench.errors import UserError
from vicreg_bench.launch import SlurmSettings, job_log_paths, make_executor, parse_extra, submit, watch

GROUP_TITLE = "SLURM (--launcher slurm, through submitit; docs/slurm.md)"
PATH_FLAGS = ("--exp-dir", "--data", "--data-dir")  # made absolute in the job's command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The submission flags; the job's own command line drops them (see `job_argv`)."""
    g = p.add_argument_group(GROUP_TITLE)
    g.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: train in this process (or under torchrun); slurm: submit this training as a SLURM job")
    g.add_argument("--slurm", dest="launcher", action="store_const", const="slurm", default=argparse.SUPPRESS,
                   help="same as --launcher slurm")
    g.add_argument("--nodes", "--slurm-nodes", dest="nodes", type=int, default=1)
    g.add_argument("--gpus-per-node", "--slurm-gpus-per-node", dest="gpus_per_node", type=int, default=8,
                   help="GPUs per node, one task each; 0: a CPU job with one task per node")
    g.add_argument("--cpus-per-task", type=int, default=10)
    g.add_argument("--mem-gb", type=int, default=0, help="memory per node in GB (0: the cluster's default)")
    g.add_argument("--timeout-min", "--slurm-timeout-min", dest="timeout_min", type=int, default=4320,
                   help="job time limit; the job requeues itself and resumes")
    g.add_argument("--partition", "--slurm-partition", dest="partition", default=None)
    g.add_argument("--slurm-account", default=None)
    g.add_argument("--slurm-constraint", default=None)
    g.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option, repeatable (e.g. --slurm-extra qos=high)")
    g.add_argument("--job-name", default="vicreg")
    g.add_argument("--wait", action="store_true",
                   help="wait for the job, printing its state changes; exit 0 only if it completes")


def _submit_only_flags() -> dict[str, int]:
    """Every option string of the SLURM group -> how many values follow it."""
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    return {opt: (0 if a.nargs == 0 else 1) for a in p._actions for opt in a.option_strings}


def job_argv(argv: list[str]) -> list[str]:
    """The training command line of the job: submission flags removed, paths made absolute, --resume added
    (so that a requeued job continues)."""
    flags = _submit_only_flags()
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        name, eq, value = token.partition("=")
        if name in flags:
            if not eq and flags[name]:
                next(tokens, None)
            continue
        if name in PATH_FLAGS:
            value = value if eq else next(tokens, "")
            out += [name, os.path.abspath(value)]
            continue
        out.append(token)
    if "--resume" not in out:
        out.append("--resume")
    return out


def settings_from_args(args: argparse.Namespace) -> SlurmSettings:
    return SlurmSettings(
        partition=args.partition, account=args.slurm_account, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
        tasks_per_node=max(1, args.gpus_per_node), cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb or None,
        timeout_min=args.timeout_min, constraint=args.slurm_constraint, job_name=args.job_name,
        extra=parse_extra(args.slurm_extra),
    )


def submit_training(args: argparse.Namespace, argv: list[str], run: Callable[[list[str]], Any]) -> int:
    """Submit `run(job_argv(argv))` as a checkpointable SLURM job; with --wait, follow it to its end."""
    exp_dir = Path(args.exp_dir).resolve()
    if (exp_dir / "model.pth").is_file() and not args.resume:
        raise UserError(f"--exp-dir {exp_dir}: already holds model.pth; pass --resume to continue that run, or choose another --exp-dir")
    if args.device == "cpu" and args.gpus_per_node:
        raise UserError(f"--device cpu with --gpus-per-node {args.gpus_per_node}: pass --gpus-per-node 0 for a CPU job")
    settings = settings_from_args(args)
    exp_dir.mkdir(parents=True, exist_ok=True)
    executor = make_executor(settings, exp_dir / "slurm")
    job = submit(executor, run, job_argv(argv), torch_env=True)
    tasks = f"{args.nodes} node(s) x {args.gpus_per_node} GPU(s)" if args.gpus_per_node else f"{args.nodes} CPU task(s)"
    print(f"submitted SLURM job {job.job_id}: {tasks}; logs in {exp_dir / 'slurm'}, checkpoints and log.jsonl in {exp_dir}",
          flush=True)
    if not args.wait:
        return 0
    state = "UNKNOWN"
    for change in watch([job.job_id]):
        print(change, flush=True)
        state = change.state
    if state == "COMPLETED":
        return 0
    logs = job_log_paths(job)
    print(f"SLURM job {job.job_id} ended {state}; its logs: {logs['stderr']}, {logs['stdout']}")
    return 1

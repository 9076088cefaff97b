"""`vicreg-train --slurm ...`: submit the same training as a SLURM job through submitit.

As the official run_with_submitit.py: one task per GPU, `--nodes` x `--gpus-per-node` tasks, a signal
120 s before the time limit, and on preemption or timeout the job requeues itself; the requeued job
runs with `--resume` and continues from `<exp-dir>/model.pth` (checkpoint often with
`--checkpoint-every-steps` on long epochs). Each task exports the torchrun variables (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and runs `trainers.vicreg.train.train`.

submitit is imported only here, only when --slurm is given: `pip install submitit` (or the package
extra: `pip install 'vicreg-bench[slurm]'`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import ModuleType

from vicreg_bench.errors import UserError

# Flags that only concern the submission: the job itself runs without them.
_SUBMIT_ONLY_FLAGS = {"--slurm": 0, "--nodes": 1, "--gpus-per-node": 1, "--cpus-per-task": 1, "--mem-gb": 1,
                      "--timeout-min": 1, "--partition": 1, "--slurm-account": 1, "--slurm-constraint": 1, "--job-name": 1}


def import_submitit() -> ModuleType:
    try:
        import submitit
    except ImportError:
        raise UserError("--slurm needs the submitit package: pip install submitit (or pip install 'vicreg-bench[slurm]')") from None
    return submitit


def job_argv(argv: list[str]) -> list[str]:
    """The training command line of the job: submission flags removed, --resume added (for requeues)."""
    out, skip = [], 0
    for token in argv:
        if skip:
            skip -= 1
            continue
        name = token.split("=", 1)[0]
        if name in _SUBMIT_ONLY_FLAGS:
            skip = 0 if "=" in token else _SUBMIT_ONLY_FLAGS[name]
            continue
        out.append(token)
    if "--resume" not in out:
        out.append("--resume")
    return out


class SlurmTrainingJob:
    """The callable submitit pickles and runs in every task."""

    def __init__(self, argv: list[str]):
        self.argv = list(argv)

    def _export_torch_env(self) -> None:
        submitit = import_submitit()
        helper = getattr(submitit.helpers, "TorchDistributedEnvironment", None)
        if helper is not None:
            helper().export()
            return
        env = submitit.JobEnvironment()
        os.environ.update(
            RANK=str(env.global_rank), WORLD_SIZE=str(env.num_tasks), LOCAL_RANK=str(env.local_rank),
            MASTER_ADDR=env.hostnames[0], MASTER_PORT=str(29500 + int(str(env.job_id).split("_")[0]) % 20000),
        )

    def __call__(self) -> dict:
        from .train import build_parser, train

        self._export_torch_env()
        return train(build_parser().parse_args(self.argv))

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on timeout / preemption: requeue the same command (it resumes)."""
        submitit = import_submitit()
        return submitit.helpers.DelayedSubmission(SlurmTrainingJob(self.argv))


def submit(args: argparse.Namespace, argv: list[str]) -> int:
    submitit = import_submitit()
    exp_dir = Path(args.exp_dir)
    if (exp_dir / "model.pth").is_file() and not args.resume:
        raise UserError(f"--exp-dir {exp_dir}: already holds model.pth; pass --resume to continue that run, or choose another --exp-dir")
    if args.device == "cpu":
        raise UserError("--slurm runs one task per GPU; drop --device cpu")
    exp_dir.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=str(exp_dir / "slurm"), slurm_max_num_timeout=30)
    params = dict(
        name=args.job_name, nodes=args.nodes, gpus_per_node=args.gpus_per_node, tasks_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task, timeout_min=args.timeout_min, slurm_signal_delay_s=120,
    )
    if args.mem_gb:
        params["mem_gb"] = args.mem_gb
    if args.partition:
        params["slurm_partition"] = args.partition
    if args.slurm_account:
        params["slurm_account"] = args.slurm_account
    if args.slurm_constraint:
        params["slurm_constraint"] = args.slurm_constraint
    executor.update_parameters(**params)
    job = executor.submit(SlurmTrainingJob(job_argv(argv)))
    print(f"submitted SLURM job {job.job_id}: {args.nodes} node(s) x {args.gpus_per_node} GPU(s); "
          f"logs in {exp_dir / 'slurm'}, checkpoints and log.jsonl in {exp_dir}")
    return 0

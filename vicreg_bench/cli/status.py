"""`vicreg-bench status OUT`: the state of every task of a `vicreg-bench run` output folder.

For each run folder (OUT, or each sub-folder of OUT holding a run, as `run --ckpt A B ...` writes them):
every task with its state, done (headline metrics and time), failed (the reason and the last lines of its
log), skipped (why), running (the process or SLURM job holding it) or queued (a pending SLURM job).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vicreg_bench.runner.status import render, run_folders, run_state


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, metavar="OUT", help="the --out folder of `vicreg-bench run`")


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.launch import job_states

    print(render([run_state(folder, job_states) for folder in run_folders(args.out)]))
    return 0

"""`vicreg-bench demo`: the whole pipeline on an embedded synthetic dataset, on the CPU (what `make demo` runs).

    vicreg-bench demo [--out demo_out] [--size small|tiny] [--seed N]

Stages: the synthetic data suite, the random-init backbone, VICReg pretraining beside the random-init
evaluation, the pretrained evaluation, the comparison table and HTML report, and a check that the
pretrained backbone beats random init on every task's headline metric. Running it again after an
interruption picks up where it stopped. docs/demo.md has the measured times and numbers.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from vicreg_bench.demo.budget import PRESETS, Budget
from vicreg_bench.demo.pipeline import DemoConfig, default_workers, run_demo
from vicreg_bench.demo.plan import parse_overrides
from vicreg_bench.errors import UserError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--size", choices=tuple(PRESETS), default="small",
                   help="small (default): the demo's data and budgets; tiny: a one-minute smoke run (tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the initialisation and every task (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading processes of the trainer and the tasks (default: 0 on <= 2 cores, else up to 4)")
    p.add_argument("--skip-detection", action="store_true", help="leave out the detection tasks (the slowest)")
    p.add_argument("--force", action="store_true", help="start over: delete OUT's pretraining, runs and report (the data is kept)")
    g = p.add_argument_group("budgets (default: the --size preset)")
    g.add_argument("--pretrain-epochs", type=int, default=None, help="vicreg-train epochs over the synthetic ImageNet images")
    g.add_argument("--eval-epochs", type=int, default=None,
                   help="epochs of every task with an `epochs` option (linear probes, semi-supervised fine-tuning)")
    g.add_argument("--image-size", type=int, default=None, help="crop size of the evaluation transforms")
    g.add_argument("--option", action="append", default=[], metavar="[TASK.]KEY=VALUE",
                   help="override an option of the demo's scale-down: KEY=VALUE for every task that has it (e.g. "
                        "epochs=5), TASK.KEY=VALUE for one task (e.g. a detection task's det_max_iter); "
                        "`vicreg-bench run --list-options` lists tasks and keys")


def budget_from_args(args: argparse.Namespace) -> Budget:
    b = PRESETS[args.size]
    for flag in ("pretrain_epochs", "eval_epochs", "image_size"):
        v = getattr(args, flag)
        if v is None:
            continue
        if v < 1:
            raise UserError(f"--{flag.replace('_', '-')}: expected a positive integer, got {v}")
        b = replace(b, **{flag: v})
    return b


def main(args: argparse.Namespace) -> int:
    workers = default_workers() if args.workers is None else args.workers
    if workers < 0:
        raise UserError(f"--workers: expected 0 or more, got {workers}")
    return run_demo(DemoConfig(out=args.out, size=args.size, budget=budget_from_args(args), seed=args.seed,
                               workers=workers, skip_detection=args.skip_detection, force=args.force,
                               overrides=parse_overrides(args.option)))

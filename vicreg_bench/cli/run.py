"""Run a benchmark suite on a checkpoint and write OUT/results.json.

  vicreg-bench run --ckpt resnet50.pth --suite all --data-root /data --out runs/vicreg --label "VICReg ep100"

What it does, in order:
  1. resolves --suite / --tasks to tasks, and every option to each task's typed options (a misspelt or
     mistyped option stops here, naming the key; `--list-options` shows them all);
  2. loads the checkpoint once (any supported format, see `vicreg-bench inspect`);
  3. checks that every dataset the tasks need is present before any compute, and stops listing
     everything missing at once (or, with --skip-missing, records those tasks as skipped);
  4. runs each task; frozen features are extracted once per (dataset, split, transform) into the
     feature cache (--cache-dir) and shared by the tasks of this and later runs;
  5. writes OUT/results.json after every task (atomically, schema-checked) and prints a summary.

Running the same command again skips the tasks already done with the same protocol (same protocol
hash) and resumes a half-done one from its per-epoch checkpoint; --force recomputes. A task that
fails is recorded as failed with its error and the others still run; the exit code is 1 if any task
asked for failed. Seeds are fixed (--seed) and recorded.

Scaling a protocol down (small data, CPU): --epochs, --batch-size, --image-size/--resize, --det-iters,
--eval-every, or any task option with --option KEY=VALUE (TASK.KEY=VALUE for one task only). Every
such change is recorded in the task's protocol params, so its protocol hash differs from the paper's
and `compare` never mistakes it for a paper-protocol number.

A SLURM cluster: --launcher slurm submits one job per task (resources from the task's registration,
--slurm-* on top), waits and prints each job's state (--no-wait returns; `vicreg-bench status OUT`);
preempted or timed-out jobs requeue and resume; the same command again submits only what is not done.

Several GPUs (or CPU processes): torchrun --nproc_per_node N -m vicreg_bench.cli run ... ;
extraction and training are split between the processes and only rank 0 writes the results.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from vicreg_bench.cli.extract import add_extraction_arguments
from vicreg_bench.errors import UserError
from vicreg_bench.tasks.catalog import all_tasks, resolve_tasks, suites
from vicreg_bench.tasks.context import RunSettings
from vicreg_bench.tasks.options import RawOption, describe_options, parse_option_text

# dedicated flags that set a task option (flag attribute -> option key)
OPTION_FLAGS = {"epochs": "epochs", "batch_size": "batch_size", "eval_every": "eval_every",
                "svm_variant": "svm_variant", "linear_head": "linear_head", "det_engine": "det_engine",
                "det_iters": "det_max_iter"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    names = list(all_tasks())
    g = p.add_argument_group("what to run")
    g.add_argument("--ckpt", type=Path, nargs="+", default=None, metavar="PATH",
                   help="checkpoint(s) of any supported format (see `inspect`); with several, each gets "
                        "OUT/<label or file stem>/results.json")
    g.add_argument("--ckpt-list", type=Path, default=None, metavar="FILE",
                   help="a text file of checkpoints, one per line: PATH [LABEL] (relative paths are relative to "
                        "the file; # starts a comment); each gets OUT/<label or file stem>/results.json")
    g.add_argument("--method", default=None, help="checkpoint method when detection guesses wrong (e.g. dino, moco_v2)")
    g.add_argument("--key", default=None, help="sub-dictionary holding the model in a full checkpoint (e.g. teacher)")
    g.add_argument("--label", default=None,
                   help="a name for this backbone, shown by compare and the report (stored as checkpoint.label); "
                        "one checkpoint only (--ckpt-list gives labels to several)")
    g.add_argument("--suite", default=None, choices=list(suites()),
                   help="table1 (ImageNet linear + semi-supervised), table2 (Places205, VOC07 SVM, iNat18, "
                        "detection), knn, all (default), fast (classification on cached features)")
    g.add_argument("--tasks", default=None, help=f"comma-separated tasks instead of a suite: {', '.join(names)}")
    g.add_argument("--out", type=Path, default=None,
                   help="output folder (default: runs/<checkpoint file stem>); with several checkpoints, the folder "
                        "that gets one sub-folder per checkpoint (default: runs)")
    g.add_argument("--protocol", default=None, choices=("paper", "fast"),
                   help="paper (default): the published protocols; fast: linear heads on cached centre-crop "
                        "features, no augmentation (labelled linear_fast in the results)")
    g.add_argument("--det-engine", default=None, choices=("detectron2", "torchvision"),
                   help="detection engine (option det_engine; default detectron2)")
    g.add_argument("--skip-missing", action="store_true",
                   help="record tasks whose data is missing as skipped instead of stopping before any compute")
    g.add_argument("--force", action="store_true", help="recompute tasks already in OUT/results.json")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0), recorded")
    g.add_argument("--list-options", action="store_true",
                   help="print every option of the selected tasks (--suite / --tasks) with its type, default and "
                        "help, and exit")
    s = p.add_argument_group("scaling a protocol down (recorded in the protocol params)")
    s.add_argument("--epochs", type=int, default=None, help="epochs of the linear / semi-supervised tasks (option epochs)")
    s.add_argument("--batch-size", type=int, default=None, help="global batch size of training (option batch_size; paper 256)")
    s.add_argument("--det-iters", type=int, default=None,
                   help="iterations of the detection tasks (option det_max_iter; steps and warmup keep their share)")
    s.add_argument("--eval-every", type=int, default=None, help="semi-supervised: evaluate every N epochs (paper: 1)")
    s.add_argument("--svm-variant", default=None, choices=("squash", "center_crop", "both"),
                   help="VOC07 SVM image variant: squash (VISSL), center_crop (paper text), both (default; "
                        "squash is the headline)")
    s.add_argument("--linear-head", default=None, choices=("linear", "bn_linear"),
                   help="linear-probe head: bn_linear (default; BatchNorm1d + Linear, PROTOCOLS.md / VISSL) or "
                        "linear (plain Linear, exactly vicreg evaluate.py; paper protocol only)")
    s.add_argument("--option", action="append", default=[], metavar="[TASK.]KEY=VALUE",
                   help="any task option, repeatable, e.g. knn_temperature=0.1 det_input_scale=0.1 "
                        "svm_costs=[0.1,1], or TASK.det_max_iter=200 for one detection task; a misspelt key or a value of the wrong type "
                        "is an error; --list-options shows every option")
    c = p.add_argument_group(
        "SLURM (--launcher slurm: one job per task; resources from the task's registration, these flags on top)")
    c.add_argument("--launcher", default="local", choices=("local", "slurm"),
                   help="local (default): the tasks run in this process (or under torchrun); slurm: one SLURM job "
                        "per task not done yet, through submitit; job logs in OUT/slurm/")
    c.add_argument("--no-wait", action="store_true",
                   help="slurm: return once the jobs are submitted (`vicreg-bench status OUT` follows them); "
                        "default: wait, printing each job's state changes")
    c.add_argument("--slurm-partition", default=None, help="partition (default: the cluster's)")
    c.add_argument("--slurm-account", default=None, help="account to charge")
    c.add_argument("--slurm-gpus-per-node", type=int, default=None,
                   help="GPUs per node, one process each (default: the task's, up to 8; 0 for CPU jobs)")
    c.add_argument("--slurm-nodes", type=int, default=None, help="nodes per job (default: from the task's GPUs)")
    c.add_argument("--slurm-cpus-per-task", type=int, default=None,
                   help="CPUs per process (default: the task's CPUs / processes)")
    c.add_argument("--slurm-mem-gb", type=float, default=None, help="memory per node in GB (default: the task's)")
    c.add_argument("--slurm-timeout-min", type=int, default=None,
                   help="time limit in minutes (default: the task's hours); a job that reaches it requeues and resumes")
    c.add_argument("--slurm-constraint", default=None, help="node constraint, e.g. volta32gb")
    c.add_argument("--slurm-extra", action="append", default=[], metavar="KEY=VALUE",
                   help="any other sbatch option without its '--', repeatable, e.g. qos=high")
    e = p.add_argument_group("data, device and extraction")
    add_extraction_arguments(e)
    e.add_argument("--extract-batch-size", type=int, default=None,
                   help="images per forward pass when extracting (default 256 on CUDA, 64 on CPU)")


def check_positive(args: argparse.Namespace) -> None:
    for flag in ("epochs", "batch_size", "det_iters", "eval_every", "image_size", "resize", "extract_batch_size",
                 "shard_size"):
        v = getattr(args, flag, None)
        if v is not None and v < 1:
            raise UserError(f"--{flag.replace('_', '-')}: expected a positive integer, got {v}")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers: expected 0 or more, got {args.workers}")


def resolve_protocol(suite: str | None, protocol: str | None) -> str:
    if suite == "fast":
        if protocol == "paper":
            raise UserError("--suite fast runs the fast protocol; drop --protocol paper or pick another suite")
        return "fast"
    return protocol or "paper"


def raw_options(args: argparse.Namespace) -> list[RawOption]:
    """The dedicated flags, then every --option (a later value wins)."""
    raw = [RawOption(key, getattr(args, flag), f"--{flag.replace('_', '-')}")
           for flag, key in OPTION_FLAGS.items() if getattr(args, flag) is not None]
    return raw + [parse_option_text(text) for text in args.option]


def read_ckpt_list(path: Path) -> list[tuple[Path, str | None]]:
    """(checkpoint, label) per line of a --ckpt-list file: `PATH [LABEL]`, blank lines and # comments skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise UserError(f"--ckpt-list {path}: cannot read ({e.strerror or e})") from None
    out = []
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        ckpt = Path(parts[0]).expanduser()
        out.append((ckpt if ckpt.is_absolute() else path.parent / ckpt, parts[1].strip() if len(parts) > 1 else None))
    if not out:
        raise UserError(f"--ckpt-list {path}: no checkpoint listed (expected lines 'PATH [LABEL]')")
    return out


def folder_name(ckpt: Path, label: str | None) -> str:
    """The output sub-folder of one checkpoint of many: its label, else its file stem, made path-safe."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label.strip()) if label else ckpt.stem
    return name.strip("._") or ckpt.stem


def checkpoints_and_outputs(args: argparse.Namespace) -> list[tuple[Path, str | None, Path]]:
    """(checkpoint, label, output folder) of every checkpoint the command names."""
    items = [(Path(p), None) for p in args.ckpt or []]
    if args.ckpt_list is not None:
        items += read_ckpt_list(args.ckpt_list)
    if not items:
        raise UserError("--ckpt: a checkpoint is required (or --ckpt-list FILE, or --list-options to see the "
                        "tasks' options)")
    if len(items) == 1 and args.ckpt_list is None:
        ckpt, _ = items[0]
        return [(ckpt, args.label, Path(args.out) if args.out else Path("runs") / ckpt.stem)]
    if args.label is not None:
        raise UserError("--label names one checkpoint; give several checkpoints their labels in --ckpt-list "
                        "(one 'PATH LABEL' per line)")
    parent = Path(args.out) if args.out else Path("runs")
    names = [folder_name(c, label) for c, label in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"several checkpoints would write to {parent}/{dupes[0]}: give them distinct labels in "
                        f"--ckpt-list (PATH LABEL per line)")
    return [(c, label, parent / name) for (c, label), name in zip(items, names)]


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.data.registry import resolve_data_root
    from vicreg_bench.runner.local import run_suite
    from vicreg_bench.runner.plan import RunConfig, task_options

    tasks = resolve_tasks(args.suite, args.tasks)
    if args.list_options:
        print(describe_options([all_tasks()[t] for t in tasks]))
        return 0
    check_positive(args)
    targets = checkpoints_and_outputs(args)
    raw = raw_options(args)
    task_options(tasks, raw)  # fail on a bad option before anything else is looked at
    configs = [RunConfig(
        ckpt=ckpt, out=out, tasks=tasks, suite="custom" if args.tasks else (args.suite or "all"),
        protocol=resolve_protocol(args.suite, args.protocol), data_root=resolve_data_root(args.data_root),
        cache_dir=args.cache_dir, device=args.device, seed=args.seed, method=args.method, key=args.key, label=label,
        options=raw, settings=RunSettings(image_size=args.image_size, resize=args.resize, precision=args.precision,
                                          workers=args.workers, on_bad_image=args.on_bad_image),
        extract_batch_size=args.extract_batch_size, shard_size=args.shard_size, force=args.force,
        skip_missing=args.skip_missing) for ckpt, label, out in targets]
    if args.launcher == "slurm":
        from vicreg_bench.launch import parse_extra
        from vicreg_bench.runner.slurm import SlurmOptions, launch

        opts = SlurmOptions(partition=args.slurm_partition, account=args.slurm_account,
                            gpus_per_node=args.slurm_gpus_per_node, nodes=args.slurm_nodes,
                            cpus_per_task=args.slurm_cpus_per_task, mem_gb=args.slurm_mem_gb,
                            timeout_min=args.slurm_timeout_min, constraint=args.slurm_constraint,
                            extra=parse_extra(args.slurm_extra))
        return launch(configs, opts, wait=not args.no_wait)
    if args.no_wait:
        raise UserError("--no-wait applies to --launcher slurm")
    if len(configs) == 1:
        return run_suite(configs[0])
    return run_many(configs)


def run_many(configs: list) -> int:
    """One checkpoint after the other; a checkpoint that cannot run is reported and the others still run.
    Exit status: the worst of them (2 a user error, 1 a failed task, 0 all well)."""
    from vicreg_bench.runner.local import run_suite

    codes = []
    for n, config in enumerate(configs, 1):
        print(f"\n##### checkpoint {n}/{len(configs)}: {config.ckpt} -> {config.out}", flush=True)
        try:
            codes.append(run_suite(config))
        except UserError as e:
            print(f"vicreg-bench run: error: {config.ckpt}: {e}", file=sys.stderr)
            codes.append(e.exit_code)
    print("\n" + "\n".join(f"{'ok    ' if c == 0 else 'FAILED' if c == 1 else 'ERROR '} {cfg.out / 'results.json'}"
                             for c, cfg in zip(codes, configs)))
    return max(codes)

"""Run a benchmark suite on one checkpoint and write OUT/results.json.

  vicreg-bench run --ckpt resnet50.pth --suite all --data-root /data --out runs/vicreg

What it does, in order:
  1. resolves --suite / --tasks to tasks (suites: table1, table2, knn, all, fast);
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
--eval-every. Every such override is recorded in the task's protocol params, so its protocol hash
differs from the paper's and `compare` never mistakes it for a paper-protocol number.

Several GPUs (or CPU processes): torchrun --nproc_per_node N -m vicreg_bench.cli run ... ;
extraction and training are split between the processes and only rank 0 writes the results.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vicreg_bench import distributed as D
from vicreg_bench.errors import UserError
from vicreg_bench.tasks.base import TaskContext, TaskOutput
from vicreg_bench.tasks.registry import SUITES, TASKS, TaskSpec, resolve_tasks

def add_arguments(p: argparse.ArgumentParser) -> None:
    from vicreg_bench.features import add_extraction_arguments

    g = p.add_argument_group("what to run")
    g.add_argument("--ckpt", required=True, type=Path, help="checkpoint of any supported format (see `inspect`)")
    g.add_argument("--method", default=None, help="checkpoint method when detection guesses wrong (e.g. dino, moco_v2)")
    g.add_argument("--key", default=None, help="sub-dictionary holding the model in a full checkpoint (e.g. teacher)")
    g.add_argument("--suite", default=None, choices=list(SUITES),
                   help="table1 (ImageNet linear + semi-supervised), table2 (Places205, VOC07 SVM, iNat18, "
                        "detection), knn, all (default), fast (classification on cached features)")
    g.add_argument("--tasks", default=None, help=f"comma-separated tasks instead of a suite: {', '.join(TASKS)}")
    g.add_argument("--out", type=Path, default=None, help="output folder (default: runs/<checkpoint name>)")
    g.add_argument("--protocol", default=None, choices=("paper", "fast"),
                   help="paper (default): the published protocols; fast: linear heads on cached centre-crop "
                        "features, no augmentation (labelled linear_fast in the results)")
    g.add_argument("--det-engine", default=None, choices=("detectron2", "torchvision"),
                   help="detection engine (default: the detection tasks' own choice)")
    g.add_argument("--skip-missing", action="store_true",
                   help="record tasks whose data is missing as skipped instead of stopping before any compute")
    g.add_argument("--force", action="store_true", help="recompute tasks already in OUT/results.json")
    g.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0), recorded")
    s = p.add_argument_group("scaling a protocol down (recorded in the protocol params)")
    s.add_argument("--epochs", type=int, default=None, help="epochs of the linear / semi-supervised tasks")
    s.add_argument("--batch-size", type=int, default=None, help="global batch size of training (paper: 256)")
    s.add_argument("--det-iters", type=int, default=None,
                   help="iterations of the detection tasks (option det_max_iter; steps and warmup keep their share)")
    s.add_argument("--eval-every", type=int, default=None, help="semi-supervised: evaluate every N epochs (paper: 1)")
    s.add_argument("--svm-variant", default=None, choices=("squash", "center_crop", "both"),
                   help="VOC07 SVM image variant: squash (VISSL), center_crop (paper text), both (default; "
                        "squash is the headline)")
    s.add_argument("--linear-head", default=None, choices=("linear", "bn_linear"),
                   help="linear-probe head: bn_linear (default; BatchNorm1d + Linear, PROTOCOLS.md / VISSL) or "
                        "linear (plain Linear, exactly vicreg evaluate.py; paper protocol only)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any other task option, repeatable, e.g. det_input_scale=0.1 det_ims_per_batch=2 "
                        "svm_jobs=4 knn_ks=[10,20] (values parsed as JSON when they can be); see docs/run.md")
    e = p.add_argument_group("data, device and extraction")
    add_extraction_arguments(e)
    e.add_argument("--extract-batch-size", type=int, default=None,
                   help="images per forward pass when extracting (default 256 on CUDA, 64 on CPU)")


# ------------------------------------------------------------------------------------------------- helpers


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


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


def parse_option(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` of --option; VALUE is JSON when it parses (numbers, true/false, lists), else a string."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key.replace("_", "").isalnum():
        raise UserError(f"--option {text!r}: expected KEY=VALUE, e.g. det_input_scale=0.1")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def options_from_args(args: argparse.Namespace) -> dict:
    """TaskContext.options: the run's flags that tasks read (None = the protocol's own value)."""
    options = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "image_size": args.image_size if args.image_size != 224 else None,
        "resize": args.resize,
        "workers": args.workers,
        "precision": args.precision,
        "on_bad_image": args.on_bad_image,
        "det_engine": args.det_engine,
        "det_max_iter": args.det_iters,
        "det_num_workers": args.workers,
        "eval_every": args.eval_every,
        "svm_variant": args.svm_variant,
        "linear_head": args.linear_head,
    }
    for text in args.option:
        key, value = parse_option(text)
        options[key] = value
    return options


def options_hash(task: str, protocol: str, seed: int, options: dict) -> str:
    """Hash of everything asked of a task (for tasks that cannot state their protocol before running)."""
    from vicreg_bench.results import protocol_hash

    ignored = ("workers", "det_num_workers", "on_bad_image")
    return protocol_hash(task, {"protocol": protocol, "seed": seed,
                                **{k: v for k, v in sorted(options.items()) if k not in ignored}})


def planned_protocol(spec: TaskSpec, ctx: TaskContext) -> tuple[str, dict] | None:
    fn = spec.load_protocol()
    return fn(ctx) if fn is not None else None


def is_done(entry: dict | None, protocol_hash: str | None, opts_hash: str, seed: int) -> bool:
    """A finished task of this very protocol (and seed) is in the results already."""
    if not entry or entry.get("status") != "ok" or entry.get("seed") != seed:
        return False
    if protocol_hash is not None:
        return entry.get("protocol", {}).get("hash") == protocol_hash
    return entry.get("run_options_hash") == opts_hash


def entry_from_output(out: TaskOutput, *, seed: int, seconds: float, opts_hash: str) -> dict:
    from vicreg_bench.results import task_entry

    return task_entry(status="ok", metrics=_jsonable(out.metrics), protocol_name=out.protocol_name,
                      protocol_params=_jsonable(out.protocol_params), dataset=_jsonable(out.dataset),
                      engine=out.engine, seed=seed, seconds=seconds, throughput=_jsonable(out.throughput),
                      extra=_jsonable(out.extra),
                      run_options_hash=opts_hash)


def entry_not_ok(status: str, reason: str, *, plan: tuple[str, dict] | None, task: str, seed: int,
                 seconds: float | None, opts_hash: str, **extra: Any) -> dict:
    from vicreg_bench.results import task_entry

    name, params = plan if plan is not None else (f"{task}_unknown", {})
    return task_entry(status=status, reason=reason, protocol_name=name, protocol_params=params, seed=seed,
                      seconds=seconds, run_options_hash=opts_hash, **extra)


def _jsonable(x: Any) -> Any:
    """Make a task's extra information JSON-safe (numpy scalars/arrays, tuples, paths)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def error_reason(e: BaseException) -> str:
    """One line: the exception type and message (the last line of a traceback re-raised by a DataLoader)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[-1] if any(ln.startswith("Traceback") for ln in lines) else " ".join(lines)
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:2000]


def data_problems(tasks: list[str], data_root: Path) -> dict[str, str]:
    """task -> why its data is unusable (missing / malformed splits, subset lists), for the given tasks."""
    from vicreg_bench.data.check import preflight, task_problems

    if not tasks:
        return {}
    statuses = preflight(tasks, data_root)
    out = {}
    for t in tasks:
        problems = task_problems(t, statuses)
        if problems:
            out[t] = "data missing or malformed: " + "; ".join(problems)
    return out


def summary_table(results: dict, tasks: list[str]) -> str:
    rows = [("task", "status", "protocol", "result", "seconds")]
    for t in tasks:
        e = results["tasks"].get(t)
        if e is None:
            continue
        m = e.get("metrics") or {}
        if e["status"] == "ok":
            shown = [f"{k} {v:.2f}" for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            result = ", ".join(shown[:4])
        else:
            result = (e.get("reason") or "")[:70]
        secs = "" if e.get("seconds") is None else f"{e['seconds']:.1f}"
        rows.append((t, e["status"], e["protocol"]["name"], result, secs))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main


def open_results(path: Path, info: Any, *, suite: str, protocol: str, device: str, force: bool) -> dict:
    """The results document to add to: the existing one for this checkpoint and protocol, or a new one."""
    from vicreg_bench.results import environment_info, new_results, read_results, tool_info

    ckpt = info.to_results_dict()
    if path.is_file():
        try:
            doc = read_results(path)
        except UserError:
            if not force:
                raise UserError(f"{path}: exists but is not a valid results file (use --force to replace it)") from None
            doc = None
        if doc is not None:
            if doc["checkpoint"]["sha256"] != ckpt["sha256"]:
                if not force:
                    raise UserError(f"--out {path.parent}: holds results of another checkpoint "
                                    f"({doc['checkpoint']['path']}); use another --out, or --force to start over")
                doc = None
            elif doc["protocol"] != protocol:
                if not force:
                    raise UserError(f"--out {path.parent}: holds --protocol {doc['protocol']} results; use another "
                                    f"--out for --protocol {protocol}, or --force to start over")
                doc = None
        if doc is not None:
            doc["tool"] = tool_info()
            doc["environment"] = environment_info(device, D.get_world_size())
            doc["checkpoint"] = ckpt
            if suite not in doc["suite"].split("+"):
                doc["suite"] = f"{doc['suite']}+{suite}"
            return doc
    return new_results(ckpt, suite=suite, protocol=protocol, device=device, num_processes=D.get_world_size())


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.checkpoints import load_backbone
    from vicreg_bench.data.registry import resolve_data_root
    from vicreg_bench.features import FeatureExtractor, default_cache_dir, default_resize, resolve_device
    from vicreg_bench.results import protocol_hash, write_results

    check_positive(args)
    tasks = resolve_tasks(args.suite, args.tasks)
    suite = "custom" if args.tasks else (args.suite or "all")
    protocol = resolve_protocol(args.suite, args.protocol)
    device = resolve_device(args.device)
    dist = D.init_from_env(device)
    if device == "cuda":
        device = f"cuda:{dist.local_rank}" if D.is_distributed() else "cuda"
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = False  # same command, same machine -> same numbers
        torch.backends.cudnn.deterministic = True
    data_root = resolve_data_root(args.data_root)
    out_dir = Path(args.out) if args.out else Path("runs") / Path(args.ckpt).stem
    results_path = out_dir / "results.json"
    main_rank = D.is_main()
    say = print if main_rank else (lambda *a, **k: None)

    state_dict, info = load_backbone(args.ckpt, method=args.method, key=args.key)
    say(f"checkpoint {args.ckpt}: {info.method} {info.arch} ({info.format}), sha256 {info.sha256[:12]}")
    doc = open_results(results_path, info, suite=suite, protocol=protocol, device=device, force=args.force)
    D.barrier()

    options = options_from_args(args)
    cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    extractor = FeatureExtractor(
        state_dict, info, data_root=data_root, cache_dir=cache_dir, device=device, precision=args.precision,
        image_size=args.image_size, resize=default_resize(args.image_size, args.resize),
        batch_size=args.extract_batch_size, workers=args.workers, on_bad_image=args.on_bad_image,
        shard_size=args.shard_size)

    def context(task: str) -> TaskContext:
        return TaskContext(ckpt_path=Path(args.ckpt), state_dict=state_dict, ckpt_info=info, data_root=data_root,
                           work_dir=out_dir / "work" / task, cache_dir=cache_dir, device=device, protocol=protocol,
                           seed=args.seed, options=dict(options), features=extractor, rank=D.get_rank(),
                           world_size=D.get_world_size())

    def save() -> None:
        if main_rank:
            write_results(results_path, doc)

    # Plan: which tasks are done already, and what each would run.
    plans: dict[str, tuple[str, dict] | None] = {}
    plan_errors: dict[str, str] = {}
    todo: list[str] = []
    for t in tasks:
        try:
            plans[t] = planned_protocol(TASKS[t], context(t))
        except UserError as e:  # a bad flag or option: reported below, before anything runs
            plans[t], plan_errors[t] = None, f"user:{e}"
        except Exception as e:  # e.g. an engine that cannot be imported: recorded, the other tasks run
            plans[t], plan_errors[t] = None, error_reason(e)
        phash = protocol_hash(*plans[t]) if plans[t] else None
        ohash = options_hash(t, protocol, args.seed, options)
        if not args.force and t not in plan_errors and is_done(doc["tasks"].get(t), phash, ohash, args.seed):
            say(f"{t}: already done with the same protocol (hash {phash or ohash}), skipped; --force recomputes")
            continue
        todo.append(t)

    user_errors = {t: e.removeprefix("user:") for t, e in plan_errors.items() if e.startswith("user:")}
    if user_errors:
        raise UserError("; ".join(f"{t}: {e}" for t, e in user_errors.items()))
    if protocol == "fast":
        slow = [t for t in todo if not TASKS[t].has_fast]
        if slow:
            say(f"note: {', '.join(slow)} have no fast variant and run their own protocol")

    # Preflight: every dataset split the tasks to run need, before any compute.
    missing_task = data_problems(todo, data_root)
    if missing_task and not args.skip_missing:
        lines = [f"  {t}: {why.removeprefix('data missing or malformed: ')}" for t, why in missing_task.items()]
        raise UserError(f"data for {len(missing_task)} task(s) under {data_root} is missing or malformed; nothing "
                        f"was run (--skip-missing skips those tasks; `vicreg-bench data check` shows the expected "
                        f"layouts):\n" + "\n".join(lines))

    failed: list[str] = []
    for n, t in enumerate(todo, 1):
        ohash = options_hash(t, protocol, args.seed, options)
        if t in missing_task:
            say(f"[{n}/{len(todo)}] {t}: skipped ({missing_task[t]})")
            doc["tasks"][t] = entry_not_ok("skipped", missing_task[t], plan=plans[t], task=t, seed=args.seed,
                                           seconds=None, opts_hash=ohash)
            save()
            continue
        if t in plan_errors:
            say(f"[{n}/{len(todo)}] {t}: failed ({plan_errors[t]})")
            doc["tasks"][t] = entry_not_ok("failed", plan_errors[t], plan=None, task=t, seed=args.seed,
                                           seconds=None, opts_hash=ohash)
            failed.append(t)
            save()
            continue
        ctx = context(t)
        if args.force and main_rank and Path(ctx.work_dir).exists():
            shutil.rmtree(ctx.work_dir)  # --force: no resuming from an earlier attempt
        D.barrier()
        if main_rank:
            Path(ctx.work_dir).mkdir(parents=True, exist_ok=True)
        D.barrier()
        say(f"[{n}/{len(todo)}] {t}: {TASKS[t].summary} ({plans[t][0] if plans[t] else protocol})")
        seed_everything(args.seed)
        t0 = time.perf_counter()
        try:
            output = TASKS[t].load()(ctx)
            doc["tasks"][t] = entry_from_output(output, seed=args.seed, seconds=time.perf_counter() - t0,
                                                opts_hash=ohash)
            say(f"[{n}/{len(todo)}] {t}: done in {time.perf_counter() - t0:.1f} s")
        except KeyboardInterrupt:
            save()
            raise
        except Exception as e:  # recorded in the results; the other tasks still run
            reason = error_reason(e)
            if main_rank:
                Path(ctx.work_dir).mkdir(parents=True, exist_ok=True)
                (Path(ctx.work_dir) / "error.log").write_text(traceback.format_exc())
            say(f"[{n}/{len(todo)}] {t}: FAILED: {reason} (traceback in {Path(ctx.work_dir) / 'error.log'})",
                file=sys.stderr)
            doc["tasks"][t] = entry_not_ok("failed", reason, plan=plans[t], task=t, seed=args.seed,
                                           seconds=time.perf_counter() - t0, opts_hash=ohash)
            failed.append(t)
        save()
        D.barrier()

    if main_rank:
        save()
        print()
        print(summary_table(doc, tasks))
        print(f"\nresults: {results_path}")
    D.barrier()
    D.cleanup()
    asked_failed = [t for t in tasks if doc["tasks"].get(t, {}).get("status") == "failed"]
    return 1 if asked_failed else 0

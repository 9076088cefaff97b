"""Run a suite on one checkpoint in this process (or under torchrun) and write OUT/results.json.

In order: resolve each task's typed options; load the checkpoint once; plan every task (its protocol and
whether the results already hold it); check every dataset the remaining tasks need before any compute;
run each task, writing the results after every task (atomically, schema-checked). A task that fails is
recorded with its error and the others still run. Under torchrun extraction and training are split between
the processes and only rank 0 writes.
"""

from __future__ import annotations

import random
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from vicreg_bench import distributed as D
from vicreg_bench.errors import UserError
from vicreg_bench.locks import FileLock, describe_holder
from vicreg_bench.results.entry import jsonable, task_entry
from vicreg_bench.runner.plan import RunConfig, TaskPlan, data_problems, is_done, plan_task, task_options
from vicreg_bench.runner.summary import error_reason, summary_table
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.context import TaskContext, TaskOutput, TaskSkipped


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def entry_from_output(out: TaskOutput, *, seed: int, seconds: float) -> dict:
    return task_entry(status="ok", metrics=jsonable(out.metrics), protocol_name=out.protocol_name,
                      protocol_params=jsonable(out.protocol_params), dataset=jsonable(out.dataset),
                      engine=out.engine, seed=seed, seconds=seconds, throughput=jsonable(out.throughput),
                      extra=jsonable(out.extra))


def entry_not_ok(status: str, reason: str, plan: TaskPlan | None, task: str, seed: int,
                 seconds: float | None) -> dict:
    name, params = plan.protocol if plan is not None and plan.protocol else (f"{task}_unknown", {})
    return task_entry(status=status, reason=reason, protocol_name=name, protocol_params=params, seed=seed,
                      seconds=seconds)


def open_results(path: Path, info: Any, *, label: str | None, suite: str, protocol: str, device: str,
                 force: bool) -> dict:
    """The results document to add to: the existing one for this checkpoint and protocol, or a new one
    (with --force, an existing file of another checkpoint or protocol is replaced by it right away)."""
    from vicreg_bench.results.io import environment_info, new_results, read_results, replace_results, tool_info

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
            doc["checkpoint"] = {**ckpt, "label": label if label is not None else doc["checkpoint"].get("label")}
            if suite not in doc["suite"].split("+"):
                doc["suite"] = f"{doc['suite']}+{suite}"
            return doc
    doc = new_results(ckpt, suite=suite, protocol=protocol, device=device, num_processes=D.get_world_size())
    doc["checkpoint"]["label"] = label
    if force and path.is_file() and D.is_main():
        replace_results(path, doc)
    return doc


def run_suite(config: RunConfig, say: Callable[..., None] = print) -> int:
    """Run `config`'s tasks; the exit status: 1 if a task asked for failed, else 0."""
    from vicreg_bench.checkpoints import load_backbone
    from vicreg_bench.features.cache import default_cache_dir
    from vicreg_bench.features.extract import FeatureExtractor, resolve_device
    from vicreg_bench.features.transforms import default_resize
    from vicreg_bench.results.io import read_results, update_results

    specs = all_tasks()
    ignored: list[str] = []
    options = task_options(config.tasks, config.options, ignored)  # a bad option stops the run before anything loads
    device = resolve_device(config.device)
    dist = D.init_from_env(device)
    if device == "cuda":
        device = f"cuda:{dist.local_rank}" if D.is_distributed() else "cuda"
    if device.startswith("cuda"):
        torch.backends.cudnn.benchmark = False  # same command, same machine -> same numbers
        torch.backends.cudnn.deterministic = True
    results_path = config.out / "results.json"
    main_rank = D.is_main()
    if not main_rank:
        say = lambda *a, **k: None  # noqa: E731

    for line in ignored:
        say(f"note: {line}")
    state_dict, info = load_backbone(config.ckpt, method=config.method, key=config.key)
    say(f"checkpoint {config.ckpt}: {info.method} {info.arch} ({info.format}), sha256 {info.sha256[:12]}"
        + (f", label {config.label!r}" if config.label else ""))
    doc = open_results(results_path, info, label=config.label, suite=config.suite, protocol=config.protocol,
                       device=device, force=config.force)
    D.barrier()

    s = config.settings
    cache_dir = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
    extractor = FeatureExtractor(
        state_dict, info, data_root=config.data_root, cache_dir=cache_dir, device=device, precision=s.precision,
        image_size=s.image_size, resize=default_resize(s.image_size, s.resize), batch_size=config.extract_batch_size,
        workers=s.workers, on_bad_image=s.on_bad_image, shard_size=config.shard_size)

    def context(task: str) -> TaskContext:
        return TaskContext(ckpt_path=Path(config.ckpt), state_dict=state_dict, ckpt_info=info,
                           data_root=config.data_root, work_dir=config.out / "work" / task, cache_dir=cache_dir,
                           options=options[task], settings=s, device=device, protocol=config.protocol,
                           seed=config.seed, features=extractor, rank=D.get_rank(), world_size=D.get_world_size())

    def save(task: str) -> None:
        """Merge this task's entry into the results file (other processes may be writing other tasks)."""
        nonlocal doc
        if main_rank:
            doc = update_results(results_path, doc, [task])

    # Plan: what each task would run, and which are done already.
    plans: dict[str, TaskPlan] = {}
    user_errors: list[str] = []
    todo: list[str] = []
    for t in config.tasks:
        try:
            plans[t] = plan_task(specs[t], context(t))
        except UserError as e:  # a bad flag or option: reported below, before anything runs
            user_errors.append(f"{t}: {e}")
            continue
        if not config.force and is_done(doc["tasks"].get(t), plans[t], config.seed):
            say(f"{t}: already done with the same protocol (hash {plans[t].hash}), skipped; --force recomputes")
            continue
        todo.append(t)
    if user_errors:
        raise UserError("; ".join(user_errors))
    if config.protocol == "fast":
        slow = [t for t in todo if not specs[t].has_fast]
        if slow:
            say(f"note: {', '.join(slow)} have no fast variant and run their own protocol")

    # Preflight: every dataset split the tasks to run need, before any compute.
    missing = data_problems([t for t in todo if plans[t].skip is None], config.data_root)
    if missing and not config.skip_missing:
        lines = [f"  {t}: {why.removeprefix('data missing or malformed: ')}" for t, why in missing.items()]
        raise UserError(f"data for {len(missing)} task(s) under {config.data_root} is missing or malformed; "
                        f"nothing was run (--skip-missing skips those tasks; `vicreg-bench data check` shows the "
                        f"expected layouts):\n" + "\n".join(lines))

    def run_one(n: int, t: str) -> None:
        """Run task `t` (its lock held) and merge its entry, ok or failed, into the results file."""
        plan = plans[t]
        ctx = context(t)
        if config.force and main_rank and Path(ctx.work_dir).exists():
            shutil.rmtree(ctx.work_dir)  # --force: no resuming from an earlier attempt
        D.barrier()
        if main_rank:
            Path(ctx.work_dir).mkdir(parents=True, exist_ok=True)
        D.barrier()
        say(f"[{n}/{len(todo)}] {t}: {specs[t].summary} ({plan.protocol[0] if plan.protocol else config.protocol})")
        seed_everything(config.seed)
        t0 = time.perf_counter()
        try:
            output = specs[t].run(ctx)
            doc["tasks"][t] = entry_from_output(output, seed=config.seed, seconds=time.perf_counter() - t0)
            say(f"[{n}/{len(todo)}] {t}: done in {time.perf_counter() - t0:.1f} s")
        except KeyboardInterrupt:
            save(t)
            raise
        except TaskSkipped as e:
            say(f"[{n}/{len(todo)}] {t}: skipped ({e})")
            doc["tasks"][t] = entry_not_ok("skipped", str(e), plan, t, config.seed, None)
        except Exception as e:  # recorded in the results; the other tasks still run
            reason = error_reason(e)
            if main_rank:
                Path(ctx.work_dir).mkdir(parents=True, exist_ok=True)
                (Path(ctx.work_dir) / "error.log").write_text(traceback.format_exc())
            say(f"[{n}/{len(todo)}] {t}: FAILED: {reason} (traceback in {Path(ctx.work_dir) / 'error.log'})",
                file=sys.stderr)
            doc["tasks"][t] = entry_not_ok("failed", reason, plan, t, config.seed, time.perf_counter() - t0)
        save(t)
        D.barrier()

    for n, t in enumerate(todo, 1):
        plan = plans[t]
        if plan.skip is not None:
            say(f"[{n}/{len(todo)}] {t}: skipped ({plan.skip})")
            doc["tasks"][t] = entry_not_ok("skipped", plan.skip, plan, t, config.seed, None)
            save(t)
            continue
        if t in missing:
            say(f"[{n}/{len(todo)}] {t}: skipped ({missing[t]})")
            doc["tasks"][t] = entry_not_ok("skipped", missing[t], plan, t, config.seed, None)
            save(t)
            continue
        if plan.error is not None:
            say(f"[{n}/{len(todo)}] {t}: failed ({plan.error})")
            doc["tasks"][t] = entry_not_ok("failed", plan.error, None, t, config.seed, None)
            save(t)
            continue
        task_lock = FileLock(config.out / ".locks" / f"{t}.lock", what=f"{t} of {config.ckpt}")
        if not take_task_lock(task_lock, t, plan, config, results_path, say):
            continue
        try:
            run_one(n, t)
        finally:
            task_lock.release()

    if main_rank:
        say()
        say(summary_table(doc, config.tasks))
        say(f"\nresults: {results_path}")
    D.cleanup()  # waits for every rank first
    if main_rank and results_path.is_file():
        doc = read_results(results_path)  # tasks other processes finished meanwhile count too
    failed = [t for t in config.tasks if doc["tasks"].get(t, {}).get("status") == "failed"]
    return 1 if failed else 0


def take_task_lock(lock: FileLock, task: str, plan: TaskPlan, config: RunConfig, results_path: Path,
                   say: Callable[..., None]) -> bool:
    """Hold the task's lock before running it, so two runs never compute one task at once: when another
    process holds it, wait; then, lock held, skip the task if another process has finished it meanwhile.
    Under torchrun rank 0 decides for every rank."""
    from vicreg_bench.results.io import read_results

    run_it = True
    if D.is_main():
        if not lock.acquire(wait=False):
            say(f"{task}: already running in {describe_holder(lock.holder())}; waiting for it to finish")
            lock.acquire(wait=True)
        entry = read_results(results_path)["tasks"].get(task) if results_path.is_file() else None
        if not config.force and is_done(entry, plan, config.seed):
            say(f"{task}: finished by another process meanwhile, skipped")
            lock.release()
            run_it = False
    return bool(D.broadcast_object(run_it)) if D.is_distributed() else run_it

"""The demo's stages, in order (see `vicreg_bench.demo`): data, random init, pretraining beside the
random-init evaluation, the pretrained evaluation, the report, and the beats-random-init check."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vicreg_bench.demo.budget import Budget
from vicreg_bench.demo.jobs import Lane, Stages, run_job, side_by_side_env, tool
from vicreg_bench.demo.plan import check_table, headline_check, run_args, task_groups
from vicreg_bench.demo.pretrain import pretrain_command, write_random_init
from vicreg_bench.errors import UserError

TRAINED, RANDOM = "vicreg", "random_init"
LABELS = {TRAINED: "VICReg (demo)", RANDOM: "random init"}
OUTPUTS = ("pretrain", "pretrain_images", "checkpoints", "runs", "cache", "report.html", "comparison.md",
           "demo_summary.json")


@dataclass
class DemoConfig:
    out: Path
    size: str
    budget: Budget
    seed: int = 0
    workers: int = 0
    skip_detection: bool = False
    force: bool = False
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # task or "*" -> {option: value}


def default_workers() -> int:
    """Loader processes: none on a 2-core machine (both cores already compute), a few on bigger ones."""
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus // 4)


def stage_data(out: Path, size: str, seed: int, force: bool, st: Stages) -> tuple[Path, bool]:
    """OUT/data: the synthetic suite; (root, reused). Another suite there is replaced only with --force."""
    from vicreg_bench.data.synth import GENERATOR_VERSION, MARKER

    root = out / "data"
    marker = root / MARKER
    wanted = {"generator_version": GENERATOR_VERSION, "size": size, "seed": seed}
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == wanted:
                print(f"{root}: the {size} synthetic suite (seed {seed}) is already there, reused")
                return root, True
        except (OSError, json.JSONDecodeError):
            pass
        if not force:
            raise UserError(f"{root}: holds another synthetic suite than --size {size} --seed {seed}; "
                            f"use another --out, or --force to start over")
    rc = run_job("vicreg-bench data synth", tool("vicreg-bench") + ["data", "synth", "--root", str(root), "--size", size,
                                                                   "--seed", str(seed)], st)
    if rc != 0:
        raise UserError(f"writing the synthetic suite to {root} failed (exit status {rc})")
    return root, False


def merge_group_results(parts: list[Path], dest: Path) -> None:
    """Merge one checkpoint's group runs into `dest` (tasks in the registry's order; suite `all` when every
    registered task is there)."""
    from vicreg_bench.results.io import read_results, write_results
    from vicreg_bench.results.merge import merge_results
    from vicreg_bench.tasks.catalog import all_tasks

    docs = [read_results(p) for p in [dest, *parts] if p.is_file()]
    protocols = {d["protocol"] for d in docs}
    if len(protocols) > 1:
        raise UserError(f"{dest.parent}: results of different protocols ({', '.join(sorted(protocols))})")
    tasks = set().union(*(d["tasks"] for d in docs))
    every = all_tasks()
    merged = merge_results(docs, order=list(every), suite="all" if tasks >= set(every) else None)
    write_results(dest, merged)


def run_demo(cfg: DemoConfig) -> int:
    """Everything `vicreg-bench demo` does; returns the exit status."""
    out = cfg.out
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if cfg.force:
        for name in OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    st = Stages(total=6)
    print(f"vicreg-bench demo: the pipeline on synthetic data, on the CPU, into {out.resolve()}")
    print(f"budget: {json.dumps(asdict(cfg.budget))}")
    background: list[Lane] = []
    try:
        return _pipeline(cfg, st, background)
    finally:
        for lane in background:  # interrupted: its child got the same Ctrl-C; let it save its results
            lane.stop()


def _pipeline(cfg: DemoConfig, st: Stages, background: list[Lane]) -> int:
    from vicreg_bench.results.io import read_results

    b, out = cfg.budget, cfg.out
    st.start("data", f"synthetic {cfg.size} suite -> {out / 'data'}")
    data, reused = stage_data(out, cfg.size, cfg.seed, cfg.force, st)
    if reused:
        st.reused()

    st.start("random_init", f"random-init {b.arch}: the trainer's own initialisation (seed {cfg.seed})")
    random_ckpt = out / "checkpoints" / f"random_init_{b.arch}.pth"
    if write_random_init(b.arch, b.mlp, cfg.seed, random_ckpt):
        print(f"wrote {random_ckpt}")
    else:
        print(f"{random_ckpt}: reused")
        st.reused()

    # The suite runs as several `vicreg-bench run` calls per backbone, side by side on the cores, merged
    # afterwards into OUT/runs/<backbone>/results.json.
    groups = task_groups(cfg.skip_detection, cfg.size)
    results = {name: out / "runs" / name / "results.json" for name in (TRAINED, RANDOM)}

    def run_dir(name: str, group: list[str]) -> Path:
        return results[name].parent if group is groups[0] else out / "runs" / f"{name}_{group[0]}"

    def evaluate(name: str, ckpt: Path, group: list[str]) -> tuple[str, list[str]]:
        label = f"vicreg-bench run ({name}{'' if group is groups[0] else ': ' + ','.join(group)})"
        return label, tool("vicreg-bench") + run_args(b, cfg.size, ckpt, LABELS[name], data, run_dir(name, group),
                                                      out / "cache", cfg.seed, cfg.workers, group, cfg.overrides)

    def finish_lane(lane: Lane, ckpt: Path) -> None:
        jobs = lane.wait()
        for job in jobs:
            st.add_process(job)
        bad = [j for j in jobs if j.rc not in (0, 1)]  # 1: a task failed; recorded, and the others still count
        if bad or len(jobs) < len(lane.commands):
            rc = bad[0].rc if bad else "?"
            raise UserError(f"vicreg-bench run on {ckpt} stopped with exit status {rc} (its output: {lane.log}); "
                            f"run the demo again to resume")

    env = side_by_side_env()
    # Pretraining and the random-init evaluation do not depend on each other: they share the cores.
    st.start("pretrain+random_eval", f"VICReg pretraining of a {b.arch} ({b.pretrain_epochs} epochs) -> "
             f"{out / 'pretrain'}, beside `vicreg-bench run` on the random-init backbone")
    random_log = results[RANDOM].parent / "run.log"
    print(f"random-init evaluation in the background: its task lines are prefixed 'random-init |', its full "
          f"output is in {random_log}")
    lane = Lane([evaluate(RANDOM, random_ckpt, g) for g in groups], env=env, log=random_log,
                prefix="  random-init | ").start()
    background.append(lane)
    train_cmd, trained_ckpt = pretrain_command(b, data, out, cfg.seed, cfg.workers)
    if train_cmd is not None:
        rc = run_job("vicreg-train", train_cmd, st, env=env)
        if rc != 0 or not trained_ckpt.is_file():
            raise UserError(f"pretraining failed (vicreg-train exit status {rc}); its log is "
                            f"{out / 'pretrain' / 'log.jsonl'}. Run the demo again to resume it")
    else:
        st.reused()
    if lane.running():
        print(f"pretraining done; waiting for the random-init evaluation (elapsed {st.elapsed()})", flush=True)
    finish_lane(lane, random_ckpt)

    own = groups[1:]
    st.start("trained_eval", "`vicreg-bench run` on the pretrained backbone"
             + (f" ({', '.join(g[0] for g in own)} beside the other tasks)" if own else ""))
    lane = None
    if own:
        side_log = run_dir(TRAINED, own[0]) / "run.log"
        print(f"{', '.join(g[0] for g in own)} in the background, prefixed 'vicreg |' (full output: {side_log})")
        lane = Lane([evaluate(TRAINED, trained_ckpt, g) for g in own], env=env, log=side_log,
                    prefix="  vicreg | ").start()
        background.append(lane)
    label, cmd = evaluate(TRAINED, trained_ckpt, groups[0])
    rc = run_job(label, cmd, st, env=env if lane is not None else None)
    if rc not in (0, 1):
        raise UserError(f"vicreg-bench run on {trained_ckpt} stopped with exit status {rc}; run the demo again to resume")
    if lane is not None:
        if lane.running():
            print(f"waiting for {', '.join(g[0] for g in own)} on the pretrained backbone (elapsed {st.elapsed()})",
                  flush=True)
        finish_lane(lane, trained_ckpt)
    for name in (TRAINED, RANDOM):
        merge_group_results([run_dir(name, g) / "results.json" for g in own], results[name])

    st.start("report", "comparison table and HTML report")
    from vicreg_bench.compare.render import render_markdown, render_text
    from vicreg_bench.compare.report import build_report
    from vicreg_bench.compare.runs import load_runs
    from vicreg_bench.compare.table import build_table
    from vicreg_bench.fileio import atomic_write_json, atomic_write_text

    runs = load_runs([results[TRAINED], results[RANDOM]])
    table = build_table(runs)
    print(render_text(table))
    md_path, html_path, log_path = out / "comparison.md", out / "report.html", out / "pretrain" / "log.jsonl"
    atomic_write_text(md_path, render_markdown(table))
    html = build_report(runs, table=table, train_logs=[log_path],
                        title=f"vicreg-bench demo: VICReg-pretrained vs random-init {b.arch} (synthetic data, CPU)")
    atomic_write_text(html_path, html)
    print(f"wrote {md_path} and {html_path}")
    print(f"(the same with the CLI: vicreg-bench compare {results[TRAINED]} {results[RANDOM]} -o {html_path} "
          f"--train-log {log_path})")

    st.start("check", "does pretraining beat random init on every task?")
    trained_doc, random_doc = read_results(results[TRAINED]), read_results(results[RANDOM])
    rows = headline_check(trained_doc, random_doc, list(trained_doc["tasks"]))
    print(check_table(rows))
    losers = [f"{r['task']}.{r['metric']}" for r in rows if not r["beats_random"]]
    st.finish()

    summary = {"out": str(out.resolve()), "size": cfg.size, "seed": cfg.seed, "budget": asdict(b),
               "results": {k: str(v) for k, v in results.items()}, "report": str(html_path),
               "comparison": str(md_path), "check": rows, "all_beat_random": not losers, "stages": st.records,
               "wall_s": round(time.perf_counter() - st.t0, 1), "cpu_count": os.cpu_count()}
    atomic_write_json(out / "demo_summary.json", summary)
    print("\ntime per stage (cpu s: every process of the stage; 2 busy cores give 2 cpu s per s):")
    print(st.table())
    if losers:
        bar = "!" * 100
        why = ("--size tiny is a smoke run: its numbers mean nothing" if cfg.size == "tiny" else
               "budgets too small for this seed or machine? see docs/demo.md")
        print(f"\n{bar}\nWARNING: the pretrained backbone did NOT beat random init on: {', '.join(losers)}\n"
              f"({why})\n{bar}")
    else:
        print(f"\nthe pretrained backbone beats random init on all {len(rows)} headline metrics")
    print(f"\nreport: {html_path.resolve()}")
    return 0

"""The whole pipeline on an embedded synthetic dataset, on the CPU: what `make demo` runs.

    vicreg-bench demo [--out demo_out]

Stages (each one reuses what is already complete, so running the command again after an interruption
picks up where it stopped):
  1. data         the synthetic `small` suite (every dataset in its official layout) -> OUT/data
  2. random init  the backbone vicreg-train starts from (same seed, same construction), written with the
                  checkpoints' torchvision writer -> OUT/checkpoints/random_init_<arch>.pth
  3. pretrain     `vicreg-train` on the synthetic ImageNet train images -> OUT/pretrain (resnet18.pth,
                  the resumable model.pth, the JSON-lines log log.jsonl), while `vicreg-bench run` evaluates
                  the random-init backbone beside it -> OUT/runs/random_init/results.json
  4. evaluate     `vicreg-bench run` on the pretrained backbone -> OUT/runs/vicreg/results.json
  5. report       the comparison table (printed, OUT/comparison.md) and the self-contained HTML report with
                  the training curves -> OUT/report.html
  6. check        the pretrained backbone must beat random init on every task's headline metric; the demo
                  says loudly which ones (if any) did not (the exit status stays 0: the pipeline worked)

The suite runs as two `run` calls per backbone (every task but voc07_det, then voc07_det, each detection
task with its own scale-down), two processes at a time on the cores, merged into one results JSON per
backbone. Every scale-down is recorded in the results (the comparison marks those cells as not the paper's
protocol). The defaults take about 12 minutes on a 2-core CPU; docs/demo.md has the measured times and
numbers. `--size tiny` is the one-minute smoke run of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vicreg_bench.errors import UserError

TRAINED, RANDOM = "vicreg", "random_init"

# (task, metric) pairs the check compares: the headline number of every task (the paper's columns).
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("imagenet_knn", "k20_top1"),
    ("imagenet_knn", "k200_top1"),
    ("voc07_svm", "mAP"),
    ("imagenet_linear", "top1"),
    ("places205_linear", "top1"),
    ("inat18_linear", "top1"),
    ("imagenet_semisup_1pct", "top1"),
    ("imagenet_semisup_10pct", "top1"),
    ("voc07_det", "AP50"),
    ("coco_det", "bbox_AP"),
)
DETECTION_TASKS = ("voc07_det", "coco_det")


@dataclass(frozen=True)
class DetBudget:
    """One detection task's scale-down: iterations and `--option det_*` values (see docs/detection.md)."""

    iters: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """Everything the demo scales down; `--size` picks a preset, flags override single fields."""

    arch: str = "resnet18"
    mlp: str = "2048-2048-2048"
    # pretraining (vicreg-train)
    pretrain_epochs: int = 15
    pretrain_batch: int = 32
    pretrain_lr: float = 10.0  # base lr: peak = base * batch / 256, LARS as the official code
    pretrain_warmup: float = 1.0
    pretrain_size: int = 64
    crop_min_scale: float = 0.2
    pretrain_data: str = "imagenet"  # "imagenet": its train images; "all": + places205 and inat2018 train images
    # evaluation (vicreg-bench run)
    image_size: int = 64
    eval_epochs: int = 3
    eval_batch: int = 32
    svm_costs: tuple[float, ...] | None = None  # None: VISSL's costs
    voc07_det: DetBudget = DetBudget(170, {"det_ims_per_batch": 2, "det_roi_per_image": 8, "det_base_lr": 0.02})
    coco_det: DetBudget = DetBudget(40, {"det_ims_per_batch": 4, "det_roi_per_image": 16})


# Both detection tasks: inputs scaled to the ~100 px synthetic images, few proposals and detections per test
# image (the C4 box head runs res5 on every proposal; Mask R-CNN runs its mask head on every detection).
DET_COMMON = {"det_input_scale": 0.15, "det_test_proposals": 10, "det_detections_per_image": 10,
              "det_precise_bn_iters": 10, "det_max_test_images": 100}
PRESETS: dict[str, Budget] = {
    "small": Budget(),
    "tiny": Budget(mlp="256-256", pretrain_epochs=1, pretrain_batch=16, pretrain_size=32, image_size=32,
                   eval_epochs=1, eval_batch=16, svm_costs=(0.1, 1.0),
                   voc07_det=DetBudget(1, {"det_ims_per_batch": 2, "det_roi_per_image": 8, "det_input_scale": 0.1,
                                           "det_precise_bn_iters": 0, "det_max_test_images": 8}),
                   coco_det=DetBudget(1, {"det_ims_per_batch": 2, "det_roi_per_image": 8, "det_input_scale": 0.1,
                                          "det_precise_bn_iters": 0, "det_max_test_images": 8})),
}


# ------------------------------------------------------------------------------------------------ console


class Stages:
    """Stage headers with elapsed time, and per-stage wall / CPU seconds (CPU counts this process and the
    child processes the stage waited for)."""

    def __init__(self, total: int):
        self.total = total
        self.t0 = time.perf_counter()
        self.records: list[dict] = []
        self._current: dict | None = None

    @staticmethod
    def _cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    def elapsed(self) -> str:
        s = int(time.perf_counter() - self.t0)
        return f"{s // 60}:{s % 60:02d}"

    def start(self, name: str, title: str) -> None:
        self.finish()
        n = len(self.records) + 1
        print(f"\n=== [{n}/{self.total}] {title}  (elapsed {self.elapsed()}) ===", flush=True)
        self._current = {"stage": name, "wall_s": time.perf_counter(), "cpu_s": self._cpu(), "reused": False,
                         "processes": []}

    def reused(self) -> None:
        if self._current is not None:
            self._current["reused"] = True

    def add_process(self, job: "Job") -> None:
        if self._current is not None and job.wall_s is not None:
            self._current["processes"].append({"name": job.name, "wall_s": round(job.wall_s, 1),
                                               "cpu_s": round(job.cpu_s or 0.0, 1), "exit_status": job.rc})

    def finish(self) -> None:
        if self._current is None:
            return
        c = self._current
        c["wall_s"] = round(time.perf_counter() - c["wall_s"], 1)
        c["cpu_s"] = round(self._cpu() - c["cpu_s"], 1)
        self.records.append(c)
        self._current = None

    def table(self) -> str:
        rows = [f"  {'stage / process':<44} {'wall s':>8} {'cpu s':>8}"]
        for r in self.records:
            rows.append(f"  {r['stage']:<44} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f}" + ("  (reused)" if r["reused"] else ""))
            if len(r["processes"]) > 1:  # side by side: show each one
                for p in r["processes"]:
                    rows.append(f"    {p['name']:<42} {p['wall_s']:>8.1f} {p['cpu_s']:>8.1f}")
        total_cpu = sum(r["cpu_s"] for r in self.records)
        rows.append(f"  {'total':<44} {time.perf_counter() - self.t0:>8.1f} {total_cpu:>8.1f}")
        return "\n".join(rows)


TASK_LINE = re.compile(r"^\[\d+/\d+\] \S+: (done|FAILED|failed|skipped|already)|^\S+: already done|^epoch \d+/\d+ done")


@dataclass
class Job:
    """A tool running as a child process; `wait()` reaps it and records its wall and CPU seconds."""

    name: str
    proc: subprocess.Popen
    t0: float
    log: Path | None = None
    rc: int | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    _tail: threading.Thread | None = None

    def wait(self) -> int:
        if self.rc is None:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.rc = os.waitstatus_to_exitcode(status)
            self.proc.returncode = self.rc  # reaped here, so Popen must not wait for it again
            self.wall_s = time.perf_counter() - self.t0
            self.cpu_s = usage.ru_utime + usage.ru_stime
        if self._tail is not None:
            self._tail.join(timeout=5)
        return self.rc

    def running(self) -> bool:
        return self.rc is None and self.proc.poll() is None

    def stop(self) -> None:
        """After an interruption: give the child (which got the same Ctrl-C) time to save, then end it."""
        if self.rc is not None or self.proc.returncode is not None:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_job(name: str, cmd: list[str], *, env: dict[str, str] | None = None, log: Path | None = None,
              prefix: str = "", echo: str = "") -> Job:
    """Start a tool as a user would run it, echoing the command. With `log`, its output goes to that file
    and only its task / epoch lines are echoed (prefixed) to this console."""
    print(f"{echo}$ " + " ".join(shlex.quote(c) for c in cmd) + (f"  >> {log}" if log else ""), flush=True)
    handle, offset = None, 0
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "ab")
        offset = handle.tell()  # echo only what this run appends
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT if handle else None)
    except FileNotFoundError:
        raise UserError(f"cannot start {cmd[0]!r}: is vicreg-bench installed in this environment?") from None
    finally:
        if handle is not None:
            handle.close()
    job = Job(name, proc, time.perf_counter(), log)
    if log is not None:
        job._tail = threading.Thread(target=_echo_progress, args=(job, log, offset, prefix), daemon=True)
        job._tail.start()
    return job


def _echo_progress(job: Job, log: Path, offset: int, prefix: str) -> None:
    """Print the task-level lines a background tool writes to its log, as they appear."""
    pending = ""
    with open(log, "rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read().decode("utf-8", "replace")
            if chunk:
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    last = line.split("\r")[-1].strip()
                    if TASK_LINE.search(last):
                        print(f"{prefix}{last}", flush=True)
            elif job.rc is not None or job.proc.poll() is not None:
                break
            else:
                time.sleep(0.5)


def run_job(name: str, cmd: list[str], st: Stages, *, env: dict[str, str] | None = None) -> int:
    """Run a tool in the foreground (its own progress output on this console) and record its time."""
    job = start_job(name, cmd, env=env)
    try:
        rc = job.wait()
    finally:
        job.stop()
    st.add_process(job)
    return rc


class Lane:
    """Tools run one after the other in a background thread, beside the foreground work; their output goes
    to one log file and their task lines are echoed with a prefix."""

    def __init__(self, commands: list[tuple[str, list[str]]], *, env: dict[str, str], log: Path, prefix: str):
        self.commands, self.env, self.log, self.prefix = commands, env, log, prefix
        self.jobs: list[Job] = []
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Lane":
        self.thread.start()
        return self

    def _run(self) -> None:
        for name, cmd in self.commands:
            if self.stopped:
                return
            job = start_job(name, cmd, env=self.env, log=self.log, prefix=self.prefix, echo=self.prefix)
            self.jobs.append(job)
            if job.wait() not in (0, 1):
                return

    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self) -> list[Job]:
        self.thread.join()
        return self.jobs

    def stop(self) -> None:
        self.stopped = True
        for job in self.jobs:
            job.stop()
        self.thread.join(timeout=60)


def side_by_side_env() -> dict[str, str]:
    """Environment of two tools sharing the machine: each gets half the cores as compute threads
    (oversubscribed OpenMP threads spin and waste CPU), unbuffered output for the log echo."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 2) // 2))
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    return env


def tool(name: str) -> list[str]:
    """The console script next to this Python (the venv's), else `python -m` of its module."""
    script = Path(sys.executable).with_name(name)
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", {"vicreg-bench": "vicreg_bench", "vicreg-train": "trainers.vicreg.train"}[name]]


# ------------------------------------------------------------------------------------------------ stages


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


PRETRAIN_SOURCES = {"imagenet": ("imagenet",), "all": ("imagenet", "places205", "inat2018")}


def pretraining_images(data: Path, out: Path, which: str) -> Path:
    """The unlabelled pretraining images as one ImageFolder for vicreg-train.

    "imagenet" is the synthetic ImageNet train split itself; "all" links the train images of the three
    classification datasets into OUT/pretrain_images/<dataset>_<class>/ (labels are never used)."""
    if which == "imagenet":
        return data / "imagenet"
    from vicreg_bench.data.registry import open_classification

    folder = out / "pretrain_images"
    done = folder / "COMPLETE"
    if done.is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    n = 0
    for name in PRETRAIN_SOURCES[which]:
        ds = open_classification(name, data, "train")
        for i, (rel, label) in enumerate(ds.samples):
            src = (Path(ds.root) / rel).resolve()
            dst = folder / f"{name}_{int(label):03d}" / f"{i:05d}{src.suffix.lower()}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(src, dst)
            except OSError:  # no symlinks here (some file systems): copy the small JPEG
                shutil.copyfile(src, dst)
            n += 1
    done.write_text(f"{n} images from the train splits of {', '.join(PRETRAIN_SOURCES[which])}\n")
    print(f"{folder}: {n} unlabelled training images ({', '.join(PRETRAIN_SOURCES[which])})")
    return folder


def pretrain_args(b: Budget, images: Path, exp: Path, seed: int, workers: int) -> list[str]:
    return ["--data", str(images), "--exp-dir", str(exp), "--arch", b.arch, "--mlp", b.mlp,
            "--image-size", str(b.pretrain_size), "--crop-min-scale", str(b.crop_min_scale),
            "--epochs", str(b.pretrain_epochs), "--batch-size", str(b.pretrain_batch),
            "--base-lr", str(b.pretrain_lr), "--warmup-epochs", str(b.pretrain_warmup),
            "--num-workers", str(workers), "--device", "cpu", "--seed", str(seed), "--log-every", "4",
            "--diag-batches", "4"]


# vicreg-train arguments that must match for a finished or half-done pretraining to be reused
PRETRAIN_KEYS = ("arch", "mlp", "image_size", "crop_min_scale", "epochs", "batch_size", "base_lr", "warmup_epochs", "seed")


def read_log(path: Path) -> list[dict]:
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by an interruption
    return records


def pretraining_state(exp: Path, wanted: dict) -> str:
    """'finished' (backbone exported with these settings), 'partial' (resumable), 'none' or 'other'."""
    log = read_log(exp / "log.jsonl")
    starts = [r for r in log if r.get("type") == "start"]
    if not starts:
        return "partial" if (exp / "model.pth").is_file() else "none"
    args = starts[0].get("args", {})
    if any(args.get(k) != v for k, v in wanted.items()):
        return "other"
    backbone = exp / f"{wanted['arch']}.pth"
    ends = [r for r in log if r.get("type") == "end"]
    if backbone.is_file() and ends and ends[-1].get("status") == "finished":
        return "finished"
    return "partial" if (exp / "model.pth").is_file() else "none"


def pretrain_command(b: Budget, data: Path, out: Path, seed: int, workers: int) -> tuple[list[str] | None, Path]:
    """(the vicreg-train command to run, or None when a finished pretraining is reused; the backbone path)."""
    exp = out / "pretrain"
    args = pretrain_args(b, pretraining_images(data, out, b.pretrain_data), exp, seed, workers)
    wanted = {"arch": b.arch, "mlp": b.mlp, "image_size": b.pretrain_size, "crop_min_scale": b.crop_min_scale,
              "epochs": b.pretrain_epochs, "batch_size": b.pretrain_batch, "base_lr": b.pretrain_lr,
              "warmup_epochs": b.pretrain_warmup, "seed": seed, "data": args[1]}
    state = pretraining_state(exp, wanted)
    backbone = exp / f"{b.arch}.pth"
    if state == "finished":
        print(f"{backbone}: pretraining already finished with these settings, reused")
        return None, backbone
    if state == "other":
        raise UserError(f"{exp}: holds a pretraining with other settings; use another --out, or --force to start over")
    if state == "partial":
        print(f"{exp / 'model.pth'}: resuming the interrupted pretraining")
        args.append("--resume")
    elif exp.exists():
        shutil.rmtree(exp)  # a start that never reached its first record: nothing worth keeping
    return tool("vicreg-train") + args, backbone


def write_random_init(arch: str, mlp: str, seed: int, path: Path) -> bool:
    """The trainer's initial backbone (same seed, same construction order), as a torchvision file.

    vicreg-train seeds torch with --seed and then builds `VICReg(arch, mlp)` (backbone first, zero-init
    residual BN), so this is exactly the network the pretraining started from. Returns False if reused."""
    if path.is_file():
        return False
    import torch

    from trainers.vicreg.export import backbone_state_dict
    from trainers.vicreg.model import VICReg
    from vicreg_bench.checkpoints.convert import save_torchvision

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = VICReg(arch, mlp)
        sd = {k: v for k, v in backbone_state_dict(model).items()}
    finally:
        torch.random.set_rng_state(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_torchvision(sd, path, force=True,
                     metadata={"source": f"random initialisation of vicreg-train --arch {arch} --seed {seed}"})
    return True


def run_args(b: Budget, ckpt: Path, data: Path, out_dir: Path, cache: Path, seed: int, workers: int,
             tasks: list[str]) -> list[str]:
    """`vicreg-bench run` on `tasks` with the demo's scale-down (every override lands in the results)."""
    args = ["run", "--ckpt", str(ckpt), "--tasks", ",".join(tasks), "--data-root", str(data), "--out", str(out_dir),
            "--cache-dir", str(cache), "--device", "cpu", "--seed", str(seed), "--workers", str(workers),
            "--image-size", str(b.image_size)]
    if set(tasks) - set(DETECTION_TASKS):
        args += ["--epochs", str(b.eval_epochs), "--batch-size", str(b.eval_batch), "--svm-variant", "squash",
                 # semi-supervised: evaluate the final epoch only (the headline), not every epoch
                 "--eval-every", str(b.eval_epochs)]
        if b.svm_costs:
            args += ["--option", f"svm_costs={json.dumps(list(b.svm_costs))}"]
    det = [t for t in tasks if t in DETECTION_TASKS]
    if det:
        if len(det) > 1:
            raise ValueError("one detection task per run: their iterations and options differ")
        budget: DetBudget = getattr(b, det[0])
        args += ["--det-engine", "torchvision", "--det-iters", str(budget.iters)]
        for k, v in {**DET_COMMON, **budget.options}.items():
            args += ["--option", f"{k}={json.dumps(v)}"]
    return args


def task_groups(skip_detection: bool) -> list[list[str]]:
    """The suite split into `vicreg-bench run` invocations: detection options are run-wide, so each
    detection task gets its own run (then merged into one results JSON per backbone)."""
    from vicreg_bench.tasks.registry import SUITES

    every = list(SUITES["all"])
    main = [t for t in every if t not in ("voc07_det",) and not (skip_detection and t in DETECTION_TASKS)]
    return [main] if skip_detection else [main, ["voc07_det"]]


def merge_results(parts: list[Path], dest: Path) -> None:
    """Merge the results of one checkpoint's runs into `dest` (tasks in the registry's order)."""
    from vicreg_bench.results import read_results, write_results
    from vicreg_bench.tasks.registry import TASKS

    docs = [read_results(p) for p in parts]
    base = read_results(dest) if dest.is_file() else docs[0]
    for d in docs:
        if d["checkpoint"]["sha256"] != base["checkpoint"]["sha256"] or d["protocol"] != base["protocol"]:
            raise UserError(f"{d['checkpoint']['path']}: results of another checkpoint or protocol in {dest.parent}")
    tasks = dict(base["tasks"])
    for d in docs:
        tasks.update(d["tasks"])
    base["tasks"] = {t: tasks[t] for t in TASKS if t in tasks}
    base["suite"] = "all" if set(base["tasks"]) == set(TASKS) else base["suite"]
    write_results(dest, base)


# ------------------------------------------------------------------------------------------------ check


def headline_check(trained: dict, random: dict, tasks: list[str]) -> list[dict]:
    """One row per headline metric of the tasks run: both values and whether pretraining won."""
    rows = []
    for task, metric in HEADLINE_METRICS:
        if task not in tasks:
            continue
        values = []
        for doc in (trained, random):
            e = doc["tasks"].get(task) or {}
            v = (e.get("metrics") or {}).get(metric) if e.get("status") == "ok" else None
            values.append(float(v) if isinstance(v, (int, float)) else None)
        t, r = values
        ok = t is not None and r is not None and t > r
        why = "" if ok else ("missing or failed" if t is None or r is None else "not above random init")
        rows.append({"task": task, "metric": metric, "trained": t, "random_init": r, "beats_random": ok, "why": why})
    return rows


def check_table(rows: list[dict]) -> str:
    def fmt(v: float | None) -> str:
        return "—" if v is None else f"{v:.1f}"

    lines = [f"  {'task.metric':<30} {'VICReg':>8} {'random':>8} {'diff':>7}  beats random"]
    for r in rows:
        diff = "" if r["trained"] is None or r["random_init"] is None else f"{r['trained'] - r['random_init']:+.1f}"
        mark = "yes" if r["beats_random"] else f"NO ({r['why']})"
        lines.append(f"  {r['task'] + '.' + r['metric']:<30} {fmt(r['trained']):>8} {fmt(r['random_init']):>8} {diff:>7}  {mark}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--size", choices=tuple(PRESETS), default="small",
                   help="small (default): the demo's data and budgets; tiny: a one-minute smoke run (tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the initialisation and every task (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="data-loading processes of the trainer and the tasks (default: 0 on <= 2 cores, else up to 4)")
    p.add_argument("--skip-detection", action="store_true", help="leave out voc07_det and coco_det (the slowest tasks)")
    p.add_argument("--force", action="store_true", help="start over: delete OUT's pretraining, runs and report (the data is kept)")
    g = p.add_argument_group("budgets (default: the --size preset)")
    g.add_argument("--pretrain-epochs", type=int, default=None, help="vicreg-train epochs over the 400 synthetic ImageNet images")
    g.add_argument("--eval-epochs", type=int, default=None, help="epochs of the linear probes and semi-supervised fine-tuning")
    g.add_argument("--voc-iters", type=int, default=None, help="training iterations of voc07_det")
    g.add_argument("--coco-iters", type=int, default=None, help="training iterations of coco_det")
    g.add_argument("--image-size", type=int, default=None, help="crop size of the evaluation transforms")


def budget_from_args(args: argparse.Namespace) -> Budget:
    b = PRESETS[args.size]
    for flag in ("pretrain_epochs", "eval_epochs", "image_size", "voc_iters", "coco_iters"):
        v = getattr(args, flag)
        if v is None:
            continue
        if v < 1:
            raise UserError(f"--{flag.replace('_', '-')}: expected a positive integer, got {v}")
        if flag == "voc_iters":
            b = replace(b, voc07_det=replace(b.voc07_det, iters=v))
        elif flag == "coco_iters":
            b = replace(b, coco_det=replace(b.coco_det, iters=v))
        else:
            b = replace(b, **{flag: v})
    return b


def default_workers() -> int:
    """Loader processes: none on a 2-core machine (both cores already compute), a few on bigger ones."""
    cpus = os.cpu_count() or 1
    return 0 if cpus <= 2 else min(4, cpus // 4)


def main(args: argparse.Namespace) -> int:
    b = budget_from_args(args)
    out: Path = args.out
    workers = default_workers() if args.workers is None else args.workers
    if workers < 0:
        raise UserError(f"--workers: expected 0 or more, got {workers}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if args.force:
        for name in ("pretrain", "pretrain_images", "checkpoints", "runs", "cache", "report.html", "comparison.md",
                     "demo_summary.json"):
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    st = Stages(total=6)
    print(f"vicreg-bench demo: the pipeline on synthetic data, on the CPU, into {out.resolve()}")
    print(f"budget: {json.dumps(asdict(b))}")
    background: list[Lane] = []
    try:
        return _pipeline(args, b, out, workers, st, background)
    finally:
        for lane in background:  # interrupted: its child got the same Ctrl-C; let it save its results
            lane.stop()


def _pipeline(args: argparse.Namespace, b: Budget, out: Path, workers: int, st: Stages, background: list[Lane]) -> int:
    from vicreg_bench.results import read_results

    st.start("data", f"synthetic {args.size} suite -> {out / 'data'}")
    data, reused = stage_data(out, args.size, args.seed, args.force, st)
    if reused:
        st.reused()

    st.start("random_init", f"random-init {b.arch}: the trainer's own initialisation (seed {args.seed})")
    random_ckpt = out / "checkpoints" / f"random_init_{b.arch}.pth"
    if write_random_init(b.arch, b.mlp, args.seed, random_ckpt):
        print(f"wrote {random_ckpt}")
    else:
        print(f"{random_ckpt}: reused")
        st.reused()

    # The suite runs as two `vicreg-bench run` calls per backbone (everything but voc07_det; voc07_det), side by
    # side on the cores, merged afterwards into OUT/runs/<backbone>/results.json.
    groups = task_groups(args.skip_detection)
    results = {name: out / "runs" / name / "results.json" for name in (TRAINED, RANDOM)}

    def run_dir(name: str, group: list[str]) -> Path:
        return results[name].parent if group is groups[0] else out / "runs" / f"{name}_{group[0]}"

    def evaluate(name: str, ckpt: Path, group: list[str]) -> tuple[str, list[str]]:
        label = f"vicreg-bench run ({name}{'' if group is groups[0] else ': ' + ','.join(group)})"
        return label, tool("vicreg-bench") + run_args(b, ckpt, data, run_dir(name, group), out / "cache", args.seed,
                                                      workers, group)

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
    st.start("pretrain+random_eval", f"VICReg pretraining of a {b.arch} ({b.pretrain_epochs} epochs) -> {out / 'pretrain'}, "
             f"beside `vicreg-bench run` on the random-init backbone")
    random_log = results[RANDOM].parent / "run.log"
    print(f"random-init evaluation in the background: its task lines are prefixed 'random-init |', its full "
          f"output is in {random_log}")
    lane = Lane([evaluate(RANDOM, random_ckpt, g) for g in groups], env=env, log=random_log,
                prefix="  random-init | ").start()
    background.append(lane)
    train_cmd, trained_ckpt = pretrain_command(b, data, out, args.seed, workers)
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

    st.start("trained_eval", "`vicreg-bench run` on the pretrained backbone" + (" (voc07_det beside the other tasks)"
                                                                               if len(groups) > 1 else ""))
    lane = None
    if len(groups) > 1:
        voc_log = run_dir(TRAINED, groups[1]) / "run.log"
        print(f"{','.join(groups[1])} in the background, prefixed 'vicreg |' (full output: {voc_log})")
        lane = Lane([evaluate(TRAINED, trained_ckpt, g) for g in groups[1:]], env=env, log=voc_log,
                    prefix="  vicreg | ").start()
        background.append(lane)
    label, cmd = evaluate(TRAINED, trained_ckpt, groups[0])
    rc = run_job(label, cmd, st, env=env if lane is not None else None)
    if rc not in (0, 1):
        raise UserError(f"vicreg-bench run on {trained_ckpt} stopped with exit status {rc}; run the demo again to resume")
    if lane is not None:
        if lane.running():
            print(f"waiting for {','.join(groups[1])} on the pretrained backbone (elapsed {st.elapsed()})", flush=True)
        finish_lane(lane, trained_ckpt)
    for name in (TRAINED, RANDOM):
        merge_results([run_dir(name, g) / "results.json" for g in groups[1:]], results[name])

    st.start("report", "comparison table and HTML report")
    from vicreg_bench.compare import build_table, load_runs, render_markdown, render_text
    from vicreg_bench.fileio import atomic_write_json, atomic_write_text
    from vicreg_bench.report import build_report

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

    summary = {"out": str(out.resolve()), "size": args.size, "seed": args.seed, "budget": asdict(b),
               "results": {k: str(v) for k, v in results.items()}, "report": str(html_path),
               "comparison": str(md_path), "check": rows, "all_beat_random": not losers, "stages": st.records,
               "wall_s": round(time.perf_counter() - st.t0, 1), "cpu_count": os.cpu_count()}
    atomic_write_json(out / "demo_summary.json", summary)
    print("\ntime per stage (cpu s: every process of the stage; 2 busy cores give 2 cpu s per s):")
    print(st.table())
    if losers:
        bar = "!" * 100
        why = ("--size tiny is a smoke run: its numbers mean nothing" if args.size == "tiny" else
               "budgets too small for this seed or machine? see docs/demo.md")
        print(f"\n{bar}\nWARNING: the pretrained backbone did NOT beat random init on: {', '.join(losers)}\n"
              f"({why})\n{bar}")
    else:
        print(f"\nthe pretrained backbone beats random init on all {len(rows)} headline metrics")
    print(f"\nreport: {html_path.resolve()}")
    return 0

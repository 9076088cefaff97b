"""What `--launcher slurm` costs against the local launcher, on one node: the same 3-task suite, both ways.

    python benchmarks/slurm_overhead.py [--root DIR] [--size tiny|small] [--image-size 64] [--epochs 4]
                                        [--partition debug] [--cpus-per-task 1]

Writes the synthetic suite (under --root unless present) and a seeded random resnet18 backbone, then runs
`vicreg-bench run --tasks imagenet_knn,voc07_svm,imagenet_linear` twice in this process, each into a fresh
output and feature cache: with the local launcher (the three tasks one after the other, one process), then
with `--launcher slurm` (three CPU jobs on the cluster that `scripts/slurm_local.sh` starts, submitted and
followed until they finish; by default each job gets all the machine's CPUs, as the local run has them,
so the jobs run one after another and the ratio is what the launcher itself costs). Prints the wall time of each, the ratio slurm / local (goal: <= 1.2 on one
node), and whether every metric agrees. The SLURM side pays for each job's Python start, its own feature
extraction (each job extracts what its task needs; the local run extracts the ImageNet features once for
two tasks) and the launcher's 5 s polling; it gains the node's cores running jobs side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TASKS = "imagenet_knn,voc07_svm,imagenet_linear"


def write_checkpoint(path: Path) -> Path:
    import torch

    from vicreg_bench.models import build_resnet

    torch.manual_seed(0)
    torch.save(build_resnet("resnet18").state_dict(), path)
    return path


def timed_run(args: list[str]) -> tuple[float, str]:
    from vicreg_bench.cli import main as cli_main

    printed = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):  # progress bars
        code = cli_main(args)
    seconds = time.perf_counter() - t0
    if code != 0:
        sys.stderr.write(printed.getvalue())
        raise SystemExit(f"vicreg-bench {' '.join(args[:1])} exited with {code}")
    return seconds, printed.getvalue()


def metrics(results: Path) -> dict:
    doc = json.loads(results.read_text())
    return {t: e["metrics"] for t, e in doc["tasks"].items() if e["status"] == "ok"}


def agree(a: dict, b: dict, tol: float = 1e-6) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(agree(a[k], b[k], tol) for k in a)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= tol
    return a == b


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=None, help="synthetic suite folder (default: a temporary one)")
    p.add_argument("--size", default="tiny", choices=["tiny", "small"], help="synthetic suite size")
    p.add_argument("--image-size", type=int, default=64, help="--image-size of both runs")
    p.add_argument("--epochs", type=int, default=4, help="imagenet_linear epochs")
    p.add_argument("--partition", default="debug", help="SLURM partition")
    p.add_argument("--cpus-per-task", type=int, default=os.cpu_count() or 1,
                   help="CPUs of each SLURM job (default: all of this machine's, as the local run uses; jobs then "
                        "run one after another, and the ratio is the launcher's own cost)")
    p.add_argument("--keep", type=Path, default=None,
                   help="work in this (new) folder and keep it: outputs, job logs in slurm/slurm/")
    a = p.parse_args()

    from vicreg_bench.data.synth import make_synthetic_suite
    from vicreg_bench.launch import cluster_problem

    problem = cluster_problem()
    if problem:
        raise SystemExit(problem)
    if a.keep is not None:
        a.keep.mkdir(parents=True, exist_ok=False)
    # in the working directory, not /tmp: SLURM jobs must see the files (one node here, shared FS elsewhere)
    with (contextlib.nullcontext(str(a.keep)) if a.keep is not None
          else tempfile.TemporaryDirectory(prefix="slurm_overhead_", dir=Path.cwd())) as tmp:
        tmp = Path(tmp)
        root = make_synthetic_suite(a.root or tmp / "data", size=a.size, seed=0)
        ckpt = write_checkpoint(tmp / "random_resnet18.pth")
        common = ["run", "--ckpt", str(ckpt), "--data-root", str(root), "--tasks", TASKS, "--device", "cpu",
                  "--image-size", str(a.image_size), "--workers", "0", "--epochs", str(a.epochs),
                  "--svm-variant", "squash", "--option", "svm_costs=[1.0]", "--option", "svm_jobs=1"]
        local_s, _ = timed_run(common + ["--out", str(tmp / "local"), "--cache-dir", str(tmp / "cache_local")])
        slurm_s, printed = timed_run(common + [
            "--out", str(tmp / "slurm"), "--cache-dir", str(tmp / "cache_slurm"), "--launcher", "slurm",
            "--slurm-partition", a.partition, "--slurm-gpus-per-node", "0", "--slurm-cpus-per-task",
            str(a.cpus_per_task), "--slurm-mem-gb", "2", "--slurm-timeout-min", "30"])
        jobs = json.loads((tmp / "slurm" / "slurm" / "jobs.json").read_text())
        same = agree(metrics(tmp / "local" / "results.json"), metrics(tmp / "slurm" / "results.json"))
    print(f"suite {a.size}, image size {a.image_size}, {a.epochs} linear epochs, tasks {TASKS}")
    print(f"local launcher: {local_s:.1f} s")
    print(f"slurm launcher: {slurm_s:.1f} s ({len(jobs)} jobs: {', '.join(j['job_id'] for j in jobs.values())})")
    print(f"ratio slurm / local: {slurm_s / local_s:.2f}x (goal <= 1.2x on one node)")
    print(f"metrics equal: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())

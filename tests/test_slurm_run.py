"""`vicreg-bench run --launcher slurm` on a real SLURM cluster (scripts/slurm_local.sh): one job per task,
resubmission of only what is not done, --no-wait with `status`, and a preempted job that is requeued and
resumes from its last epoch. Marked `slurm`: without a cluster these tests skip with the reason."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from vicreg_bench.cli import main as cli_main
from vicreg_bench.results import read_results

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SLURM_FLAGS = ["--launcher", "slurm", "--slurm-gpus-per-node", "0", "--slurm-cpus-per-task", "1", "--slurm-mem-gb",
               "2", "--slurm-timeout-min", "10", "--slurm-partition", "debug"]


def base(ckpt: Path, data: Path, out: Path, cache: Path) -> list[str]:
    return ["run", "--ckpt", str(ckpt), "--data-root", str(data), "--out", str(out), "--cache-dir", str(cache),
            "--device", "cpu", "--image-size", "32", "--workers", "0", "--svm-variant", "squash",
            "--option", "svm_costs=[1.0]", "--option", "svm_jobs=1", *SLURM_FLAGS]


def test_one_job_per_task_and_only_what_is_not_done_again(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = base(tiny_checkpoints["trained"], synthetic_root, out, cache) + ["--tasks", "imagenet_knn,voc07_svm"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    jobs = json.loads((out / "slurm" / "jobs.json").read_text())
    assert set(jobs) == {"imagenet_knn", "voc07_svm"} and jobs["voc07_svm"]["settings"]["cpus_per_task"] == 1
    for task, job in jobs.items():
        assert f"{task}: SLURM job {job['job_id']} RUNNING" in printed and f"SLURM job {job['job_id']} COMPLETED" in printed
        assert Path(job["stdout"]).is_file()
    doc = read_results(out / "results.json")
    assert {t: e["status"] for t, e in doc["tasks"].items()} == {"imagenet_knn": "ok", "voc07_svm": "ok"}
    # again: nothing is submitted; with another SVM cost only the SVM is (its protocol changed)
    assert cli_main(args) == 0
    assert "done already" in capsys.readouterr().out and json.loads((out / "slurm" / "jobs.json").read_text()) == jobs
    changed = [a if a != "svm_costs=[1.0]" else "svm_costs=[0.5]" for a in args]
    assert cli_main(changed) == 0
    printed = capsys.readouterr().out
    assert "imagenet_knn: done already" in printed and "voc07_svm: submitted SLURM job" in printed
    assert read_results(out / "results.json")["tasks"]["voc07_svm"]["protocol"]["params"]["svm"]["costs"] == [0.5]


def _wait_for(predicate, timeout: float = 240, what: str = "") -> None:
    t0 = time.time()
    while not predicate():
        assert time.time() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(1)


def test_a_preempted_job_is_requeued_and_resumes_from_its_last_epoch(tiny_checkpoints, synthetic_root, tmp_path,
                                                                    capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = base(tiny_checkpoints["trained"], synthetic_root, out, cache) + [
        "--tasks", "imagenet_linear", "--epochs", "6", "--batch-size", "16"]
    assert cli_main(args + ["--no-wait"]) == 0
    assert "vicreg-bench status" in capsys.readouterr().out
    job = json.loads((out / "slurm" / "jobs.json").read_text())["imagenet_linear"]["job_id"]
    assert cli_main(["status", str(out)]) == 0
    assert "imagenet_linear" in capsys.readouterr().out
    state = out / "work" / "imagenet_linear" / "linear_state.pt"
    _wait_for(state.is_file, what="the first epoch's checkpoint")
    # a preemption: SLURM signals USR2 (as before a time limit); submitit checkpoints and requeues the job
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    # the same command follows the job that is already queued or running, and submits nothing new
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert f"SLURM job {job} is" in printed and "submitted SLURM job" not in printed
    entry = read_results(out / "results.json")["tasks"]["imagenet_linear"]
    assert entry["status"] == "ok" and len(entry["extra"]["history"]) == 6
    assert entry["extra"]["resumed_from_epoch"] >= 1, entry["extra"]["resumed_from_epoch"]
    log = Path(json.loads((out / "slurm" / "jobs.json").read_text())["imagenet_linear"]["stderr"]).read_text()
    assert "checkpoint" in log.lower() or "requeu" in log.lower()

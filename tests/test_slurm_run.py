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
        "--tasks", "imagenet_linear", "--epochs", "60", "--batch-size", "16"]  # ~0.1 s per epoch here
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
    assert entry["status"] == "ok" and len(entry["extra"]["history"]) == 60
    assert entry["extra"]["resumed_from_epoch"] >= 1, entry["extra"]["resumed_from_epoch"]
    log = Path(json.loads((out / "slurm" / "jobs.json").read_text())["imagenet_linear"]["stderr"]).read_text()
    assert "checkpoint" in log.lower() or "requeu" in log.lower()


def _flat(tree: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}/") if isinstance(value, dict) else {prefix + key: value})
    return out


def _metrics(results: Path) -> dict[str, dict]:
    """{task: {metric (nested ones as a/b): value}} of a results.json whose tasks are all ok."""
    doc = read_results(results)
    assert all(e["status"] == "ok" for e in doc["tasks"].values()), {t: e["status"] for t, e in doc["tasks"].items()}
    return {t: _flat(e["metrics"]) for t, e in doc["tasks"].items()}


def test_three_tasks_on_two_checkpoints_equal_the_local_run(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    """One command, two checkpoints, three tasks: six SLURM jobs, two results.json equal in metrics to the
    same command with the local launcher."""
    tasks = ["--tasks", "imagenet_knn,voc07_svm,imagenet_linear", "--epochs", "2", "--batch-size", "32"]
    ckpts = [str(tiny_checkpoints["random"]), str(tiny_checkpoints["trained"])]
    common = base(Path(ckpts[0]), synthetic_root, tmp_path / "local", tmp_path / "cache_local")[:-len(SLURM_FLAGS)]
    common[common.index("--ckpt") + 1:common.index("--ckpt") + 2] = ckpts
    local_args = common + tasks
    slurm_args = [str(tmp_path / "slurm") if a == str(tmp_path / "local") else
                  str(tmp_path / "cache_slurm") if a == str(tmp_path / "cache_local") else a
                  for a in common] + tasks + SLURM_FLAGS
    assert cli_main(local_args) == 0
    assert cli_main(slurm_args) == 0
    printed = capsys.readouterr().out
    for stem in ("random_resnet18", "trained_resnet18"):
        jobs = json.loads((tmp_path / "slurm" / stem / "slurm" / "jobs.json").read_text())
        assert set(jobs) == {"imagenet_knn", "voc07_svm", "imagenet_linear"}
        assert all(f"{stem}/{t}: SLURM job {j['job_id']} COMPLETED" in printed for t, j in jobs.items())
        # each job gets only its task's options: no "option svm_costs ... ignored" notes in the k-NN job's log
        assert not any("ignored" in Path(j["stdout"]).read_text() for j in jobs.values())
        local, slurm = (_metrics(tmp_path / side / stem / "results.json") for side in ("local", "slurm"))
        assert set(slurm) == {"imagenet_knn", "voc07_svm", "imagenet_linear"}
        for task in slurm:
            assert slurm[task] == pytest.approx(local[task], abs=1e-6), task
    assert _metrics(tmp_path / "slurm" / "trained_resnet18" / "results.json")["imagenet_knn"] != \
        _metrics(tmp_path / "slurm" / "random_resnet18" / "results.json")["imagenet_knn"]


def test_a_cancelled_task_resumes_when_the_command_is_run_again(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    """scancel (no requeue: the job is gone), then the same command: the task is submitted again and resumes
    from the epoch its cancelled job had saved."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = base(tiny_checkpoints["trained"], synthetic_root, out, cache) + [
        "--tasks", "imagenet_linear", "--epochs", "120", "--batch-size", "16"]  # ~0.1 s per epoch here
    assert cli_main(args + ["--no-wait"]) == 0
    job = json.loads((out / "slurm" / "jobs.json").read_text())["imagenet_linear"]["job_id"]
    _wait_for((out / "work" / "imagenet_linear" / "linear_state.pt").is_file, what="the first epoch's checkpoint")
    subprocess.run(["scancel", job], check=True)
    _wait_for(lambda: not subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip(),
              what=f"job {job} to leave the queue")
    capsys.readouterr()
    assert cli_main(["status", str(out)]) == 0
    assert "imagenet_linear" in capsys.readouterr().out
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    again = json.loads((out / "slurm" / "jobs.json").read_text())["imagenet_linear"]["job_id"]
    assert again != job and f"submitted SLURM job {again}" in printed, printed
    entry = read_results(out / "results.json")["tasks"]["imagenet_linear"]
    assert entry["status"] == "ok" and len(entry["extra"]["history"]) == 120
    assert entry["extra"]["resumed_from_epoch"] >= 1, entry["extra"]["resumed_from_epoch"]

"""`vicreg-train --launcher slurm` on a real SLURM cluster (scripts/slurm_local.sh): a 2-epoch tiny job completes;
a job cancelled mid-run resumes from its last checkpoint when submitted again with --resume; a job that SLURM
signals for preemption (USR2) is requeued by submitit and resumes under the same id. Both resumed runs end
with the weights of the uninterrupted run, bit for bit (the trainer's resume is exact on CPU)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch

from trainers.vicreg.slurm import job_argv, settings_from_args
from trainers.vicreg.train import build_parser, main, train_from_argv
from vicreg_bench.launch import CheckpointableCall, job_states, watch

# The tests marked slurm take 30-50 s each: one or two tiny training jobs on the 2-CPU node.
SLURM = ["--launcher", "slurm", "--partition", "debug", "--gpus-per-node", "0", "--cpus-per-task", "1",
         "--timeout-min", "10", "--job-name", "vb-train-test"]
STEPS = 30  # 60 images / batch 4 = 15 steps per epoch, 2 epochs: ~5 s, so a cancel or signal lands mid-run


def train_args(data: Path, exp: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--exp-dir", str(exp), "--arch", "resnet18", "--mlp", "32-32", "--image-size", "16",
            "--batch-size", "4", "--epochs", "2", "--warmup-epochs", "1", "--base-lr", "1.0", "--num-workers", "0",
            "--device", "cpu", "--log-every", "1", "--diag-batches", "1", "--checkpoint-every-steps", "1", *SLURM, *extra]


def read_log(exp: Path) -> list[dict]:
    path = exp / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def submitted_id(out: str) -> str:
    found = re.search(r"submitted SLURM job (\d+)", out)
    assert found, out
    return found.group(1)


def wait_for_checkpoint(exp: Path, job_id: str, min_step: int, timeout_s: float = 120) -> None:
    t0 = time.monotonic()
    while not any(r["type"] == "checkpoint" and r["step"] >= min_step for r in read_log(exp)):
        assert job_states([job_id])[job_id] in ("PENDING", "CONFIGURING", "RUNNING"), (job_states([job_id]), read_log(exp))
        assert time.monotonic() - t0 < timeout_s, "no checkpoint written in time"
        time.sleep(0.3)


def backbone(exp: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in torch.load(exp / "resnet18.pth", weights_only=True).items() if isinstance(v, torch.Tensor)}


def assert_resumed_and_equal(exp: Path, reference: Path) -> None:
    records = read_log(exp)
    starts = [r for r in records if r["type"] == "start"]
    assert len(starts) == 2 and starts[0]["resumed_from_step"] is None
    saved_before = [r["step"] for r in records[: records.index(starts[1])] if r["type"] == "checkpoint"]
    # from the last checkpoint, mid-run. A kill between the checkpoint's atomic save and its log line loses the
    # line, not the checkpoint: the resume may then start one checkpoint (one step here) after the last logged.
    assert 0 < starts[1]["resumed_from_step"] < STEPS
    assert starts[1]["resumed_from_step"] in (saved_before[-1], saved_before[-1] + 1), (starts[1], saved_before[-3:])
    assert records[-1]["type"] == "end" and records[-1]["status"] == "finished" and records[-1]["step"] == STEPS
    ref, got = backbone(reference), backbone(exp)
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)


@pytest.fixture(scope="module")
def uninterrupted(synthetic_root, tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("slurm_train") / "exp"
    assert main(train_args(synthetic_root / "imagenet", exp, "--wait")) == 0
    return exp


def test_submission_flags_become_job_settings_and_stay_out_of_the_job():
    argv = ["--slurm", "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu", "--slurm-extra", "qos=high",
            "--data", "/data/imagenet", "--exp-dir", "exp", "--epochs", "3", "--wait", "--slurm-timeout-min=60"]
    p = settings_from_args(build_parser().parse_args(argv)).executor_parameters()
    assert (p["nodes"], p["gpus_per_node"], p["tasks_per_node"], p["slurm_partition"]) == (2, 4, 4, "gpu")
    assert p["timeout_min"] == 60 and p["slurm_additional_parameters"] == {"qos": "high"}
    job = job_argv(argv)
    assert not {"--slurm", "--nodes", "--partition", "gpu", "--wait", "qos=high", "--slurm-timeout-min=60"} & set(job)
    assert job[-1] == "--resume" and "--epochs" in job and "/data/imagenet" in job
    assert job[job.index("--exp-dir") + 1] == str(Path("exp").resolve())  # the job may start elsewhere
    again = CheckpointableCall(train_from_argv, job, torch_env=True).checkpoint().function
    assert again.fn is train_from_argv and again.args == (job,) and again.torch_env


def test_without_a_cluster_slurm_launcher_says_why(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no SLURM commands on this machine
    assert main(["--launcher", "slurm", "--data", "x", "--exp-dir", str(tmp_path / "e"), "--gpus-per-node", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no SLURM cluster: sinfo not found" in err and len(err.splitlines()) == 1


def test_cpu_device_needs_a_cpu_job(tmp_path, capsys):
    assert main(["--launcher", "slurm", "--data", "x", "--exp-dir", str(tmp_path / "e"), "--device", "cpu"]) == 2
    assert "--gpus-per-node 0" in capsys.readouterr().err


@pytest.mark.slurm
@pytest.mark.slow
def test_two_epoch_job_completes(uninterrupted, capsys):
    records = read_log(uninterrupted)
    assert [r["type"] for r in records].count("epoch") == 2 and records[-1]["status"] == "finished"
    assert records[0]["args"]["launcher"] == "local" and records[0]["args"]["resume"]  # the job's own command line
    job_id = next(p.name.split("_")[0] for p in (uninterrupted / "slurm").glob("*_submission.sh"))
    assert job_states([job_id]) == {job_id: "COMPLETED"}
    assert (uninterrupted / "resnet18.pth").is_file()


@pytest.mark.slurm
@pytest.mark.slow
def test_cancelled_job_resumes_when_submitted_again(synthetic_root, tmp_path, uninterrupted, capsys):
    exp = tmp_path / "exp"
    args = train_args(synthetic_root / "imagenet", exp)
    assert main(args) == 0
    job_id = submitted_id(capsys.readouterr().out)
    wait_for_checkpoint(exp, job_id, min_step=2)
    subprocess.run(["scancel", job_id], check=True)
    assert [c.state for c in watch([job_id], interval_s=0.5, timeout_s=60)][-1] == "CANCELLED"
    assert (exp / "model.pth").is_file() and not (exp / "resnet18.pth").exists()

    assert main(args) == 2  # model.pth is there: a run is never overwritten silently
    assert "pass --resume" in capsys.readouterr().err
    assert main(args + ["--resume", "--wait"]) == 0
    out = capsys.readouterr().out
    assert f"SLURM job {submitted_id(out)}: COMPLETED" in out and submitted_id(out) != job_id
    assert_resumed_and_equal(exp, uninterrupted)


@pytest.mark.slurm
@pytest.mark.slow
def test_preempted_job_is_requeued_and_resumes(synthetic_root, tmp_path, uninterrupted, capsys):
    exp = tmp_path / "exp"
    # A DataLoader worker gets the signal too; only the training process may checkpoint and requeue.
    assert main(train_args(synthetic_root / "imagenet", exp, "--num-workers", "1")) == 0
    job_id = submitted_id(capsys.readouterr().out)
    wait_for_checkpoint(exp, job_id, min_step=2)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)  # what SLURM sends before preemption/time-out
    seen = [c.state for c in watch([job_id], interval_s=0.5, timeout_s=180)]
    assert seen[-1] == "COMPLETED" and "PENDING" in seen, seen
    assert_resumed_and_equal(exp, uninterrupted)
    log = (exp / "slurm" / f"{job_id}_0_log.out").read_text()
    assert log.count("Calling checkpoint method") == 1 and log.count(f"Requeued job {job_id}") == 1

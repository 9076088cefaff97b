"""vicreg_bench.launch: settings (no cluster needed), then real jobs on a real SLURM cluster (marked `slurm`:
scripts/slurm_local.sh starts one; without one they skip with the reason). Nothing here fakes the scheduler."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from vicreg_bench.errors import UserError
from vicreg_bench.launch import (CheckpointableCall, SlurmSettings, cluster_problem, job_log_paths, job_states,
                                 make_executor, parse_extra, submit, watch)

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


# --- functions the jobs run (the job imports this module: PYTHONPATH holds tests/) ------------------------
def count_start(marker: str, seconds: float) -> int:
    """Append one line per start of the job to `marker`, sleep, return how many starts there were."""
    with open(marker, "a") as f:
        f.write(f"{os.environ.get('SLURM_JOB_ID')} restart {os.environ.get('SLURM_RESTART_COUNT', '0')}\n")
    time.sleep(seconds)
    return len(Path(marker).read_text().splitlines())


def fail_loudly() -> None:
    raise ValueError("this job fails on purpose")


@pytest.fixture
def job_env(monkeypatch):
    """Jobs inherit the submitting environment (sbatch --export=ALL): let them import this module."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]))


def debug_settings(**kw) -> SlurmSettings:
    return SlurmSettings(partition="debug", timeout_min=5, job_name="vb-test", **kw)


# --- settings ------------------------------------------------------------------------------------------
def test_settings_become_submitit_parameters():
    s = SlurmSettings(partition="gpu", account="lab", nodes=2, gpus_per_node=4, tasks_per_node=4, cpus_per_task=8,
                      mem_gb=64, timeout_min=600, constraint="volta32gb", extra=parse_extra(["qos=high", "--comment=x y"]))
    p = s.executor_parameters()
    assert (p["nodes"], p["gpus_per_node"], p["tasks_per_node"], p["cpus_per_task"], p["mem_gb"]) == (2, 4, 4, 8, 64)
    assert (p["slurm_partition"], p["slurm_account"], p["slurm_constraint"]) == ("gpu", "lab", "volta32gb")
    assert p["timeout_min"] == 600 and p["slurm_signal_delay_s"] == 120
    assert p["slurm_additional_parameters"] == {"qos": "high", "comment": "x y"}
    cpu = SlurmSettings().executor_parameters()  # a CPU job sends no --gpus-per-node, no memory, no partition
    assert "gpus_per_node" not in cpu and "mem_gb" not in cpu and "slurm_partition" not in cpu


@pytest.mark.parametrize("item", ["qos", "=high", "qos="])
def test_extra_needs_key_equals_value(item):
    with pytest.raises(UserError, match="KEY=VALUE"):
        parse_extra([item])


@pytest.mark.parametrize("field,value", [("nodes", 0), ("cpus_per_task", 0), ("gpus_per_node", -1), ("mem_gb", 0.0)])
def test_settings_refuse_impossible_values(field, value):
    with pytest.raises(UserError, match=field.replace("_", "-")):
        SlurmSettings(**{field: value})


def test_checkpoint_requeues_the_same_call():
    call = CheckpointableCall(count_start, "/x", 1.0, torch_env=True)
    again = call.checkpoint().function
    assert again.fn is count_start and again.args == ("/x", 1.0) and again.torch_env


def test_without_slurm_the_launcher_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a machine without the SLURM commands
    assert "sinfo not found" in cluster_problem()
    with pytest.raises(UserError, match="--launcher slurm: no SLURM cluster: sinfo not found"):
        make_executor(debug_settings(), tmp_path / "logs")


# --- on the cluster --------------------------------------------------------------------------------------
@pytest.mark.slurm
def test_job_runs_and_its_states_are_reported(tmp_path, job_env):
    ex = make_executor(debug_settings(), tmp_path / "slurm")
    job = submit(ex, count_start, str(tmp_path / "starts"), 0.5)
    seen = [c.state for c in watch([job.job_id], interval_s=0.3, timeout_s=120)]
    assert seen[-1] == "COMPLETED" and set(seen) <= {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "COMPLETED"}
    assert job.result() == 1
    assert job_states([job.job_id]) == {job.job_id: "COMPLETED"}
    logs = job_log_paths(job)
    assert Path(logs["stderr"]).is_file() and "Job completed successfully" in Path(logs["stdout"]).read_text()


@pytest.mark.slurm
def test_failed_job_and_unknown_job(tmp_path, job_env):
    ex = make_executor(debug_settings(), tmp_path / "slurm")
    job = submit(ex, fail_loudly)
    last = list(watch([job.job_id], interval_s=0.3, timeout_s=120))[-1]
    assert last.state == "FAILED" and last.finished
    with pytest.raises(Exception, match="fails on purpose"):
        job.result()
    assert job_states(["999999999"]) == {"999999999": "UNKNOWN"}


@pytest.mark.slurm
def test_refused_submission_names_sbatch_error(tmp_path):
    ex = make_executor(SlurmSettings(partition="no-such-partition"), tmp_path / "slurm")
    with pytest.raises(UserError, match="sbatch refused the job: .*partition"):
        submit(ex, count_start, "/x", 0)


@pytest.mark.slurm
@pytest.mark.slow  # ~25 s: the requeued job waits for its credential to expire (AuthInfo=cred_expire=15)
def test_preempted_job_is_requeued_and_runs_again(tmp_path, job_env):
    """USR2 is what SLURM sends before a time limit or a preemption: submitit calls checkpoint() and requeues."""
    marker = tmp_path / "starts"
    ex = make_executor(debug_settings(), tmp_path / "slurm")
    job = submit(ex, count_start, str(marker), 6.0)
    seen, signalled = [], False
    for change in watch([job.job_id], interval_s=0.3, timeout_s=150):
        seen.append(change.state)
        if change.state == "RUNNING" and not signalled:
            while not marker.is_file():
                time.sleep(0.2)
            subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
            signalled = True
    assert seen[-1] == "COMPLETED", seen
    assert "PENDING" in seen[seen.index("RUNNING"):], seen  # back in the queue under the same id
    assert job.result() == 2
    assert [ln.split()[-1] for ln in marker.read_text().splitlines()] == ["0", "1"]  # SLURM_RESTART_COUNT
    assert "calling checkpoint method" in Path(job_log_paths(job)["stdout"]).read_text().lower()


@pytest.mark.slurm
def test_local_cluster_script_is_idempotent():
    if os.geteuid() != 0:
        pytest.skip("scripts/slurm_local.sh starts the cluster as root")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "cluster up" in proc.stdout and "starting" not in proc.stdout  # nothing restarted
    assert time.monotonic() - t0 < 30
    status = subprocess.run(["bash", str(REPO / "scripts" / "slurm_local.sh"), "status"], capture_output=True, text=True)
    assert status.returncode == 0 and "up" in status.stdout


def test_local_cluster_script_refuses_without_root():
    if os.geteuid() != 0 or not Path("/usr/sbin/runuser").exists():
        pytest.skip("needs root and runuser to run the script as another user")
    proc = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(REPO / "scripts" / "slurm_local.sh"), "stop"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 3 and "not root" in proc.stderr


def test_cluster_doc_lists_every_task_with_its_registered_resources():
    """docs/cluster.md's resource table is what the launcher requests: one row per task, none stale."""
    from vicreg_bench.tasks.catalog import all_tasks

    text = (REPO / "docs" / "cluster.md").read_text()
    rows = {cells[0]: cells[1:] for line in text.splitlines() if line.startswith("| ")
            if len(cells := [c.strip() for c in line.strip("|").split("|")]) == 5 and cells[0] in all_tasks()}
    assert set(rows) == set(all_tasks())
    for task, spec in all_tasks().items():
        r = spec.resources
        want = [str(r.gpus if r.device == "gpu" else 0), str(r.cpus), str(r.mem_gb), f"{r.hours:g}"]
        assert rows[task] == want, (task, rows[task], want)


def test_a_job_uses_no_more_cpus_than_it_was_given(monkeypatch):
    """Without CPU binding the affinity mask is the whole node: SLURM_CPUS_PER_TASK caps threads and workers."""
    from vicreg_bench.features.extract import available_cpus

    node = len(os.sched_getaffinity(0))
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert available_cpus() == node
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert available_cpus() == 1
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(node + 8))  # never more than the mask
    assert available_cpus() == node
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "")
    assert available_cpus() == node

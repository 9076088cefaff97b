"""Results that concurrent writers never lose: every write of results.json locks, re-reads, merges its own
tasks and replaces the file atomically; a task runs once even when two runs ask for it at the same time;
two jobs needing the same features extract them once."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vicreg_bench.errors import UserError
from vicreg_bench.locks import FileLock
from vicreg_bench.results import new_results, read_results, task_entry, update_results

ROOT = Path(__file__).resolve().parents[1]
CKPT = {"path": "m.pth", "sha256": "a" * 64, "format": "torchvision", "method": "vicreg", "arch": "resnet50"}


def _write_one(args: tuple[str, int]) -> None:
    path, i = args
    doc = new_results(CKPT, suite="custom", protocol="paper")
    doc["tasks"][f"task_{i}"] = task_entry(status="skipped", reason=f"writer {i}", protocol_name="p")
    time.sleep(0.01 * (i % 3))
    update_results(path, doc, [f"task_{i}"])


def test_many_processes_merging_one_file_lose_nothing(tmp_path):
    path = str(tmp_path / "results.json")
    with mp.get_context("fork").Pool(6) as pool:
        pool.map(_write_one, [(path, i) for i in range(24)])
    doc = read_results(path)
    assert sorted(doc["tasks"]) == sorted(f"task_{i}" for i in range(24))


def test_a_writer_of_another_checkpoint_is_refused_naming_both(tmp_path):
    path = tmp_path / "results.json"
    _write_one((str(path), 0))
    other = new_results({**CKPT, "path": "other.pth", "sha256": "b" * 64}, suite="knn", protocol="paper")
    other["tasks"]["x"] = task_entry(status="skipped", reason="r", protocol_name="p")
    with pytest.raises(UserError) as e:
        update_results(path, other, ["x"])
    assert "m.pth" in str(e.value) and "other.pth" in str(e.value)
    assert list(read_results(path)["tasks"]) == ["task_0"]


def test_a_lock_is_exclusive_between_open_files_and_says_who_holds_it(tmp_path):
    a, b = FileLock(tmp_path / "l.lock", "first"), FileLock(tmp_path / "l.lock", "second")
    assert a.acquire(wait=False)
    assert not b.acquire(wait=False) and b.is_held_elsewhere()
    assert b.holder()["what"] == "first" and b.holder()["pid"] == os.getpid()
    a.release()
    assert b.acquire(wait=False)
    b.release()


@pytest.mark.slow
def test_two_runs_of_disjoint_tasks_into_one_out_keep_both(tiny_checkpoints, synthetic_root, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def start(tasks: str, cache: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "vicreg_bench.cli", "run", "--ckpt", str(tiny_checkpoints["trained"]),
               "--tasks", tasks, "--data-root", str(synthetic_root), "--out", str(out), "--cache-dir",
               str(tmp_path / cache), "--device", "cpu", "--image-size", "32", "--workers", "0",
               "--svm-variant", "squash", "--option", "svm_costs=[1.0]", "--option", "svm_jobs=1", "--epochs", "2"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    # two tasks each: four merges into one results.json, interleaved between two real processes
    procs = [start("imagenet_knn,imagenet_linear", "cache_a"), start("voc07_svm,inat18_linear", "cache_b")]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    doc = read_results(out / "results.json")
    assert set(doc["tasks"]) == {"imagenet_knn", "imagenet_linear", "voc07_svm", "inat18_linear"}
    assert all(e["status"] == "ok" for e in doc["tasks"].values())


def test_the_same_task_asked_twice_at_once_runs_once(tiny_checkpoints, synthetic_root, tmp_path, monkeypatch):
    """Two runs of one task into one folder: the second waits on the task's lock, then finds it done."""
    from vicreg_bench.runner.local import run_suite
    from vicreg_bench.runner.plan import RunConfig
    from vicreg_bench.tasks.context import RunSettings, TaskOutput
    from vicreg_bench.tasks.options import TaskOptions
    from vicreg_bench.tasks.registry import register_task, unregister_task

    calls = []
    started = threading.Event()

    def slow_run(ctx):
        calls.append(ctx.seed)
        started.set()
        time.sleep(1.5)
        return TaskOutput(metrics={"top1": 50.0, "top5": 90.0}, protocol_name="slow", protocol_params={},
                          dataset={"name": "none", "splits": {}, "num_images": {}, "manifest_sha256": {}})

    register_task(name="slow_toy", summary="sleeps", protocol=lambda ctx: ("slow", {}), options=TaskOptions,
                  data={}, metrics=("top1", "top5"), headline=("top1",), result_schema="classification_task")(slow_run)
    try:
        config = RunConfig(ckpt=tiny_checkpoints["random"], out=tmp_path / "out", tasks=["slow_toy"], suite="custom",
                           data_root=synthetic_root, cache_dir=tmp_path / "cache", device="cpu",
                           settings=RunSettings(workers=0))
        said: list[str] = []
        codes = []
        first = threading.Thread(target=lambda: codes.append(run_suite(config, say=lambda *a, **k: None)))
        first.start()
        assert started.wait(60)
        codes.append(run_suite(config, say=lambda *a, **k: said.append(" ".join(map(str, a)))))
        first.join(60)
    finally:
        unregister_task("slow_toy")
    assert codes == [0, 0] and calls == [0]
    text = "\n".join(said)
    assert "already running in process" in text and "finished by another process meanwhile, skipped" in text
    assert read_results(tmp_path / "out" / "results.json")["tasks"]["slow_toy"]["status"] == "ok"


def test_two_extractions_of_the_same_features_compute_them_once(tmp_path, resnet18_state, monkeypatch):
    """A second job asking for an entry another job is extracting waits for it, then reads the cache."""
    import numpy as np
    from PIL import Image

    import vicreg_bench.features.extract as X
    from vicreg_bench.data.base import ClassificationDataset
    from vicreg_bench.features.cache import weights_digest
    from vicreg_bench.features.transforms import build_transform
    from vicreg_bench.models import build_resnet

    rng = np.random.default_rng(0)
    samples = [(f"c{i % 2}/{i}.png", i % 2) for i in range(8)]
    for rel, _ in samples:
        (tmp_path / "img" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "img" / rel)
    tf, params = build_transform("eval", size=32, resize=36)
    ds = ClassificationDataset(tmp_path / "img", samples, ["c0", "c1"], split="train", transform=tf)
    model = build_resnet("resnet18")
    model.load_state_dict(resnet18_state)
    model.eval()
    calls, extracting = [], threading.Event()
    real = X.extract_into

    def slow_extract(*a, **k):
        calls.append(1)
        extracting.set()
        time.sleep(1.0)
        return real(*a, **k)

    monkeypatch.setattr(X, "extract_into", slow_extract)
    kw = dict(dataset_name="toy", transform_params=params, ckpt_sha256="1" * 64,
              weights_sha256=weights_digest(resnet18_state), cache_dir=tmp_path / "cache", workers=0,
              progress=False, precision="fp32")
    got: dict[str, object] = {}
    first = threading.Thread(target=lambda: got.update(a=X.features_for_dataset(model, ds, **kw)))
    first.start()
    assert extracting.wait(60)
    second = X.features_for_dataset(model, ds, **kw)  # the lock is held: waits for the first
    first.join(120)
    assert calls == [1] and not got["a"].from_cache and second.from_cache
    assert np.array_equal(second.features, got["a"].features)

"""`vicreg-bench run` end to end on the tiny synthetic suite with resnet18 checkpoints at 32 px.

Covered: every classification task through `run` (results JSON valid, overrides recorded), a second run
that recomputes nothing, a failing task recorded while the others run, the data preflight (fail fast /
--skip-missing), refusing to mix checkpoints or protocols in one output folder, a trained checkpoint
scoring above a random one on k-NN and the linear probe, and 2 processes under torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vicreg_bench.cli import main as cli_main
from vicreg_bench.results import read_results
from vicreg_bench.tasks import registry
from vicreg_bench.tasks.catalog import all_tasks

ROOT = Path(__file__).resolve().parents[1]
CLASSIFICATION = ["imagenet_knn", "voc07_svm", "imagenet_linear", "places205_linear", "inat18_linear",
                  "imagenet_semisup_1pct", "imagenet_semisup_10pct"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_args(ckpt: Path, data: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    return ["run", "--ckpt", str(ckpt), "--data-root", str(data), "--out", str(out), "--cache-dir", str(cache),
            "--device", "cpu", "--image-size", "32", "--epochs", "1", "--batch-size", "16", "--workers", "0",
            "--svm-variant", "squash", "--option", "svm_jobs=1", "--option", "svm_costs=[0.1,1.0]", *extra]


@pytest.fixture(scope="module")
def full_run(tiny_checkpoints, synthetic_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    args = run_args(tiny_checkpoints["trained"], synthetic_root, tmp / "out", tmp / "cache",
                    "--tasks", ",".join(CLASSIFICATION))
    rc = cli_main(args)
    return {"rc": rc, "args": args, "out": tmp / "out", "cache": tmp / "cache", "tmp": tmp}


@pytest.mark.slow
def test_every_classification_task_end_to_end(full_run, capsys):
    assert full_run["rc"] == 0
    res = read_results(full_run["out"] / "results.json")  # validates against the schema
    assert list(res["tasks"]) == CLASSIFICATION
    assert res["checkpoint"]["method"] == "torchvision" and res["checkpoint"]["arch"] == "resnet18"
    assert res["protocol"] == "paper" and res["environment"]["num_processes"] == 1
    for name, entry in res["tasks"].items():
        assert entry["status"] == "ok", (name, entry["reason"])
        assert entry["seed"] == 0 and entry["seconds"] > 0
        assert entry["dataset"]["num_images"]["train"] > 0 and entry["dataset"]["manifest_sha256"]["test"]
    t = res["tasks"]
    assert set(t["imagenet_knn"]["metrics"]) == {f"k{k}_top{n}" for k in (10, 20, 100, 200) for n in (1, 5)}
    assert 0 <= t["voc07_svm"]["metrics"]["mAP"] <= 100 and len(t["voc07_svm"]["metrics"]["per_class_AP"]) == 20
    for name in ("imagenet_linear", "places205_linear", "inat18_linear"):
        e = t[name]
        assert e["protocol"]["name"] == "linear_paper"
        assert e["protocol"]["params"]["overrides"] == {"epochs": 1, "batch_size": 16, "image_size": 32}
        assert e["extra"]["best_epoch"] == 1 and len(e["extra"]["history"]) == 1
        assert e["throughput"]["train_images_per_s"] > 0
    assert t["imagenet_linear"]["protocol"]["params"]["head"] == "bn_linear"
    assert t["places205_linear"]["protocol"]["params"]["schedule"] == {"milestones": [], "gamma": 0.1}
    assert t["imagenet_semisup_1pct"]["protocol"]["params"]["lr_backbone"] == 0.03
    assert t["imagenet_semisup_10pct"]["dataset"]["splits"]["train"] == "train_10pct"
    # one extraction per (dataset, split, transform), with its throughput recorded
    extract = t["imagenet_knn"]["throughput"]["extract"]
    assert extract["imagenet/train/knn"]["images_per_s"] > 0 and extract["imagenet/val/knn"]["images"] == 30
    entries = sorted(p.parent.name for p in full_run["cache"].glob("*/*/complete.json"))
    # imagenet train+val (knn), voc trainval+test (svm_squash), val (eval) of imagenet, places, inat
    assert len(entries) == 7


def replace_run(monkeypatch, task: str, fn) -> None:
    """Make the registered task `task` run `fn` for this test."""
    from dataclasses import replace

    monkeypatch.setitem(registry._REGISTRY, task, replace(all_tasks()[task], run=fn))


@pytest.mark.slow
def test_second_run_recomputes_nothing_unless_forced(full_run, monkeypatch, capsys):
    before = json.loads((full_run["out"] / "results.json").read_text())
    real_knn = all_tasks()["imagenet_knn"].run

    def boom(ctx):
        raise AssertionError("a finished task ran again")

    for name in CLASSIFICATION:
        replace_run(monkeypatch, name, boom)
    assert cli_main(full_run["args"]) == 0
    assert "already done with the same protocol" in capsys.readouterr().out
    after = json.loads((full_run["out"] / "results.json").read_text())
    assert {k: v["seconds"] for k, v in after["tasks"].items()} == {k: v["seconds"] for k, v in before["tasks"].items()}

    # --force recomputes a finished task (in a copy of the folder, the other tests read the original)
    forced = full_run["tmp"] / "out_forced"
    shutil.copytree(full_run["out"], forced)
    calls = []
    replace_run(monkeypatch, "imagenet_knn", lambda ctx: calls.append(ctx.seed) or real_knn(ctx))
    args = [forced if a == str(full_run["out"]) else a for a in full_run["args"]]
    args = [str(a) for a in args]
    args[args.index("--tasks") + 1] = "imagenet_knn"
    assert cli_main(args + ["--force"]) == 0
    assert calls == [0]
    redone = read_results(forced / "results.json")["tasks"]["imagenet_knn"]
    assert redone["metrics"] == before["tasks"]["imagenet_knn"]["metrics"]  # same seed, same numbers


@pytest.mark.slow
def test_failed_task_is_recorded_and_the_others_run(full_run, tiny_checkpoints, synthetic_root, monkeypatch):
    def broken(ctx):
        raise RuntimeError("simulated failure")

    replace_run(monkeypatch, "voc07_svm", broken)
    out = full_run["tmp"] / "out_failed"
    rc = cli_main(run_args(tiny_checkpoints["trained"], synthetic_root, out, full_run["cache"],
                           "--tasks", "voc07_svm,imagenet_knn"))
    assert rc == 1
    res = read_results(out / "results.json")
    assert res["tasks"]["voc07_svm"]["status"] == "failed"
    assert res["tasks"]["voc07_svm"]["reason"] == "RuntimeError: simulated failure"
    assert res["tasks"]["imagenet_knn"]["status"] == "ok"
    assert "simulated failure" in (out / "work" / "voc07_svm" / "error.log").read_text()


def test_missing_data_fails_fast_or_is_skipped(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "imagenet").symlink_to(synthetic_root / "imagenet", target_is_directory=True)
    args = run_args(tiny_checkpoints["random"], data, tmp_path / "out", tmp_path / "cache",
                    "--tasks", "imagenet_knn,places205_linear,voc07_svm")
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "places205_linear" in err and "voc07_svm" in err and "nothing was run" in err
    assert not (tmp_path / "out" / "results.json").exists()

    assert cli_main(args + ["--skip-missing"]) == 0
    res = read_results(tmp_path / "out" / "results.json")
    assert res["tasks"]["imagenet_knn"]["status"] == "ok"
    for t in ("places205_linear", "voc07_svm"):
        assert res["tasks"][t]["status"] == "skipped" and "missing" in res["tasks"][t]["reason"]


def test_usage_errors_are_one_line(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    base = run_args(tiny_checkpoints["random"], synthetic_root, tmp_path / "out", tmp_path / "cache")
    assert cli_main(base + ["--tasks", "imagenet_knn,nope"]) == 2
    assert "unknown task(s) nope" in capsys.readouterr().err
    assert cli_main(base + ["--suite", "fast", "--protocol", "paper"]) == 2
    assert cli_main(base + ["--epochs", "0"]) == 2
    assert cli_main(base + ["--option", "novalue"]) == 2
    err = capsys.readouterr().err
    assert "--epochs" in err and "KEY=VALUE" in err and "Traceback" not in err


@pytest.mark.slow
def test_output_folder_belongs_to_one_checkpoint(full_run, tiny_checkpoints, synthetic_root, capsys):
    args = run_args(tiny_checkpoints["random"], synthetic_root, full_run["out"], full_run["cache"],
                    "--tasks", "imagenet_knn")
    assert cli_main(args) == 2
    assert "another checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_checkpoint_scores_above_random(full_run, tiny_checkpoints, synthetic_root):
    scores = {}
    for which in ("random", "trained"):
        out = full_run["tmp"] / f"fast_{which}"
        rc = cli_main(run_args(tiny_checkpoints[which], synthetic_root, out, full_run["cache"],
                               "--tasks", "imagenet_knn,imagenet_linear", "--protocol", "fast", "--epochs", "30"))
        assert rc == 0
        t = read_results(out / "results.json")["tasks"]
        assert t["imagenet_linear"]["protocol"]["name"] == "linear_fast"
        scores[which] = (t["imagenet_knn"]["metrics"]["k20_top1"], t["imagenet_linear"]["metrics"]["top1"])
    print("k20_top1, linear top1:", scores)
    (knn_r, lin_r), (knn_t, lin_t) = scores["random"], scores["trained"]
    assert knn_t >= knn_r + 15, scores
    assert lin_t >= lin_r + 15, scores


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_give_the_results_of_one(full_run, tiny_checkpoints, synthetic_root, tmp_path):
    """torchrun + gloo: extraction and DDP linear training split over 2 processes, rank 0 writes the JSON."""
    out = tmp_path / "out2"
    args = run_args(tiny_checkpoints["trained"], synthetic_root, out, tmp_path / "cache2",
                    "--tasks", "imagenet_knn,imagenet_linear")[1:]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vicreg_bench.cli", "run", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = read_results(out / "results.json")
    one = read_results(full_run["out"] / "results.json")
    assert two["environment"]["num_processes"] == 2
    for t in ("imagenet_knn", "imagenet_linear"):
        assert two["tasks"][t]["protocol"]["hash"] == one["tasks"][t]["protocol"]["hash"]
        for k, v in one["tasks"][t]["metrics"].items():
            assert two["tasks"][t]["metrics"][k] == pytest.approx(v, abs=1e-6), (t, k)
    # the same global batches, BN statistics over the global batch, loss normalised by the global batch
    loss_one = [h["loss"] for h in one["tasks"]["imagenet_linear"]["extra"]["history"]]
    loss_two = [h["loss"] for h in two["tasks"]["imagenet_linear"]["extra"]["history"]]
    assert loss_two == pytest.approx(loss_one, rel=1e-5)
    assert proc.stdout.count("results:") == 1  # only rank 0 reports and writes


def test_many_checkpoints_in_one_command(tiny_checkpoints, synthetic_root, tmp_path, capsys):
    """--ckpt a b and --ckpt-list: OUT/<label or stem>/results.json each, and compare takes them all."""
    base = ["run", "--tasks", "imagenet_knn", "--data-root", str(synthetic_root), "--cache-dir",
            str(tmp_path / "cache"), "--device", "cpu", "--image-size", "32", "--workers", "0"]
    out = tmp_path / "many"
    assert cli_main(base + ["--ckpt", str(tiny_checkpoints["random"]), str(tiny_checkpoints["trained"]),
                            "--out", str(out)]) == 0
    docs = {p.parent.name: read_results(p) for p in out.glob("*/results.json")}
    assert set(docs) == {Path(tiny_checkpoints[k]).stem for k in ("random", "trained")}
    listing = tmp_path / "ckpts.txt"
    listing.write_text(f"# two labelled backbones\n{tiny_checkpoints['random']}  random init\n"
                       f"{Path(tiny_checkpoints['trained']).name} trained backbone\n")
    shutil.copy(tiny_checkpoints["trained"], tmp_path / Path(tiny_checkpoints["trained"]).name)  # relative path
    out2 = tmp_path / "listed"
    assert cli_main(base + ["--ckpt-list", str(listing), "--out", str(out2)]) == 0
    labels = {p.parent.name: read_results(p)["checkpoint"]["label"] for p in out2.glob("*/results.json")}
    assert labels == {"random_init": "random init", "trained_backbone": "trained backbone"}
    capsys.readouterr()
    assert cli_main(["compare", *map(str, sorted(out2.glob("*/results.json")))]) == 0
    text = capsys.readouterr().out
    assert "random init" in text and "trained backbone" in text
    # errors: one --label for several, the same folder twice
    assert cli_main(base + ["--ckpt", str(tiny_checkpoints["random"]), str(tiny_checkpoints["trained"]),
                            "--label", "x"]) == 2
    assert "--ckpt-list" in capsys.readouterr().err
    assert cli_main(base + ["--ckpt", str(tiny_checkpoints["random"]), str(tiny_checkpoints["random"])]) == 2
    assert "distinct labels" in capsys.readouterr().err

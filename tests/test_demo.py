"""`vicreg-bench demo` end to end at `--size tiny` (the real subprocesses: data synth, vicreg-train, run x2),
its outputs (valid results JSONs, comparison, self-contained report, summary), and resuming; plus the
pieces of the check and the resume logic on hand-made inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vicreg_bench import demo
from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError
from vicreg_bench.results import read_results
from vicreg_bench.tasks.registry import TASKS


def _doc(values: dict[str, dict[str, float]], failed: tuple[str, ...] = ()) -> dict:
    tasks = {t: {"status": "ok", "metrics": m} for t, m in values.items()}
    for t in failed:
        tasks[t] = {"status": "failed", "reason": "boom", "metrics": {}}
    return {"tasks": tasks}


def test_headline_check_compares_every_headline_metric():
    trained = _doc({"imagenet_knn": {"k20_top1": 60.0, "k200_top1": 50.0}, "voc07_svm": {"mAP": 30.0},
                    "voc07_det": {"AP50": 10.0}}, failed=("coco_det",))
    random = _doc({"imagenet_knn": {"k20_top1": 40.0, "k200_top1": 50.0}, "voc07_svm": {"mAP": 20.0},
                   "voc07_det": {"AP50": 12.5}, "coco_det": {"bbox_AP": 1.0}})
    rows = demo.headline_check(trained, random, ["imagenet_knn", "voc07_svm", "voc07_det", "coco_det"])
    got = {(r["task"], r["metric"]): (r["beats_random"], r["why"]) for r in rows}
    assert got == {
        ("imagenet_knn", "k20_top1"): (True, ""),
        ("imagenet_knn", "k200_top1"): (False, "not above random init"),  # a tie is not a win
        ("voc07_svm", "mAP"): (True, ""),
        ("voc07_det", "AP50"): (False, "not above random init"),
        ("coco_det", "bbox_AP"): (False, "missing or failed"),
    }
    text = demo.check_table(rows)
    assert "+20.0" in text and "-2.5" in text and "NO (missing or failed)" in text
    # every task of the registry has a headline metric in the check
    assert {t for t, _ in demo.HEADLINE_METRICS} == set(TASKS)


def test_pretraining_state_reuses_only_the_same_settings(tmp_path):
    exp = tmp_path / "pretrain"
    wanted = {"arch": "resnet18", "epochs": 2, "seed": 0}
    assert demo.pretraining_state(exp, wanted) == "none"
    exp.mkdir()
    start = {"type": "start", "args": {"arch": "resnet18", "epochs": 2, "seed": 0, "batch_size": 32}}
    (exp / "log.jsonl").write_text(json.dumps(start) + "\n" + '{"type": "step", "lo')  # cut mid-line
    assert demo.pretraining_state(exp, wanted) == "none"  # no model.pth yet: nothing to resume
    (exp / "model.pth").write_bytes(b"x")
    assert demo.pretraining_state(exp, wanted) == "partial"
    (exp / "resnet18.pth").write_bytes(b"x")
    with (exp / "log.jsonl").open("a") as f:
        f.write("\n" + json.dumps({"type": "end", "status": "finished"}) + "\n")
    assert demo.pretraining_state(exp, wanted) == "finished"
    assert demo.pretraining_state(exp, {**wanted, "epochs": 3}) == "other"


def test_budget_flags_override_the_preset_and_are_checked():
    import argparse

    p = argparse.ArgumentParser()
    demo.add_arguments(p)
    b = demo.budget_from_args(p.parse_args(["--size", "tiny", "--pretrain-epochs", "3", "--voc-iters", "7"]))
    assert (b.pretrain_epochs, b.voc07_det.iters, b.image_size) == (3, 7, demo.PRESETS["tiny"].image_size)
    assert b.coco_det == demo.PRESETS["tiny"].coco_det
    with pytest.raises(UserError, match="--eval-epochs"):
        demo.budget_from_args(p.parse_args(["--eval-epochs", "0"]))
    # the suite in two runs (detection options are run-wide), or one without detection
    assert demo.task_groups(False) == [[t for t in TASKS if t != "voc07_det"], ["voc07_det"]]
    assert demo.task_groups(True) == [[t for t in TASKS if t not in demo.DETECTION_TASKS]]
    voc = demo.run_args(b, Path("c.pth"), Path("d"), Path("o"), Path("cache"), 0, 0, ["voc07_det"])
    assert voc[voc.index("--det-iters") + 1] == "7" and "--epochs" not in voc
    assert "det_ims_per_batch=2" in voc and "det_detections_per_image=10" in voc  # task option over the common one
    main = demo.run_args(b, Path("c.pth"), Path("d"), Path("o"), Path("cache"), 0, 0, demo.task_groups(False)[0])
    assert main[main.index("--det-iters") + 1] == str(b.coco_det.iters) and "--epochs" in main


def test_random_init_is_the_trainers_initial_backbone(tmp_path):
    import torch

    from trainers.vicreg.model import VICReg
    from vicreg_bench.checkpoints import load_backbone

    path = tmp_path / "random_init_resnet18.pth"
    assert demo.write_random_init("resnet18", "64-64", 3, path)
    assert not demo.write_random_init("resnet18", "64-64", 3, path)  # reused
    sd, info = load_backbone(path)
    torch.manual_seed(3)
    ref = VICReg("resnet18", "64-64").backbone.state_dict()
    assert info.arch == "resnet18" and set(sd) == {k for k in ref if not k.startswith("fc.")}
    assert all(torch.equal(sd[k], ref[k]) for k in sd)


@pytest.fixture(scope="module")
def tiny_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    rc = cli_main(["demo", "--out", str(out), "--size", "tiny", "--workers", "0"])
    return rc, out


@pytest.mark.slow
def test_demo_end_to_end(tiny_demo, capsys):
    rc, out = tiny_demo
    assert rc == 0
    summary = json.loads((out / "demo_summary.json").read_text())
    docs = {name: read_results(out / "runs" / name / "results.json") for name in (demo.TRAINED, demo.RANDOM)}
    for name, doc in docs.items():  # read_results validated both against the schema
        assert list(doc["tasks"]) == list(TASKS), name
        assert all(e["status"] == "ok" for e in doc["tasks"].values()), {t: e.get("reason") for t, e in doc["tasks"].items()}
        assert doc["tasks"]["voc07_det"]["engine"] == "torchvision"
    assert docs[demo.TRAINED]["checkpoint"]["method"] == "vicreg"
    assert docs[demo.RANDOM]["checkpoint"]["arch"] == "resnet18"
    # the check covered every headline metric with both numbers
    assert [(r["task"], r["metric"]) for r in summary["check"]] == list(demo.HEADLINE_METRICS)
    assert all(r["trained"] is not None and r["random_init"] is not None for r in summary["check"])
    stages = {s["stage"]: s for s in summary["stages"]}
    assert list(stages) == ["data", "random_init", "pretrain+random_eval", "trained_eval", "report", "check"]
    # side by side: the pretraining and the random-init runs, then the pretrained backbone's two runs
    assert [p["name"] for p in stages["pretrain+random_eval"]["processes"]] == [
        "vicreg-train", "vicreg-bench run (random_init)", "vicreg-bench run (random_init: voc07_det)"]
    assert sorted(p["name"] for p in stages["trained_eval"]["processes"]) == [
        "vicreg-bench run (vicreg)", "vicreg-bench run (vicreg: voc07_det)"]
    assert all(p["cpu_s"] > 0 and p["exit_status"] == 0 for s in summary["stages"] for p in s["processes"])
    # comparison: both checkpoints' rows
    md = (out / "comparison.md").read_text().replace("\\_", "_")  # Markdown escapes underscores
    assert "random_init_resnet18.pth" in md and "resnet18.pth" in md and "vicreg" in md
    # the report opens offline and carries the charts and the training curves
    from vicreg_bench.report import external_references

    html = (out / "report.html").read_text()
    assert external_references(html) == []
    assert html.count('src="data:image/png;base64,') >= 3 and "Training" in html
    log = [json.loads(line) for line in (out / "pretrain" / "log.jsonl").read_text().splitlines()]
    assert log[-1] == {**log[-1], "type": "end", "status": "finished"}


@pytest.mark.slow
def test_demo_again_reuses_everything(tiny_demo, capsys):
    rc, out = tiny_demo
    assert rc == 0
    before = {n: (out / "runs" / n / "results.json").read_text() for n in (demo.TRAINED, demo.RANDOM)}
    capsys.readouterr()
    assert cli_main(["demo", "--out", str(out), "--size", "tiny", "--workers", "0"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    reused = {s["stage"] for s in summary["stages"] if s["reused"]}
    assert {"data", "random_init", "pretrain+random_eval"} <= reused
    assert "report:" in printed and str((out / "report.html").resolve()) in printed
    for n, text in before.items():  # no task ran again: same entries (only the tool/environment block is refreshed)
        assert json.loads((out / "runs" / n / "results.json").read_text())["tasks"] == json.loads(text)["tasks"]


def test_other_settings_in_the_output_folder_are_refused(tmp_path):
    out = tmp_path / "o"
    (out / "data").mkdir(parents=True)
    (out / "data" / "SYNTHETIC_SUITE.json").write_text(json.dumps({"generator_version": 1, "size": "small", "seed": 5}))
    assert cli_main(["demo", "--out", str(out), "--size", "tiny"]) == 2

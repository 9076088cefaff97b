"""`vicreg-bench demo` end to end at `--size tiny` (the real subprocesses: data synth, vicreg-train, run x2),
its outputs (valid results JSONs, comparison, self-contained report, summary), and resuming; plus the
pieces of the check and the resume logic on hand-made inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vicreg_bench.cli import demo as demo_cli
from vicreg_bench.cli import main as cli_main
from vicreg_bench.demo import pipeline, plan, pretrain
from vicreg_bench.demo.budget import PRESETS
from vicreg_bench.errors import UserError
from vicreg_bench.results import read_results
from vicreg_bench.tasks.catalog import all_tasks

TASKS = list(all_tasks())
HEADLINES = [(t, m) for t, spec in all_tasks().items() for m in spec.headline]


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
    rows = plan.headline_check(trained, random, ["imagenet_knn", "voc07_svm", "voc07_det", "coco_det"])
    got = {(r["task"], r["metric"]): (r["beats_random"], r["why"]) for r in rows}
    assert got == {
        ("imagenet_knn", "k20_top1"): (True, ""),
        ("imagenet_knn", "k200_top1"): (False, "not above random init"),  # a tie is not a win
        ("voc07_svm", "mAP"): (True, ""),
        ("voc07_det", "AP50"): (False, "not above random init"),
        ("coco_det", "bbox_AP"): (False, "missing or failed"),
    }
    text = plan.check_table(rows)
    assert "+20.0" in text and "-2.5" in text and "NO (missing or failed)" in text
    # every task of the registry has a headline metric in the check
    assert {t for t, _ in HEADLINES} == set(TASKS)


def test_pretraining_state_reuses_only_the_same_settings(tmp_path):
    exp = tmp_path / "pretrain"
    wanted = {"arch": "resnet18", "epochs": 2, "seed": 0}
    assert pretrain.pretraining_state(exp, wanted) == "none"
    exp.mkdir()
    start = {"type": "start", "args": {"arch": "resnet18", "epochs": 2, "seed": 0, "batch_size": 32}}
    (exp / "log.jsonl").write_text(json.dumps(start) + "\n" + '{"type": "step", "lo')  # cut mid-line
    assert pretrain.pretraining_state(exp, wanted) == "none"  # no model.pth yet: nothing to resume
    (exp / "model.pth").write_bytes(b"x")
    assert pretrain.pretraining_state(exp, wanted) == "partial"
    (exp / "resnet18.pth").write_bytes(b"x")
    with (exp / "log.jsonl").open("a") as f:
        f.write("\n" + json.dumps({"type": "end", "status": "finished"}) + "\n")
    assert pretrain.pretraining_state(exp, wanted) == "finished"
    assert pretrain.pretraining_state(exp, {**wanted, "epochs": 3}) == "other"


def test_budget_flags_override_the_preset_and_are_checked():
    import argparse

    p = argparse.ArgumentParser()
    demo_cli.add_arguments(p)
    args = p.parse_args(["--size", "tiny", "--pretrain-epochs", "3", "--option", "voc07_det.det_max_iter=7"])
    b = demo_cli.budget_from_args(args)
    assert (b.pretrain_epochs, b.image_size) == (3, PRESETS["tiny"].image_size)
    with pytest.raises(UserError, match="--eval-epochs"):
        demo_cli.budget_from_args(p.parse_args(["--eval-epochs", "0"]))
    overrides = plan.parse_overrides(args.option)
    assert overrides == {"voc07_det": {"det_max_iter": "7"}}
    with pytest.raises(UserError, match="unknown task"):
        plan.parse_overrides(["voc07.det_max_iter=7"])
    # the suite in two runs (a detection task whose preset asks for its own run), or one without detection
    assert plan.task_groups(False, "tiny") == [[t for t in TASKS if t != "voc07_det"], ["voc07_det"]]
    assert plan.task_groups(True, "tiny") == [[t for t in TASKS if t not in ("voc07_det", "coco_det")]]
    voc = plan.run_args(b, "tiny", Path("c.pth"), "x", Path("d"), Path("o"), Path("cache"), 0, 0, ["voc07_det"],
                        overrides)
    assert "det_max_iter=7" in voc and "epochs=1" not in voc and voc[voc.index("--label") + 1] == "x"
    assert "det_ims_per_batch=2" in voc and "det_detections_per_image=10" in voc
    main = plan.run_args(b, "tiny", Path("c.pth"), "x", Path("d"), Path("o"), Path("cache"), 0, 0,
                         plan.task_groups(False, "tiny")[0], overrides)
    # one value for every task that has the option: unscoped; the detection preset of coco_det alone
    assert f"epochs={b.eval_epochs}" in main and "det_max_iter=1" in main and "svm_variant=squash" in main
    small = plan.run_args(PRESETS["small"], "small", Path("c.pth"), "x", Path("d"), Path("o"), Path("cache"), 0, 0,
                          ["voc07_det", "coco_det"], {})
    assert "voc07_det.det_max_iter=170" in small and "coco_det.det_max_iter=80" in small  # values differ: scoped


def test_random_init_is_the_trainers_initial_backbone(tmp_path):
    import torch

    from trainers.vicreg.model import VICReg
    from vicreg_bench.checkpoints import load_backbone

    path = tmp_path / "random_init_resnet18.pth"
    assert pretrain.write_random_init("resnet18", "64-64", 3, path)
    assert not pretrain.write_random_init("resnet18", "64-64", 3, path)  # reused
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
    docs = {name: read_results(out / "runs" / name / "results.json") for name in (pipeline.TRAINED, pipeline.RANDOM)}
    for name, doc in docs.items():  # read_results validated both against the schema
        assert list(doc["tasks"]) == list(TASKS), name
        assert all(e["status"] == "ok" for e in doc["tasks"].values()), {t: e.get("reason") for t, e in doc["tasks"].items()}
        assert doc["tasks"]["voc07_det"]["engine"] == "torchvision"
    assert docs[pipeline.TRAINED]["checkpoint"]["method"] == "vicreg"
    assert docs[pipeline.RANDOM]["checkpoint"]["arch"] == "resnet18"
    assert docs[pipeline.RANDOM]["checkpoint"]["label"] == "random init"
    # the check covered every headline metric with both numbers
    assert [(r["task"], r["metric"]) for r in summary["check"]] == HEADLINES
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
    assert "random_init_resnet18.pth" in md and "resnet18.pth" in md and "VICReg (demo)" in md
    assert "random init" in md and "| torchvision |" not in md  # the baseline reads as what it is
    # the report opens offline and carries the charts and the training curves
    from vicreg_bench.compare.report import external_references

    html = (out / "report.html").read_text()
    assert external_references(html) == []
    assert html.count('src="data:image/png;base64,') >= 3 and "Training" in html
    log = [json.loads(line) for line in (out / "pretrain" / "log.jsonl").read_text().splitlines()]
    assert log[-1] == {**log[-1], "type": "end", "status": "finished"}


@pytest.mark.slow
def test_demo_again_reuses_everything(tiny_demo, capsys):
    rc, out = tiny_demo
    assert rc == 0
    before = {n: (out / "runs" / n / "results.json").read_text() for n in (pipeline.TRAINED, pipeline.RANDOM)}
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

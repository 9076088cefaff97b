"""A task defined and registered in this test alone, following docs/architecture.md's "add a task" recipe,
shows up everywhere a built-in task does: `run --tasks` and `--list-options`, the data preflight and
`data check`, the results JSON (schema-checked with its registered rule), `compare` and the HTML report.
No other file is edited for it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from vicreg_bench.cli import main as cli_main
from vicreg_bench.tasks.common import dataset_block
from vicreg_bench.tasks.context import TaskContext, TaskOutput
from vicreg_bench.tasks.options import TaskOptions, option
from vicreg_bench.tasks.registry import Column, DemoPreset, Resources, register_task, unregister_task

TOY = "toy_class_balance"


@dataclass(frozen=True)
class ToyOptions(TaskOptions):
    toy_weight: float = option(1.0, "weight of the even classes in the score", minimum=0.0)


def toy_protocol(ctx: TaskContext) -> tuple[str, dict]:
    return "toy_balance", {"dataset": "imagenet", "split": "val", "weight": ctx.options.toy_weight}


def toy_run(ctx: TaskContext) -> TaskOutput:
    """A stand-in metric: the (weighted) share of val images in even classes, in percent."""
    from vicreg_bench.data.registry import open_classification

    name, params = toy_protocol(ctx)
    val = open_classification("imagenet", ctx.data_root, "val")
    even = sum(1 for _, label in val.samples if label % 2 == 0)
    score = min(100.0, 100.0 * ctx.options.toy_weight * even / len(val))
    return TaskOutput(metrics={"top1": score, "top5": 100.0}, protocol_name=name, protocol_params=params,
                      dataset=dataset_block("imagenet", {"test": val}))


@pytest.fixture
def toy_task():
    register_task(
        name=TOY, summary="share of even classes (a toy task)", protocol=toy_protocol, options=ToyOptions,
        data={"imagenet": (("classification", "val"),)}, metrics=("top1", "top5"), headline=("top1",),
        result_schema="classification_task", columns=(Column("top1", "Toy tasks", "Toy balance", 1000),),
        suites=("toy",), order=5, resources=Resources(device="cpu", gpus=0, cpus=1, mem_gb=1, hours=0.1),
        demo={"tiny": DemoPreset({"toy_weight": 1.0})},
    )(toy_run)
    yield TOY
    unregister_task(TOY)


def test_a_task_registered_in_a_test_shows_up_everywhere(toy_task, tiny_checkpoints, synthetic_root, tmp_path,
                                                        capsys):
    # run --list-options and the suite it declared
    assert cli_main(["run", "--list-options", "--suite", "toy"]) == 0
    assert "toy_weight  number, default 1.0: weight of the even classes" in capsys.readouterr().out

    # the preflight: its dataset missing stops the run before any compute, naming the task
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["run", "--ckpt", str(tiny_checkpoints["random"]), "--tasks", TOY, "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache")]
    assert cli_main(base + ["--data-root", str(empty), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{TOY}:" in err and "nothing was run" in err
    assert cli_main(["data", "check", "--data-root", str(synthetic_root), "--datasets", TOY]) == 0
    assert "imagenet   found      val 30" in capsys.readouterr().out

    # a misspelt option of the new task is refused like any other
    assert cli_main(base + ["--data-root", str(synthetic_root), "--option", "toy_wieght=2"]) == 2
    assert "did you mean toy_weight" in capsys.readouterr().err

    # results: run it (with a label) and read the schema-checked file
    out = tmp_path / "runs" / "toy"
    assert cli_main(base + ["--data-root", str(synthetic_root), "--out", str(out), "--label", "toy backbone",
                            "--option", "toy_weight=0.5"]) == 0
    capsys.readouterr()
    from vicreg_bench.results import read_results, validation_errors

    doc = read_results(out / "results.json")
    entry = doc["tasks"][TOY]
    assert entry["status"] == "ok" and entry["protocol"]["params"]["weight"] == 0.5
    assert 0 < entry["metrics"]["top1"] <= 50.0 and doc["checkpoint"]["label"] == "toy backbone"
    bad = json.loads((out / "results.json").read_text())
    bad["tasks"][TOY]["metrics"]["top1"] = 130.0  # its registered rule (classification_task) checks percentages
    assert any(TOY in e and "top1" in e for e in validation_errors(bad))

    # compare: its own column group and its label
    assert cli_main(["compare", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Toy balance" in text and "Toy tasks" in text and "toy backbone" in text
    assert f"{entry['metrics']['top1']:.1f}" in text
    assert cli_main(["compare", str(out), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "Toy balance" in html and "toy backbone" in html


def test_the_toy_task_leaves_the_registry_when_the_test_ends():
    from vicreg_bench.tasks.catalog import all_tasks

    assert TOY not in all_tasks()

"""Semi-supervised fine-tuning: the paper's learning rates per parameter group and their cosine decay, no
weight decay, a trunk that really trains (BN in training mode), and resuming from the epoch checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from task_contexts import task_ctx
from vicreg_bench.tasks import semisup as S
from vicreg_bench.tasks import train_loop
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.context import TaskContext


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backbone(resnet18_state):
    return resnet18_state, SimpleNamespace(arch="resnet18", sha256="2" * 64, normalize_input=True, method="torchvision")


def make_ctx(backbone, data: Path, work: Path, task: str, image_size: int = 32, **options) -> TaskContext:
    state, info = backbone
    options.setdefault("batch_size", 8)
    return task_ctx(task, state, info, data, work, image_size=image_size, **options)


def run(task: str, ctx: TaskContext):
    return all_tasks()[task].run(ctx)


def test_protocol_is_the_papers(backbone, tmp_path):
    ctx = make_ctx(backbone, tmp_path, tmp_path, "imagenet_semisup_1pct", image_size=224, batch_size=256)
    name, p = S.protocol_semisup(ctx, "imagenet_semisup_1pct")
    assert name == "semisup_finetune" and "overrides" not in p
    assert (p["epochs"], p["batch_size"], p["weight_decay"], p["momentum"], p["schedule"]) == (20, 256, 0.0, 0.9, "cosine")
    assert (p["lr_backbone"], p["lr_head"], p["train_split"]) == (0.03, 0.08, "train_1pct")
    _, p10 = S.protocol_semisup(ctx, "imagenet_semisup_10pct")
    assert (p10["lr_backbone"], p10["lr_head"], p10["train_split"]) == (0.01, 0.1, "train_10pct")
    assert p["eval_every"] == 1 and p["headline"] == "final epoch"


class SimulatedKill(Exception):
    pass


def test_finetuning_trains_the_trunk_with_two_learning_rates_and_resumes(backbone, synthetic_root, tmp_path,
                                                                          monkeypatch):
    task = "imagenet_semisup_10pct"
    full = run(task, make_ctx(backbone, synthetic_root, tmp_path / "a", task, epochs=3))
    h = full.extra["history"]
    # per-epoch cosine (T_max 3) of each group's own lr: backbone 0.01, head 0.1
    for epoch, entry in enumerate(h):
        factor = (1 + math.cos(math.pi * epoch / 3)) / 2
        assert entry["lr_backbone"] == pytest.approx(0.01 * factor)
        assert entry["lr_head"] == pytest.approx(0.1 * factor)
    assert full.metrics == {"top1": h[-1]["top1"], "top5": h[-1]["top5"]}
    assert full.dataset["num_images"] == {"train": 20, "test": 30}

    state = torch.load(tmp_path / "a" / "work" / task / "semisup_state.pt", weights_only=False)
    trunk = {k.removeprefix("trunk."): v for k, v in state["model"].items() if k.startswith("trunk.")}
    start = backbone[0]
    assert not torch.equal(trunk["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])  # the trunk learns
    assert not torch.equal(trunk["bn1.running_mean"], start["bn1.running_mean"])  # BN in training mode
    assert state["optimizer"]["param_groups"][0]["weight_decay"] == 0.0

    calls = []
    real_save = train_loop.save_state

    def save_then_die(path, st):
        real_save(path, st)
        calls.append(st["epoch"])
        if st["epoch"] == 2:
            raise SimulatedKill

    monkeypatch.setattr(train_loop, "save_state", save_then_die)
    with pytest.raises(SimulatedKill):
        run(task, make_ctx(backbone, synthetic_root, tmp_path / "b", task, epochs=3))
    monkeypatch.undo()
    resumed = run(task, make_ctx(backbone, synthetic_root, tmp_path / "b", task, epochs=3))
    assert calls == [1, 2] and resumed.extra["resumed_from_epoch"] == 2
    assert resumed.metrics == full.metrics
    assert [e["loss"] for e in resumed.extra["history"]] == [e["loss"] for e in h]


def test_eval_every_thins_out_evaluation(backbone, synthetic_root, tmp_path):
    out = run("imagenet_semisup_1pct", make_ctx(backbone, synthetic_root, tmp_path, "imagenet_semisup_1pct",
                                                epochs=3, eval_every=2))
    evaluated = [e["epoch"] for e in out.extra["history"] if "top1" in e]
    assert evaluated == [2, 3]  # every 2nd epoch and always the last
    assert out.protocol_params["overrides"]["eval_every"] == 2
    assert out.extra["best_epoch"] in (2, 3)

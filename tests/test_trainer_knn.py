"""A short CPU pretraining run lowers the loss and beats random initialisation on the harness's k-NN.

Data: the synthetic suite's places205 (class = scene; the two views of an image share its scene, so a
few VICReg steps learn it). The trainer reads the train split as an ImageFolder of symlinks; k-NN uses
the harness's reader, transform and `knn_classify` on train -> val.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.vicreg.train import main
from vicreg_bench.data.registry import open_classification
from vicreg_bench.data.transforms import knn_transform
from vicreg_bench.models import build_resnet
from vicreg_bench.tasks.knn import knn_classify

SIZE = 32


def image_folder_of_split(dataset, out: Path) -> Path:
    for i, (rel, label) in enumerate(dataset.samples):
        d = out / f"class{label:03d}"
        d.mkdir(parents=True, exist_ok=True)
        os.symlink(Path(dataset.root) / rel, d / f"{i}{Path(rel).suffix}")
    return out


@torch.no_grad()
def features(model: torch.nn.Module, dataset) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    items = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([item[0] for item in items])
    return model(x).numpy(), np.array([item[1] for item in items])


def knn_top1(model: torch.nn.Module, train, val) -> float:
    (a, ya), (b, yb) = features(model, train), features(model, val)
    return knn_classify(a, ya, b, yb, ks=(5,))["k5_top1"]


@pytest.mark.slow
def test_short_pretraining_beats_random_init_on_knn(synthetic_root, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tf = knn_transform(size=SIZE, resize=SIZE)
        train = open_classification("places205", synthetic_root, "train", transform=tf)
        val = open_classification("places205", synthetic_root, "val", transform=tf)
        folder = image_folder_of_split(train, tmp_path / "places_train")
        exp = tmp_path / "exp"
        rc = main(["--data", str(folder), "--arch", "resnet18", "--mlp", "256-256", "--image-size", str(SIZE),
                   "--crop-min-scale", "0.2", "--batch-size", "16", "--epochs", "4", "--warmup-epochs", "1",
                   "--base-lr", "10", "--num-workers", "0", "--exp-dir", str(exp), "--diag-batches", "1"])
        assert rc == 0

        epochs = [json.loads(line) for line in (exp / "log.jsonl").read_text().splitlines()]
        epochs = [r for r in epochs if r["type"] == "epoch"]
        assert len(epochs) == 4 and epochs[-1]["loss"] < epochs[0]["loss"]

        torch.manual_seed(0)  # the trainer's initial backbone: seed 0, built first, zero-init residual
        random_init = build_resnet("resnet18", zero_init_residual=True)
        trained = build_resnet("resnet18")
        trained.load_state_dict(torch.load(exp / "resnet18.pth", weights_only=True))
        random_top1, trained_top1 = knn_top1(random_init, train, val), knn_top1(trained, train, val)
        assert trained_top1 >= random_top1 + 10.0, (random_top1, trained_top1)
    finally:
        torch.set_num_threads(before)

"""BN + linear head on cached features: learns, is seeded, follows the schedules; CLI and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError
from vicreg_bench.features.files import save_feature_file
from vicreg_bench.tasks.linear_fast import LINEAR_PRESETS, build_head, learning_rate, train_linear_on_features


def separable(seed=0, n_train=600, n_test=200, dim=16, num_classes=6):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim)) * 3
    ytr = rng.integers(0, num_classes, n_train)
    yte = rng.integers(0, num_classes, n_test)
    xtr = (centers[ytr] + rng.normal(size=(n_train, dim))).astype(np.float32)
    xte = (centers[yte] + rng.normal(size=(n_test, dim))).astype(np.float32)
    return xtr, ytr, xte, yte


def test_learns_a_separable_problem():
    xtr, ytr, xte, yte = separable()
    out = train_linear_on_features(xtr, ytr, xte, yte, epochs=8, lr=0.05, weight_decay=1e-6, schedule="cosine")
    assert out["top1"] > 95 and out["top5"] == 100
    assert out["history"][-1]["train_loss"] < out["history"][0]["train_loss"]
    assert len(out["history"]) == 8 and out["best_top1"] >= out["top1"]
    assert 1 <= out["best_epoch"] <= 8


def test_deterministic_with_seed():
    xtr, ytr, xte, yte = separable(1, n_train=300)
    kw = dict(epochs=3, lr=0.02, weight_decay=1e-4, schedule=[2], nesterov=True)
    a = train_linear_on_features(xtr, ytr, xte, yte, seed=3, **kw)
    b = train_linear_on_features(xtr, ytr, xte, yte, seed=3, **kw)
    c = train_linear_on_features(xtr, ytr, xte, yte, seed=4, **kw)
    assert a["history"] == b["history"]
    assert [h["train_loss"] for h in a["history"]] != [h["train_loss"] for h in c["history"]]


def test_schedules():
    assert learning_rate(0.02, 0, 100, "cosine") == pytest.approx(0.02)
    assert learning_rate(0.02, 50, 100, "cosine") == pytest.approx(0.01)
    assert learning_rate(0.02, 99, 100, "cosine") == pytest.approx(0.01 * (1 + math.cos(math.pi * 0.99)))
    places = LINEAR_PRESETS["places205"]
    lrs = [learning_rate(places["lr"], e, places["epochs"], places["schedule"]) for e in range(places["epochs"])]
    assert lrs[3] == pytest.approx(0.003) and lrs[4] == pytest.approx(3e-4)
    assert lrs[8] == pytest.approx(3e-5) and lrs[12] == pytest.approx(3e-6) and lrs[-1] == pytest.approx(3e-6)
    assert LINEAR_PRESETS["imagenet"] == {"lr": 0.02, "weight_decay": 1e-6, "epochs": 100, "schedule": "cosine",
                                          "nesterov": False, "bn_weight_decay": True}
    xtr, ytr, xte, yte = separable(2, n_train=100)
    out = train_linear_on_features(xtr, ytr, xte, yte, epochs=3, lr=0.1, weight_decay=0, schedule=[2])
    assert [h["lr"] for h in out["history"]] == pytest.approx([0.1, 0.1, 0.01])


def test_head_init():
    import torch

    torch.manual_seed(0)
    head = build_head(512, 100)
    assert isinstance(head[0], torch.nn.BatchNorm1d) and head[0].eps == 1e-5 and head[0].affine
    assert float(head[1].weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert float(head[1].bias.detach().abs().max()) == 0.0


def test_bad_arguments():
    xtr, ytr, xte, yte = separable(3, n_train=50)
    with pytest.raises(UserError, match="epochs"):
        train_linear_on_features(xtr, ytr, xte, yte, epochs=0, lr=0.1, weight_decay=0, schedule="cosine")
    with pytest.raises(UserError, match="schedule"):
        train_linear_on_features(xtr, ytr, xte, yte, epochs=1, lr=0.1, weight_decay=0, schedule="step")
    with pytest.raises(UserError, match="16-d"):
        train_linear_on_features(xtr, ytr, xte[:, :4], yte, epochs=1, lr=0.1, weight_decay=0, schedule="cosine")


def test_cli_end_to_end_and_errors(tmp_path, capsys):
    xtr, ytr, xte, yte = separable(4, n_train=300)
    a, b = tmp_path / "train.npz", tmp_path / "test.npz"
    save_feature_file(a, xtr, ytr, class_names=[f"c{i}" for i in range(6)])
    save_feature_file(b, xte, yte)
    out = tmp_path / "lin.json"
    rc = cli_main(["linear", "--train", str(a), "--test", str(b), "--epochs", "4", "--lr", "0.05",
                   "--schedule", "2,3", "--json", str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "linear_fast" and report["params"]["schedule"] == [2, 3]
    assert report["params"]["weight_decay"] == 1e-6  # ImageNet preset default kept
    assert report["metrics"]["top1"] > 90 and len(report["history"]) == 4
    assert "top1" in capsys.readouterr().out

    rc = cli_main(["linear", "--train", str(a), "--test", str(b), "--schedule", "four"])
    assert rc == 2 and "--schedule" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, features=np.zeros((4, 16), np.float32), labels=np.array([0.5, 1, 2, 3]))
    rc = cli_main(["linear", "--train", str(a), "--test", str(bad)])
    assert rc == 2 and "must be integers" in capsys.readouterr().err

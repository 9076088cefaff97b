"""A ViT checkpoint through every task of `run --suite all` on the tiny synthetic suite: k-NN and the SVM on
the CLS token, the linear probes on DINO's eval_linear input, semi-supervised fine-tuning with layer-wise lr
decay, detection skipped with its reason; and the feature cache keeping the layers apart."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vicreg_bench.cli import main as cli_main
from vicreg_bench.results import read_results
from vit_checkpoints import dino_full, timm_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dino_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vit") / "dino_vits16_full.pth"
    torch.save(dino_full(timm_vit(seed=1), timm_vit(seed=2)), path)
    return path


@pytest.mark.slow
def test_a_vit_runs_every_task(dino_ckpt, synthetic_root, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["run", "--ckpt", str(dino_ckpt), "--suite", "all", "--data-root", str(synthetic_root), "--out",
                   str(out), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu", "--image-size", "32",
                   "--epochs", "1", "--batch-size", "16", "--workers", "0", "--svm-variant", "squash",
                   "--option", "svm_costs=[1.0]", "--option", "svm_jobs=1", "--label", "DINO ViT (tiny)"])
    assert rc == 0, capsys.readouterr().err
    doc = read_results(out / "results.json")
    assert doc["checkpoint"]["method"] == "dino" and doc["checkpoint"]["arch"].startswith("vit_small_patch16_224")
    t = doc["tasks"]
    for name in ("imagenet_knn", "voc07_svm", "imagenet_linear", "places205_linear", "inat18_linear",
                 "imagenet_semisup_1pct", "imagenet_semisup_10pct"):
        assert t[name]["status"] == "ok", (name, t[name]["reason"])
    assert t["imagenet_knn"]["protocol"]["params"]["layer"] == "cls"
    assert t["voc07_svm"]["protocol"]["params"]["layer"] == "cls"
    p = t["imagenet_linear"]["protocol"]["params"]
    # a 128-wide, 2-block ViT: DINO's ViT-S rule (the last 4 CLS tokens), limited to its 2 blocks
    assert (p["layer"], p["n_last_blocks"], p["avgpool_patchtokens"]) == ("cls_last2", 2, False)
    assert t["imagenet_semisup_10pct"]["protocol"]["params"]["layer_decay"] == 0.65
    for name in ("voc07_det", "coco_det"):
        assert t[name]["status"] == "skipped" and "need a ResNet backbone" in t[name]["reason"]
    # the cache holds the CLS features and the last-2-blocks features apart
    layers = {__import__("json").loads(p.read_text())["desc"]["layer"] for p in (tmp_path / "cache").glob("*/*/meta.json")}
    assert {"cls", "cls_last2"} <= layers


def test_vit_options_are_checked_against_the_backbone(tiny_checkpoints, dino_ckpt, synthetic_root, tmp_path, capsys):
    base = ["run", "--tasks", "imagenet_linear", "--data-root", str(synthetic_root), "--cache-dir",
            str(tmp_path / "cache"), "--device", "cpu", "--image-size", "32", "--epochs", "1", "--workers", "0",
            "--protocol", "fast"]
    assert cli_main(base + ["--ckpt", str(tiny_checkpoints["random"]), "--out", str(tmp_path / "r"),
                            "--option", "n_last_blocks=2"]) == 2
    assert "apply to ViT backbones" in capsys.readouterr().err
    assert cli_main(base + ["--ckpt", str(dino_ckpt), "--out", str(tmp_path / "v"), "--option", "n_last_blocks=1",
                            "--option", "avgpool_patchtokens=true"]) == 0
    p = read_results(tmp_path / "v" / "results.json")["tasks"]["imagenet_linear"]["protocol"]["params"]
    assert p["layer"] == "cls_last1_avgpool" and p["vit_overrides"] == {"n_last_blocks": 1, "avgpool_patchtokens": True}
    assert cli_main(base + ["--ckpt", str(dino_ckpt), "--out", str(tmp_path / "w"), "--option", "n_last_blocks=3"]) == 2
    assert "n_last_blocks=3" in capsys.readouterr().err and not (tmp_path / "w" / "results.json").exists()

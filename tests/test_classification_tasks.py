"""The classification tasks called directly: protocol settings, batching, seeded augmentation, the paper
linear probe resuming from its per-epoch checkpoint, the fast probe and both VOC07 SVM image variants."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from task_contexts import task_ctx
from vicreg_bench.errors import UserError
from vicreg_bench.features import FeatureExtractor
from vicreg_bench.results import protocol_hash
from vicreg_bench.tasks import epoch_data, knn, linear, svm, train_loop
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.context import TaskContext


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def backbone(resnet18_state):
    info = SimpleNamespace(arch="resnet18", sha256="1" * 64, normalize_input=True, method="torchvision")
    return resnet18_state, info


def make_ctx(backbone, data: Path, tmp: Path, task: str, protocol: str = "paper", image_size: int = 32,
             **options) -> TaskContext:
    state, info = backbone
    fx = FeatureExtractor(state, info, data_root=data, cache_dir=tmp / "cache", image_size=32, resize=37,
                          workers=0, progress=False)
    return task_ctx(task, state, info, data, tmp, protocol=protocol, image_size=image_size, features=fx, **options)


def run(task: str, ctx: TaskContext):
    return all_tasks()[task].run(ctx)


def test_paper_settings_are_the_tables(backbone, tmp_path):
    expected = {
        "imagenet_linear": (100, 0.02, 1e-6, "cosine"),
        "places205_linear": (28, 0.003, 1e-4, {"milestones": [4, 8, 12], "gamma": 0.1}),
        "inat18_linear": (84, 0.005, 1e-4, {"milestones": [24, 48, 72], "gamma": 0.1}),
    }
    for task, (epochs, lr, wd, schedule) in expected.items():
        name, p = linear.protocol_linear(make_ctx(backbone, tmp_path, tmp_path, task, image_size=224), task)
        assert name == "linear_paper" and "overrides" not in p
        assert (p["epochs"], p["lr"], p["weight_decay"], p["schedule"]) == (epochs, lr, wd, schedule)
        assert (p["batch_size"], p["momentum"], p["head"]) == (256, 0.9, "bn_linear")
        assert p["test_transform"]["size"] == 224 and p["test_transform"]["resize"] == 256
        assert p["train_transform"]["size"] == 224 and "RandomResizedCrop" in p["train_transform"]["repr"]
    name, p = knn.protocol_imagenet_knn(make_ctx(backbone, tmp_path, tmp_path, "imagenet_knn", image_size=224))
    assert name == "knn_dino" and p["ks"] == [10, 20, 100, 200] and p["temperatures"] == [0.07]
    assert p["transform"]["interpolation"] == "bicubic"
    name, p = svm.protocol_voc07_svm(make_ctx(backbone, tmp_path, tmp_path, "voc07_svm", image_size=224))
    assert name == "svm_vissl" and p["image_variant"] == "squash" and p["extra_variants"] == ["center_crop"]
    assert p["svm"]["costs"] == [0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0]

    # scaling down is recorded, so the hash can never equal the paper's
    small = make_ctx(backbone, tmp_path, tmp_path, "places205_linear", epochs=3, batch_size=32)
    n0, p0 = linear.protocol_linear(make_ctx(backbone, tmp_path, tmp_path, "places205_linear", image_size=224),
                                    "places205_linear")
    n1, p1 = linear.protocol_linear(small, "places205_linear")
    assert p1["overrides"] == {"epochs": 3, "batch_size": 32, "image_size": 32}
    assert p1["schedule"]["milestones"] == [1] and protocol_hash(n0, p0) != protocol_hash(n1, p1)
    fast = make_ctx(backbone, tmp_path, tmp_path, "inat18_linear", protocol="fast")
    assert linear.protocol_linear(fast, "inat18_linear")[0] == "linear_fast"
    with pytest.raises(UserError, match="fast"):
        linear.protocol_linear(make_ctx(backbone, tmp_path, tmp_path, "imagenet_linear", protocol="fast",
                                        linear_head="linear"), "imagenet_linear")


def test_scaled_milestones():
    assert linear.scaled_milestones((4, 8, 12), 28, 28) == [4, 8, 12]
    assert linear.scaled_milestones((4, 8, 12), 28, 14) == [2, 4, 6]
    assert linear.scaled_milestones((24, 48, 72), 84, 7) == [2, 4, 6]
    assert linear.scaled_milestones((4, 8, 12), 28, 2) == [1]


def test_epoch_batches_split_the_same_global_batches():
    one = epoch_data.EpochBatches(37, 8, seed=3, epoch=2)
    r0 = epoch_data.EpochBatches(37, 8, seed=3, epoch=2, rank=0, world_size=2)
    r1 = epoch_data.EpochBatches(37, 8, seed=3, epoch=2, rank=1, world_size=2)
    assert one.global_sizes == [8, 8, 8, 8, 5]
    for g, a, b in zip(one, r0, r1):
        assert sorted(a + b) == sorted(g) and not set(a) & set(b)
    assert sorted(i for batch in one for i in batch) == list(range(37))
    assert list(epoch_data.EpochBatches(37, 8, seed=3, epoch=3)) != list(one)  # a new order every epoch
    # a last batch that would leave a process with < 2 images is dropped (BatchNorm needs 2)
    assert epoch_data.EpochBatches(33, 8, 0, 0, 0, 2).global_sizes == [8, 8, 8, 8]


def test_seeded_augmentation_depends_on_image_not_on_order(synthetic_root):
    from vicreg_bench.data.registry import open_classification
    from vicreg_bench.data.transforms import linear_train_transform

    ds = open_classification("imagenet", synthetic_root, "train", transform=linear_train_transform(size=32))
    aug = epoch_data.SeededAugmentation(ds, seed=0, epoch=1)
    a = aug[5][0]
    torch.rand(10)  # disturb the global RNG as other images / workers would
    _ = aug[7]
    assert torch.equal(aug[5][0], a)
    assert not torch.equal(epoch_data.SeededAugmentation(ds, seed=0, epoch=2)[5][0], a)


class SimulatedKill(Exception):
    pass


def test_paper_linear_resumes_from_its_epoch_checkpoint(backbone, synthetic_root, tmp_path, monkeypatch):
    opts = dict(epochs=3, batch_size=16)
    full = run("imagenet_linear", make_ctx(backbone, synthetic_root, tmp_path / "a", "imagenet_linear", **opts))
    assert [h["epoch"] for h in full.extra["history"]] == [1, 2, 3]
    assert full.metrics == {"top1": full.extra["history"][-1]["top1"], "top5": full.extra["history"][-1]["top5"]}
    lrs = [h["lr"] for h in full.extra["history"]]
    assert lrs[0] == pytest.approx(0.02) and lrs[1] == pytest.approx(0.02 * 0.75)  # cosine, T_max 3, per epoch

    saves = []
    real_save = train_loop.save_state

    def save_then_die(path, state):
        real_save(path, state)
        saves.append(state["epoch"])
        if state["epoch"] == 1:
            raise SimulatedKill  # the job dies right after epoch 1 was checkpointed

    monkeypatch.setattr(train_loop, "save_state", save_then_die)
    ctx = make_ctx(backbone, synthetic_root, tmp_path / "b", "imagenet_linear", **opts)
    with pytest.raises(SimulatedKill):
        run("imagenet_linear", ctx)
    resumed = run("imagenet_linear", make_ctx(backbone, synthetic_root, tmp_path / "b", "imagenet_linear", **opts))
    assert saves == [1, 2, 3] and resumed.extra["resumed_from_epoch"] == 1
    assert resumed.metrics == full.metrics
    for h_full, h_res in zip(full.extra["history"], resumed.extra["history"]):
        assert {k: v for k, v in h_full.items() if k != "train_images_per_s"} == \
            {k: v for k, v in h_res.items() if k != "train_images_per_s"}

    # another protocol (here: fewer epochs) never resumes from this checkpoint
    monkeypatch.undo()
    other = run("imagenet_linear", make_ctx(backbone, synthetic_root, tmp_path / "b", "imagenet_linear",
                                            epochs=1, batch_size=16))
    assert other.extra["resumed_from_epoch"] == 0


def test_fast_linear_on_cached_features(backbone, synthetic_root, tmp_path):
    ctx = make_ctx(backbone, synthetic_root, tmp_path, "inat18_linear", protocol="fast", epochs=5)
    out = run("inat18_linear", ctx)
    assert out.protocol_name == "linear_fast" and out.protocol_params["head"] == "bn_linear"
    assert out.protocol_params["schedule"]["milestones"] == [1, 3, 4]
    assert 0 <= out.metrics["top1"] <= 100 and len(out.extra["history"]) == 5
    assert out.dataset["splits"] == {"train": "train", "test": "val"}
    assert set(out.throughput["extract"]) == {"inat2018/train/eval", "inat2018/val/eval"}
    # a later run reads the disk cache; same seed -> the same numbers
    again = run("inat18_linear", make_ctx(backbone, synthetic_root, tmp_path, "inat18_linear", protocol="fast", epochs=5))
    assert again.metrics == out.metrics
    assert all(v["from_cache"] for v in again.throughput["extract"].values())


def test_voc07_svm_records_both_image_variants(backbone, synthetic_root, tmp_path):
    ctx = make_ctx(backbone, synthetic_root, tmp_path, "voc07_svm", svm_costs=[1.0], svm_jobs=1)
    out = run("voc07_svm", ctx)
    assert set(out.metrics) == {"mAP", "per_class_AP", "center_crop_mAP"}
    assert out.metrics["mAP"] == out.extra["variants"]["squash"]["mAP"]
    assert out.metrics["center_crop_mAP"] == out.extra["variants"]["center_crop"]["mAP"]
    assert out.protocol_params["overrides"] == {"image_size": 32, "svm_costs": [1.0]}
    assert out.dataset["num_images"] == {"train": 40, "test": 40}
    extract = out.throughput["extract"]
    assert set(extract) == {f"voc2007/{s}/svm_{v}" for s in ("trainval", "test") for v in ("squash", "center_crop")}
    fs = ctx.features("voc2007", "trainval", "svm_squash")
    assert fs.labels.dtype == np.int8 and fs.labels.shape == (40, 20)

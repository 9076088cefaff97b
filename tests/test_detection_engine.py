"""The torchvision engine end to end on the synthetic VOC and COCO layouts (tiny images, resnet18, few steps)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from vicreg_bench.models import build_resnet
from vicreg_bench.results import new_results, task_entry, validation_errors
from task_contexts import task_ctx
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.tasks.context import TaskContext

TINY = {
    "det_engine": "torchvision",
    "det_ims_per_batch": 2,
    "det_max_iter": 2,
    "det_input_scale": 0.1,  # 48..80 px short side: the synthetic images are ~64 px
    "det_roi_per_image": 16,
    "det_test_proposals": 20,
    "det_max_test_images": 2,
    "det_precise_bn_iters": 1,
    "det_num_workers": 0,
}


def _ctx(root: Path, work: Path, task: str = "voc07_det", **options) -> TaskContext:
    torch.manual_seed(0)
    info = types.SimpleNamespace(arch="resnet18", sha256="0" * 64, normalize_input=True, path="x", format="torchvision", method="torchvision")
    ctx = task_ctx(task, build_resnet("resnet18").state_dict(), info, root, work, **{**TINY, **options})
    ctx.work_dir = work
    return ctx


def run_voc07_det(ctx: TaskContext):
    return all_tasks()["voc07_det"].run(ctx)


def run_coco_det(ctx: TaskContext):
    return all_tasks()["coco_det"].run(ctx)


def protocol_voc07_det(ctx: TaskContext):
    return all_tasks()["voc07_det"].protocol(ctx)


def protocol_coco_det(ctx: TaskContext):
    return all_tasks()["coco_det"].protocol(ctx)


def _check_entry(task: str, out) -> None:
    entry = task_entry(status="ok", metrics=out.metrics, protocol_name=out.protocol_name, protocol_params=out.protocol_params,
                       dataset=out.dataset, engine=out.engine, seed=0, seconds=1.0, throughput=out.throughput)
    doc = new_results({"path": "x", "sha256": "0" * 64, "format": "torchvision", "method": "torchvision", "arch": "resnet18"},
                      suite="table2", protocol="paper")
    doc["tasks"][task] = entry
    assert validation_errors(doc) == []


@pytest.mark.slow
def test_voc_task_end_to_end_and_resume(synthetic_root, tmp_path):
    from vicreg_bench.detection.tv_runner import DetectionInterrupted

    # interrupted after 1 of 2 iterations, then resumed
    ctx = _ctx(synthetic_root, tmp_path / "a", det_stop_after_iter=1, det_checkpoint_period=1)
    with pytest.raises(DetectionInterrupted, match="iteration 1 of 2"):
        run_voc07_det(ctx)
    assert (tmp_path / "a" / "checkpoint_last.pth").is_file()
    out = run_voc07_det(_ctx(synthetic_root, tmp_path / "a", det_checkpoint_period=1))
    assert out.engine == "torchvision" and out.extra["resumed_from"] == 1 and out.extra["iterations_done"] == 2
    assert set(out.metrics) == {"AP", "AP50", "AP75"} and all(0.0 <= v <= 100.0 for v in out.metrics.values())
    assert out.throughput["train_iter_s"] > 0 and out.dataset["splits"]["test"] == "voc2007/test"
    assert not out.extra["paper_protocol"] and out.protocol_params["schedule"]["max_iter"] == 2
    _check_entry("voc07_det", out)
    name, params = protocol_voc07_det(_ctx(synthetic_root, tmp_path / "a", det_checkpoint_period=1))
    assert name == out.protocol_name and all(out.protocol_params[k] == v for k, v in params.items())
    # the same run without interruption ends with the same weights
    run_voc07_det(_ctx(synthetic_root, tmp_path / "b", det_checkpoint_period=1))
    a = torch.load(tmp_path / "a" / "model_final.pth", weights_only=True)
    b = torch.load(tmp_path / "b" / "model_final.pth", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_coco_task_end_to_end(synthetic_root, tmp_path):
    out = run_coco_det(_ctx(synthetic_root, tmp_path, "coco_det", det_max_iter=1))
    assert out.engine == "torchvision" and out.protocol_name == "det_coco_mask_rcnn_R50_FPN_1x_torchvision"
    for k in ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75"):
        assert 0.0 <= out.metrics[k] <= 100.0
    assert out.extra["num_detections"] > 0
    _check_entry("coco_det", out)
    name, _ = protocol_coco_det(_ctx(synthetic_root, tmp_path, "coco_det"))
    assert name == out.protocol_name

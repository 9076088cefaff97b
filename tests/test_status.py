"""`vicreg-bench status OUT`: done, failed (with the log's last lines), skipped and running tasks."""

from __future__ import annotations

from vicreg_bench.cli import main as cli_main
from vicreg_bench.locks import FileLock
from vicreg_bench.results import new_results, task_entry, write_results

CKPT = {"path": "/c/model.pth", "sha256": "a" * 64, "format": "torchvision", "method": "vicreg", "arch": "resnet50"}


def test_status_of_an_output_folder(tmp_path, capsys):
    out = tmp_path / "runs" / "model"
    doc = new_results(CKPT, suite="all", protocol="paper")
    doc["checkpoint"]["label"] = "my model"
    doc["tasks"]["imagenet_knn"] = task_entry(status="ok", metrics={"k20_top1": 61.0, "k200_top1": 59.5},
                                              protocol_name="knn_dino", seconds=12.0)
    doc["tasks"]["voc07_svm"] = task_entry(status="failed", reason="RuntimeError: boom", protocol_name="svm_vissl")
    doc["tasks"]["coco_det"] = task_entry(status="skipped", reason="data missing: coco", protocol_name="det")
    write_results(out / "results.json", doc)
    (out / "work" / "voc07_svm").mkdir(parents=True)
    (out / "work" / "voc07_svm" / "error.log").write_text("Traceback (most recent call last):\n  line\nRuntimeError: boom\n")
    running = FileLock(out / ".locks" / "imagenet_linear.lock", "imagenet_linear of model.pth")
    assert running.acquire()
    try:
        assert cli_main(["status", str(tmp_path / "runs")]) == 0
    finally:
        running.release()
    text = capsys.readouterr().out
    assert "model: my model" in text
    assert "imagenet_knn     done" in text and "k20_top1 61.00, k200_top1 59.50 in 12 s" in text
    assert "voc07_svm        failed      RuntimeError: boom" in text and "| RuntimeError: boom" in text
    assert "coco_det         skipped     data missing: coco" in text
    assert "imagenet_linear  running     in process" in text
    assert cli_main(["status", str(tmp_path / "nope")]) == 2

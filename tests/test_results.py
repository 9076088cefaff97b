import json

import pytest

from vicreg_bench.errors import UserError
from vicreg_bench.results import new_results, read_results, task_entry, validation_errors, write_results

CKPT = {"path": "model.pth", "sha256": "a" * 64, "format": "torchvision", "method": "vicreg", "arch": "resnet50"}


def _results():
    r = new_results(CKPT, suite="knn", protocol="paper")
    r["tasks"]["imagenet_knn"] = task_entry(
        status="ok",
        metrics={"k20_top1": 55.5, "k200_top1": 54.0},
        protocol_name="knn",
        protocol_params={"T": 0.07},
        dataset={"name": "imagenet", "splits": {"train": "train"}, "num_images": {"train": 10}, "manifest_sha256": {"train": "b" * 64}},
        seed=0,
        seconds=1.0,
    )
    r["tasks"]["voc07_svm"] = task_entry(status="skipped", reason="VOC2007 missing", protocol_name="svm")
    return r


def test_roundtrip(tmp_path):
    path = tmp_path / "results.json"
    write_results(path, _results())
    back = read_results(path)
    assert back["tasks"]["imagenet_knn"]["metrics"]["k20_top1"] == 55.5
    assert back["environment"]["num_processes"] == 1
    assert back["tool"]["name"] == "vicreg-bench"


def test_writer_refuses_invalid(tmp_path):
    r = _results()
    r["tasks"]["imagenet_knn"]["metrics"] = {"top1": 1.0}  # wrong metric names for k-NN
    with pytest.raises(ValueError):
        write_results(tmp_path / "r.json", r)
    assert not (tmp_path / "r.json").exists()


def test_skipped_needs_reason():
    r = _results()
    r["tasks"]["voc07_svm"]["reason"] = None
    assert any("voc07_svm" in e for e in validation_errors(r))


def test_reader_explains_bad_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "tasks": {}}))
    with pytest.raises(UserError, match="bad.json.*checkpoint"):
        read_results(bad)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        read_results(tmp_path / "junk.json")

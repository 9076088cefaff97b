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


def test_schema_version_1_files_are_still_read_and_upgraded(tmp_path):
    """Version 1 (before checkpoint.label): a file written then reads as version 2 with label None; a
    version 2 file must carry the label (a string or null)."""
    old = _results()
    old["schema_version"] = 1
    del old["checkpoint"]["label"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    back = read_results(path)
    assert back["schema_version"] == 2 and back["checkpoint"]["label"] is None
    new = _results()
    assert new["schema_version"] == 2 and new["checkpoint"]["label"] is None
    del new["checkpoint"]["label"]
    assert any("label" in e for e in validation_errors(new))
    new["checkpoint"]["label"] = "my backbone"
    assert validation_errors(new) == []
    future = dict(_results(), schema_version=3)
    path.write_text(json.dumps(future))
    with pytest.raises(UserError, match="schema_version 3 is not supported"):
        read_results(path)


def test_merge_keeps_the_newest_entry_of_each_task():
    from vicreg_bench.results import merge_results

    older, newer = _results(), _results()
    older["created"], newer["created"] = "2026-01-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"
    newer["tasks"] = {"imagenet_knn": dict(older["tasks"]["imagenet_knn"], metrics={"k20_top1": 60.0, "k200_top1": 1.0})}
    merged = merge_results([newer, older], order=["voc07_svm", "imagenet_knn"], suite="all")
    assert list(merged["tasks"]) == ["voc07_svm", "imagenet_knn"] and merged["suite"] == "all"
    assert merged["tasks"]["imagenet_knn"]["metrics"]["k20_top1"] == 60.0 and merged["created"] == newer["created"]
    other = dict(_results(), checkpoint={**CKPT, "sha256": "c" * 64, "label": None})
    with pytest.raises(UserError, match="different checkpoints"):
        merge_results([older, other])

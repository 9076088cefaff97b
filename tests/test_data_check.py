"""`vicreg-bench data check` and the preflight `run` uses: found / missing / malformed, counts, layouts."""

from __future__ import annotations

import json
import shutil

import pytest

from vicreg_bench.cli import main as cli_main
from vicreg_bench.data.check import (
    dataset_status,
    preflight,
    require_tasks_data,
    task_data,
    task_problems,
)
from vicreg_bench.errors import UserError


@pytest.fixture
def partial_root(synthetic_root, tmp_path):
    """imagenet complete (linked), VOC2007 with one broken XML, inat2018 without val2018.json, the rest absent."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "imagenet").symlink_to(synthetic_root / "imagenet")
    shutil.copytree(synthetic_root / "VOC2007", root / "VOC2007")
    test_id = (root / "VOC2007/ImageSets/Main/test.txt").read_text().split()[0]
    (root / "VOC2007/Annotations" / f"{test_id}.xml").write_text("<annotation><object></annotation>\n")
    shutil.copytree(synthetic_root / "inat2018", root / "inat2018")
    (root / "inat2018/val2018.json").unlink()
    return root, test_id


def test_data_check_report_for_a_partial_root(partial_root, capsys):
    root, test_id = partial_root
    assert cli_main(["data", "check", "--data-root", str(root)]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"data root: {root}"
    row = {ln.split()[0]: ln for ln in lines if ln and not ln.startswith(" ")}
    assert row["imagenet"].split()[1] == "found"
    assert "train 60, val 30, train_1pct 10, train_10pct 20" in row["imagenet"]
    assert row["voc2007"].split()[1] == "malformed" and "trainval 40" in row["voc2007"]
    assert f"{root / 'VOC2007/Annotations' / test_id}.xml: line 1 column" in out
    assert row["inat2018"].split()[1] == "missing" and "train 48" in row["inat2018"]
    assert f"{root / 'inat2018/val2018.json'}: iNat2018 val annotations not found" in out
    for name in ("places205", "voc2012", "coco"):
        assert row[name].split()[1] == "missing"
    # the exact layout expected is printed for what is not found, and not for what is
    assert "trainvalsplit_places205/train_places205.csv" in out
    assert "annotations/instances_train2017.json, instances_val2017.json" in out
    assert "subsets/1percent.txt" not in out
    assert lines[-1] == "1 of 6 datasets found"


def test_data_check_json_and_dataset_selection(partial_root, capsys):
    root, _ = partial_root
    assert cli_main(["data", "check", "--data-root", str(root), "--datasets", "imagenet", "--json"]) == 0
    (st,) = json.loads(capsys.readouterr().out)
    assert st["name"] == "imagenet" and st["state"] == "found" and st["counts"]["val"] == 30
    assert st["path"] == str(root / "imagenet") and "imagenet/" in st["expected_layout"]
    assert cli_main(["data", "check", "--data-root", str(root), "--datasets", "cifar"]) == 2
    assert "unknown dataset or task 'cifar'" in capsys.readouterr().err


def test_data_check_needs_a_data_root(monkeypatch, capsys, synthetic_root):
    monkeypatch.delenv("VICREG_BENCH_DATA", raising=False)
    assert cli_main(["data", "check"]) == 2
    assert "no data root: pass --data-root DIR or set $VICREG_BENCH_DATA" in capsys.readouterr().err
    monkeypatch.setenv("VICREG_BENCH_DATA", str(synthetic_root))
    assert cli_main(["data", "check"]) == 0  # the whole synthetic suite is found
    assert capsys.readouterr().out.splitlines()[-1] == "6 of 6 datasets found"


def test_optional_subsets_do_not_make_imagenet_missing(synthetic_root, tmp_path):
    shutil.copytree(synthetic_root / "imagenet", tmp_path / "imagenet")
    shutil.rmtree(tmp_path / "imagenet/subsets")
    st = dataset_status("imagenet", tmp_path)
    assert st.state == "found" and set(st.counts) == {"train", "val"}
    assert any(p.startswith("optional train_1pct not available") for p in st.problems)
    (linear,) = preflight(["imagenet_linear"], tmp_path)
    assert linear.ok and task_problems("imagenet_linear", [linear]) == []
    (semi,) = preflight(["imagenet_semisup_1pct"], tmp_path)
    assert semi.state == "missing" and set(semi.counts) == {"val"}
    assert "1percent.txt" in task_problems("imagenet_semisup_1pct", [semi])[0]


def test_preflight_for_tasks_lists_everything_missing_at_once(partial_root):
    root, _ = partial_root
    tasks = ["imagenet_linear", "voc07_svm", "voc07_det", "coco_det", "places205_linear"]
    statuses = preflight(tasks, root)
    assert [s.name for s in statuses] == ["imagenet", "voc2007", "voc2012", "coco", "places205"]
    assert task_problems("imagenet_linear", statuses) == []
    # the broken XML blocks detection, not the SVM (which reads the per-class lists)
    assert task_problems("voc07_svm", statuses) == []
    det = task_problems("voc07_det", statuses)
    assert any("bad XML" in p for p in det) and any("VOC2012" in p for p in det)
    assert task_problems("coco_det", statuses) and task_problems("places205_linear", statuses)
    with pytest.raises(UserError) as e:
        require_tasks_data(tasks, root)
    msg = str(e.value)
    assert "3 task(s)" in msg and "--skip-missing" in msg
    for t in ("voc07_det", "coco_det", "places205_linear", "voc07_svm"):
        assert (t + ":" in msg) == (t != "voc07_svm")
    assert require_tasks_data(["imagenet_linear", "imagenet_knn"], root)[0].ok


def test_every_design_task_has_its_data_listed():
    assert set(task_data()) == {
        "imagenet_linear", "imagenet_semisup_1pct", "imagenet_semisup_10pct", "imagenet_knn", "places205_linear",
        "voc07_svm", "inat18_linear", "voc07_det", "coco_det",
    }  # fmt: skip


def test_verify_images_finds_corrupt_files(synthetic_root, tmp_path, capsys):
    shutil.copytree(synthetic_root / "VOC2012", tmp_path / "VOC2012")
    bad = sorted((tmp_path / "VOC2012/JPEGImages").glob("*.jpg"))[3]
    bad.write_bytes(bad.read_bytes()[:200])
    assert dataset_status("voc2012", tmp_path).ok  # without decoding, the layout is fine
    assert cli_main(["data", "check", "--data-root", str(tmp_path), "--datasets", "voc2012", "--verify-images"]) == 1
    out = capsys.readouterr().out
    assert "voc2012    malformed  trainval 24" in out and f"{bad}: cannot decode image" in out

"""`vicreg-bench compare`: loading, the paper layout, every marking rule, the four formats, errors.

The results files are hand-made with `new_results` / `task_entry` (so they are schema-valid), with
protocol parameters shaped like the ones the tasks record.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest

from vicreg_bench import cli
from vicreg_bench.compare import MARKS, build_table, cell_text, columns, load_runs, render_markdown, render_text
from vicreg_bench.errors import UserError
from vicreg_bench.published import TABLES, normalise_method, published_rows, published_value
from vicreg_bench.results import new_results, task_entry, write_results

SHA = {"vicreg": "a" * 64, "barlow": "b" * 64, "moco": "c" * 64, "random": "d" * 64}
MANIFEST = {"train": "1" * 64, "val": "2" * 64}


def ckpt(name: str, method: str | None = None) -> dict:
    return {"path": f"/ckpts/{name}.pth", "sha256": SHA[name], "format": "torchvision", "method": method or name, "arch": "resnet50"}


def dataset(name: str = "imagenet", manifest: dict | None = None, n: int = 1000) -> dict:
    manifest = manifest or MANIFEST
    return {"name": name, "splits": {k: k for k in manifest}, "num_images": {k: n for k in manifest}, "manifest_sha256": manifest}


def linear(top1: float, top5: float = 90.0, *, name: str = "linear_paper", epochs: int = 100, overrides: dict | None = None,
           precision: str = "fp32", manifest: dict | None = None, task_dataset: str = "imagenet") -> dict:
    params = {"dataset": task_dataset, "epochs": epochs, "lr": 0.02, "weight_decay": 1e-6, "batch_size": 256,
              "schedule": "cosine", "precision": precision,
              "test_transform": {"name": "eval", "size": 224, "resize": 256, "normalize": True}}
    if overrides:
        params["overrides"] = overrides
    return task_entry(status="ok", metrics={"top1": top1, "top5": top5}, protocol_name=name, protocol_params=params,
                      dataset=dataset(task_dataset, manifest), seed=0, seconds=12.0)


def knn(k20: float, k200: float, *, k10: float | None = None, k100: float | None = None) -> dict:
    metrics = {"k20_top1": k20, "k200_top1": k200, "k20_top5": min(100.0, k20 + 15), "k200_top5": min(100.0, k200 + 17)}
    if k10 is not None:
        metrics["k10_top1"] = k10
    if k100 is not None:
        metrics["k100_top1"] = k100
    params = {"ks": [10, 20, 100, 200], "temperatures": [0.07], "l2_normalize": True, "transform": {"name": "knn", "size": 224}}
    return task_entry(status="ok", metrics=metrics, protocol_name="knn_dino", protocol_params=params,
                      dataset=dataset(), seed=0, seconds=3.0)


VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def svm(m_ap: float, variant: str = "squash", extra: tuple[str, ...] = ()) -> dict:
    per_class = {c: round(min(100.0, m_ap + (i - 10) * 1.5), 2) for i, c in enumerate(VOC_CLASSES)}
    params = {"image_variant": variant, "extra_variants": list(extra),
              "transforms": {v: {"name": f"svm_{v}", "size": 224} for v in (variant, *extra)},
              "svm": {"costs": [0.01, 0.1, 1.0], "cv_folds": 3}}
    return task_entry(status="ok", metrics={"mAP": m_ap, "per_class_AP": per_class}, protocol_name="svm_vissl",
                      protocol_params=params, dataset=dataset("voc2007", {"trainval": "3" * 64, "test": "4" * 64}),
                      seed=0, seconds=30.0)


def det(ap50: float, engine: str = "detectron2", max_iter: int = 24000, record_deviations: bool = True) -> dict:
    """Shaped like vicreg_bench.detection.protocols.protocol_record and the runners' `extra`."""
    notes = [] if max_iter == 24000 else [f"schedule scaled to {max_iter} iterations (not the protocol)"]
    params = {"engine": engine, "model": "faster_rcnn_R_C4_extra_norm", "arch": "resnet50",
              "schedule": {"max_iter": max_iter, "ims_per_batch": 16, "base_lr": 0.02}, "paper_protocol": not notes}
    extra = {"deviations_from_protocol": notes, "paper_protocol": not notes} if record_deviations else {}
    return task_entry(status="ok", metrics={"AP": ap50 - 25, "AP50": ap50, "AP75": ap50 - 20}, protocol_name=f"det_voc07_12_{engine}",
                      protocol_params=params, dataset=dataset("voc2007", {"train": "5" * 64, "test": "6" * 64}),
                      engine=engine, seed=0, seconds=3600.0, extra=extra)


def results(name: str, tasks: dict, *, created: str = "2026-01-01T00:00:00+00:00", suite: str = "all",
            protocol: str = "paper", method: str | None = None) -> dict:
    r = new_results(ckpt(name, method), suite=suite, protocol=protocol)
    r["created"] = created
    r["tasks"].update(tasks)
    return r


def write(path: Path, doc: dict) -> Path:
    write_results(path, doc)
    return path


def table_for(tmp_path: Path, docs: list[dict], published: bool = False):
    paths = [write(tmp_path / f"r{i}.json", d) for i, d in enumerate(docs)]
    return build_table(load_runs(paths), published=published)


def cell(table, row: int, key: str):
    return table.rows[row].cells[key]


def note_texts(table, c) -> list[str]:
    return [table.footnotes[n - 1] for n in c.notes]


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------- published


def test_published_tables_are_the_papers():
    assert [t.number for t in TABLES] == [1, 2, 5]
    assert [len(t.rows) for t in TABLES] == [14, 10, 7]
    for t in TABLES:
        assert all(len(values) == len(t.columns) for _, values in t.rows)
    # spot checks against the paper text, one per column family
    assert published_value("VICReg (ours)", "imagenet_linear", "top1") == 73.2
    assert published_value("VICReg", "imagenet_linear", "top5") == 91.1
    assert published_value("VICReg", "imagenet_semisup_1pct", "top1") == 54.8
    assert published_value("VICReg", "imagenet_semisup_10pct", "top1") == 69.5
    assert published_value("VICReg", "imagenet_semisup_1pct", "top5") == 79.4
    assert published_value("VICReg", "imagenet_semisup_10pct", "top5") == 89.5
    assert published_value("VICReg", "places205_linear", "top1") == 54.3
    assert published_value("VICReg", "voc07_svm", "mAP") == 86.6
    assert published_value("VICReg", "inat18_linear", "top1") == 47.0
    assert published_value("VICReg", "voc07_det", "AP50") == 82.4
    assert published_value("VICReg", "coco_det", "bbox_AP") == 39.4
    assert published_value("VICReg", "coco_det", "segm_AP") == 36.4
    assert published_value("VICReg", "imagenet_knn", "k20_top1") == 64.5
    assert published_value("VICReg", "imagenet_knn", "k200_top1") == 62.8
    assert published_value("PIRL [33]", "imagenet_semisup_10pct", "top5") == 83.8
    assert published_value("PIRL", "imagenet_semisup_1pct", "top1") is None  # "-" in the paper
    assert published_value("Supervised", "voc07_det", "AP50") == 81.3
    assert published_value("NPID", "imagenet_knn", "k20_top1") is None
    assert published_value("LA [51]", "imagenet_knn", "k200_top1") == 49.4
    # the paper's Barlow Twins [21] (Table 2) and [49] (Tables 1, 5) are one row
    assert normalise_method("Barlow Twins [21]") == normalise_method("Barlow Twins [49]") == "Barlow Twins"
    barlow = next(r for r in published_rows() if r.method == "Barlow Twins")
    assert barlow.tables == [1, 2, 5] and barlow.method_id == "barlowtwins"
    assert barlow.values[("coco_det", "bbox_AP")].note  # the paper's dagger
    names = [r.method for r in published_rows()]
    assert "SwAV" in names and "SwAV (w/ multi-crop)" in names and len(names) == len(set(names))


def test_columns_follow_the_paper_layout():
    from vicreg_bench.published import column_keys

    cols = columns()
    keys = [c.key for c in cols]
    assert [c.table for c in cols] == sorted(c.table for c in cols)
    claimed = column_keys()
    for t in TABLES:
        assert all((t.number, name) in claimed for name in t.columns), f"Table {t.number}: a column no task claims"
        mapped = ["{}.{}".format(*claimed[(t.number, name)]) for name in t.columns]
        positions = [keys.index(k) for k in mapped]
        assert positions == sorted(positions), f"Table {t.number} columns out of order"
        assert all(cols[p].table == t.number for p in positions)


# ---------------------------------------------------------------------------------------------- marking rules


def test_same_settings_have_no_marks_and_best_is_flagged(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": linear(70.0)}),
                             results("barlow", {"imagenet_linear": linear(71.0)})])
    assert [c.key for c in t.columns] == ["imagenet_linear.top1", "imagenet_linear.top5"]
    a, b = cell(t, 0, "imagenet_linear.top1"), cell(t, 1, "imagenet_linear.top1")
    assert (a.value, b.value) == (70.0, 71.0)
    assert not a.marks and not b.marks and not a.notes
    assert b.best and not a.best
    assert t.marks_used == []


def test_fast_protocol_is_marked_even_alone(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": linear(65.0, name="linear_fast")}, protocol="fast")])
    c = cell(t, 0, "imagenet_linear.top1")
    assert c.marks == ["protocol"] and cell_text(c).startswith("65.0\u2020[")
    assert any("linear_fast" in n and "not the paper's" in n for n in note_texts(t, c))


def test_fast_against_paper_rows_is_marked(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": linear(70.0)}),
                             results("barlow", {"imagenet_linear": linear(66.0, name="linear_fast")}, protocol="fast"),
                             results("moco", {"imagenet_linear": linear(67.0)})])
    assert not cell(t, 0, "imagenet_linear.top1").marks and not cell(t, 2, "imagenet_linear.top1").marks
    marked = cell(t, 1, "imagenet_linear.top1")
    assert marked.marks == ["protocol"]
    texts = " ".join(note_texts(t, marked))
    assert "protocol 'linear_fast' vs 'linear_paper'" in texts  # against the column reference
    assert not marked.best and cell(t, 0, "imagenet_linear.top1").best


def test_scaled_down_epochs_differ_from_the_paper_protocol(tmp_path):
    small = linear(30.0, epochs=2, overrides={"epochs": 2})
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": small}), results("random", {"imagenet_linear": small})])
    for row in (0, 1):
        c = cell(t, row, "imagenet_linear.top1")
        assert c.marks == ["protocol"]
        assert any("scaled with epochs=2" in n for n in note_texts(t, c))
    # a changed setting without an `overrides` record is caught against the paper's settings too
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": linear(30.0, epochs=10)})])
    assert any("epochs = 10 (paper: 100)" in n for n in note_texts(t, cell(t, 0, "imagenet_linear.top1")))


def test_reference_is_the_majority_then_the_first_file(tmp_path):
    # only the precision differs (not a paper setting): purely relative marks
    bf16, fp32 = linear(70.0, precision="bf16"), linear(70.5)
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": bf16}), results("barlow", {"imagenet_linear": fp32}),
                             results("moco", {"imagenet_linear": fp32})])
    assert cell(t, 0, "imagenet_linear.top1").marks == ["protocol"]  # the odd one out, although first
    assert not cell(t, 1, "imagenet_linear.top1").marks
    assert "precision bf16 vs fp32" in " ".join(note_texts(t, cell(t, 0, "imagenet_linear.top1")))
    # a tie: the first file given defines the reference
    t = table_for(tmp_path, [results("vicreg", {"imagenet_linear": bf16}), results("barlow", {"imagenet_linear": fp32})])
    assert not cell(t, 0, "imagenet_linear.top1").marks and cell(t, 1, "imagenet_linear.top1").marks == ["protocol"]
    assert "precision" not in json.dumps(t.references) and "linear_paper" in t.references["imagenet_linear"]


def test_detection_engine_is_marked(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"voc07_det": det(82.0)}), results("barlow", {"voc07_det": det(60.0, "torchvision")}),
                             results("moco", {"voc07_det": det(81.0)})])
    c = cell(t, 1, "voc07_det.AP50")
    assert c.marks == ["engine"], "engine differences are not also counted as protocol differences"
    assert "engine torchvision vs the column's detectron2" in " ".join(note_texts(t, c))
    assert "det_voc07_12_torchvision" in " ".join(note_texts(t, c))
    assert not cell(t, 0, "voc07_det.AP50").marks
    assert [col.key for col in t.columns] == ["voc07_det.AP50", "voc07_det.AP", "voc07_det.AP75"]
    # all rows torchvision: no relative difference, but still not the paper's engine
    t = table_for(tmp_path, [results("vicreg", {"voc07_det": det(50.0, "torchvision")})])
    c = cell(t, 0, "voc07_det.AP")
    assert c.marks == ["engine"] and "not detectron2" in " ".join(note_texts(t, c))


def test_detection_deviations_recorded_by_the_task(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"voc07_det": det(40.0, "torchvision", max_iter=300)})])
    c = cell(t, 0, "voc07_det.AP50")
    assert c.marks == ["engine", "protocol"]
    assert "schedule scaled to 300 iterations (not the protocol)" in " ".join(note_texts(t, c))
    # without the task's own record, the paper's settings are checked (max_iter under schedule)
    t = table_for(tmp_path, [results("vicreg", {"voc07_det": det(40.0, max_iter=1000, record_deviations=False)})])
    assert "schedule.max_iter = 1000 (paper: 24000)" in " ".join(note_texts(t, cell(t, 0, "voc07_det.AP50")))
    # a resnet18 next to a resnet50 is not a protocol difference (the arch is in the row)
    r18 = det(60.0)
    r18["protocol"]["params"]["arch"] = "resnet18"
    t = table_for(tmp_path, [results("vicreg", {"voc07_det": det(80.0)}), results("random", {"voc07_det": r18})])
    assert not cell(t, 1, "voc07_det.AP50").marks


def test_dataset_manifest_is_marked(tmp_path):
    other = {"train": "1" * 64, "val": "9" * 64}
    t = table_for(tmp_path, [results("vicreg", {"imagenet_knn": knn(60.0, 58.0)}),
                             results("barlow", {"imagenet_knn": knn(61.0, 59.0)}),
                             results("moco", {"imagenet_knn": task_entry(**{**_knn_kwargs(), "dataset": dataset(manifest=other, n=500)})})])
    c = cell(t, 2, "imagenet_knn.k20_top1")
    assert c.marks == ["dataset"]
    text = " ".join(note_texts(t, c))
    assert "val: sha256 999999999999 vs 222222222222, 500 vs 1000 images" in text
    assert "train" not in text.split("reference:")[1]  # only the split that differs is named
    assert not cell(t, 0, "imagenet_knn.k20_top1").marks


def _knn_kwargs() -> dict:
    e = knn(62.0, 60.0)
    return {"status": "ok", "metrics": e["metrics"], "protocol_name": e["protocol"]["name"],
            "protocol_params": e["protocol"]["params"], "seed": 0, "seconds": 1.0}


def test_image_variant_is_marked_not_protocol(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"voc07_svm": svm(80.0, "squash", ("center_crop",))}),
                             results("barlow", {"voc07_svm": svm(81.0, "squash")}),
                             results("moco", {"voc07_svm": svm(82.0, "center_crop")})])
    assert not cell(t, 0, "voc07_svm.mAP").marks  # the extra variant it also ran does not matter
    assert not cell(t, 1, "voc07_svm.mAP").marks
    c = cell(t, 2, "voc07_svm.mAP")
    assert c.marks == ["variant"]
    assert "image variant center_crop vs the column's squash" in " ".join(note_texts(t, c))
    assert cell_text(c) .startswith("82.0\u00b6[")


def test_failed_skipped_missing_are_explicit_empty_cells(tmp_path):
    t = table_for(tmp_path, [
        results("vicreg", {"imagenet_linear": linear(70.0),
                           "voc07_svm": task_entry(status="failed", reason="RuntimeError: liblinear crashed", protocol_name="svm_vissl")}),
        results("barlow", {"voc07_svm": svm(80.0),
                           "imagenet_linear": task_entry(status="skipped", reason="imagenet missing under /data", protocol_name="linear_paper")},
                suite="table2"),
    ])
    failed, skipped, missing = cell(t, 0, "voc07_svm.mAP"), cell(t, 1, "imagenet_linear.top1"), cell(t, 1, "imagenet_linear.top5")
    assert failed.value is None and failed.state == "failed"
    assert note_texts(t, failed) == ["voc07_svm failed: RuntimeError: liblinear crashed"]
    assert skipped.state == "skipped" and "imagenet missing under /data" in note_texts(t, skipped)[0]
    assert missing.state == "skipped"
    assert cell_text(failed).startswith("\u2014[")
    t2 = table_for(tmp_path, [results("vicreg", {"imagenet_linear": linear(70.0)}), results("barlow", {"voc07_svm": svm(80.0)}, suite="table2")])
    m = cell(t2, 1, "imagenet_linear.top1")
    assert m.state == "missing" and "not run" in note_texts(t2, m)[0] and "suite table2" in note_texts(t2, m)[0]
    # a footnote shared by several cells is listed once
    assert len(t2.footnotes) == len(set(t2.footnotes))
    text = render_text(t2)
    for i, note in enumerate(t2.footnotes, 1):
        assert f"[{i}] {note}" in text


def test_published_rows(tmp_path):
    t = table_for(tmp_path, [results("vicreg", {"imagenet_knn": knn(60.0, 58.0), "imagenet_linear": linear(70.0)})], published=True)
    assert [c.key for c in t.columns] == ["imagenet_linear.top1", "imagenet_linear.top5", "imagenet_knn.k20_top1", "imagenet_knn.k200_top1"]
    assert [c.key for c in build_table([], published=True).columns] == [c.key for c in columns()]  # the paper's full layout
    pub = [r for r in t.rows if r.published]
    assert len(pub) == len(published_rows(["vicreg"])) and not t.rows[0].published
    vic = next(r for r in pub if r.method == "VICReg")
    assert vic.cells["imagenet_linear.top1"].value == 73.2 and vic.cells["imagenet_knn.k200_top1"].value == 62.8
    npid = next(r for r in pub if r.method == "NPID")
    assert npid.cells["imagenet_knn.k20_top1"].state == "not_published" and cell_text(npid.cells["imagenet_knn.k20_top1"]) == ""
    full = build_table([], published=True)
    byol = next(r for r in full.rows if r.method == "BYOL")
    assert "VICReg authors" in " ".join(note_texts(full, byol.cells["coco_det.bbox_AP"]))
    byol = next(r for r in pub if r.method == "BYOL")
    # the best unmarked 20-NN value over everything is BYOL's published 66.7
    assert byol.cells["imagenet_knn.k20_top1"].best
    md = render_markdown(t)
    assert "*VICReg* (published)" in md and "**66.7" in md


# ---------------------------------------------------------------------------------------------- loading


def test_directory_picks_the_newest_result_per_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    write(runs / "old" / "results.json", results("vicreg", {"imagenet_linear": linear(60.0), "imagenet_knn": knn(50.0, 48.0)},
                                                 created="2026-01-01T10:00:00+00:00"))
    write(runs / "new" / "results.json", results("vicreg", {"imagenet_linear": linear(72.0)}, created="2026-01-02T10:00:00+00:00"))
    write(runs / "z_other" / "results.json", results("barlow", {"imagenet_linear": linear(71.0)}))
    (runs / "new" / "train_config.json").write_text(json.dumps({"lr": 0.3}))  # not a results file: passed over
    (runs / "new" / "log.jsonl").write_text("{}\n")
    loaded = load_runs([runs])
    assert [r["checkpoint"]["sha256"] for r in loaded] == [SHA["vicreg"], SHA["barlow"]]
    vic = loaded[0]
    assert vic["tasks"]["imagenet_linear"]["metrics"]["top1"] == 72.0  # the newest wins
    assert vic["tasks"]["imagenet_knn"]["metrics"]["k20_top1"] == 50.0  # a task only the older run has is kept
    assert vic["tasks"]["imagenet_knn"]["_file"].endswith(os.path.join("old", "results.json"))
    assert len(vic["_files"]) == 2
    # the same file given twice (directly and through its folder) counts once
    assert len(load_runs([runs, runs / "new" / "results.json"])) == 2
    # --keep-all: a row per file, named apart
    t = build_table(load_runs([runs], merge=False))
    assert len(t.rows) == 3
    assert t.rows[0].checkpoint != t.rows[1].checkpoint and SHA["vicreg"][:8] in t.rows[0].checkpoint


def test_big_json_files_in_folders_are_sniffed(tmp_path, monkeypatch):
    import vicreg_bench.compare.runs as compare_runs

    monkeypatch.setattr(compare_runs, "_SNIFF_ABOVE", 200)  # bytes, instead of 8 MB
    write(tmp_path / "run" / "results.json", results("vicreg", {"imagenet_linear": linear(70.0)}))
    detections = [{"image_id": i, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5} for i in range(50)]
    (tmp_path / "run" / "coco_instances_results.json").write_text(json.dumps(detections))
    (run,) = load_runs([tmp_path])
    assert run["tasks"]["imagenet_linear"]["metrics"]["top1"] == 70.0


def test_newest_by_created_not_by_name(tmp_path):
    write(tmp_path / "a.json", results("vicreg", {"imagenet_linear": linear(75.0)}, created="2026-03-01T00:00:00+00:00"))
    write(tmp_path / "b.json", results("vicreg", {"imagenet_linear": linear(74.0)}, created="2026-02-01T00:00:00+00:00"))
    (run,) = load_runs([tmp_path])
    assert run["tasks"]["imagenet_linear"]["metrics"]["top1"] == 75.0


# ---------------------------------------------------------------------------------------------- formats and CLI


@pytest.fixture()
def three_files(tmp_path):
    docs = [
        results("vicreg", {"imagenet_linear": linear(73.0), "imagenet_knn": knn(64.0, 62.0, k10=63.0, k100=63.5), "voc07_svm": svm(86.0),
                           "voc07_det": det(82.0)}),
        results("barlow", {"imagenet_linear": linear(68.0, name="linear_fast"), "imagenet_knn": knn(63.0, 61.0),
                           "voc07_svm": svm(85.0, "center_crop"), "voc07_det": det(70.0, "torchvision")}, protocol="fast"),
        results("random", {"imagenet_linear": linear(5.0), "imagenet_knn": knn(2.0, 3.0),
                           "voc07_svm": task_entry(status="skipped", reason="VOC2007 missing", protocol_name="svm_vissl")}),
    ]
    return [write(tmp_path / f"{i}_results.json", d) for i, d in enumerate(docs)]


def test_text_format(three_files, capsys):
    code, out, _ = run_cli(["compare", *map(str, three_files)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].strip().startswith("--") and "Table 1" in lines[0] and "Table 5" in lines[0]
    header = lines[1]
    assert header.split()[:3] == ["backbone", "arch", "checkpoint"] and "Linear top-1" in header and "200-NN" in header
    row = next(line for line in lines if line.startswith("barlow"))
    assert "68.0\u2020[" in row and "70.0\u2021[" in row and "85.0\u00b6[" in row
    assert next(line for line in lines if line.startswith("vicreg")).count("*") >= 1  # best values starred
    for kind, sym in MARKS.items():  # the legend lists the marks in use, and only those
        assert any(line.strip().startswith(sym) for line in lines) == (kind not in ("dataset", "arch")), kind
    assert "VOC07 missing" not in out and "voc07_svm skipped: VOC2007 missing" in out


def test_markdown_format(three_files, tmp_path, capsys):
    out_file = tmp_path / "t.md"
    code, _, err = run_cli(["compare", *map(str, three_files), "-o", str(out_file)], capsys)  # format from extension
    assert code == 0 and "wrote" in err
    md = out_file.read_text()
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + 3
    assert all(line.count("|") == table_lines[0].count("|") for line in table_lines)
    assert "T1 Linear top-1" in table_lines[0] and "\\|" not in table_lines[0]
    assert "**Marks:**" in md and "**Notes:**" in md


def test_csv_format(three_files, capsys):
    code, out, _ = run_cli(["compare", *map(str, three_files), "--format", "csv"], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["method"] for r in rows] == ["vicreg", "barlow", "random"]
    assert float(rows[0]["imagenet_linear.top1"]) == 73.0 and rows[0]["imagenet_linear.top1 notes"] == ""
    assert rows[1]["voc07_det.AP50 notes"].startswith("\u2021 detection engine")
    assert rows[2]["voc07_svm.mAP"] == "" and "VOC2007 missing" in rows[2]["voc07_svm.mAP notes"]
    assert rows[0]["sha256"] == SHA["vicreg"]


def test_html_format_is_self_contained(three_files, tmp_path, capsys):
    out_file = tmp_path / "report.html"
    code, _, _ = run_cli(["compare", *map(str, three_files), "--format", "html", "--published", "-o", str(out_file)], capsys)
    assert code == 0
    html = out_file.read_text()
    assert "<table class=\"cmp\">" in html and html.count('<tr class="run"') == 3 and html.count('<tr class="published"') == len(published_rows(["vicreg"]))
    assert html.count("<img ") >= 5 and "data:image/png;base64," in html
    assert_offline(html)


def assert_offline(html: str) -> None:
    """No reference leaves the page: every src/href is a data: URI or an #anchor, and no URL at all."""
    from vicreg_bench.compare.report import external_references

    assert external_references(html) == []
    text = re.sub(r"data:[a-z/+.-]+;base64,[A-Za-z0-9+/=]+", "", html)
    assert not re.search(r"https?:|ftp:|file:|//[a-z0-9-]+\.|url\(|@import|<link|<iframe|<object|<embed", text, re.I)
    for attr in re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", text, re.I):
        assert attr == "" or attr.startswith("#"), attr


def test_published_alone_and_errors(tmp_path, capsys):
    code, out, _ = run_cli(["compare", "--published", "--format", "csv"], capsys)
    assert code == 0 and len(out.splitlines()) == 1 + len(published_rows(["vicreg"]))

    def error(argv: list[str]) -> str:
        code, _, err = run_cli(argv, capsys)
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return err

    assert "at least one results JSON" in error(["compare"])
    assert "nope.json: no such file or folder" in error(["compare", str(tmp_path / "nope.json")])
    (tmp_path / "junk.json").write_text("{oops")
    assert "junk.json: not valid JSON" in error(["compare", str(tmp_path / "junk.json")])
    bad = results("vicreg", {"imagenet_linear": linear(70.0)})
    bad["tasks"]["imagenet_linear"]["metrics"] = {"top1": 170.0, "top5": 90.0}
    (tmp_path / "d" / "x").mkdir(parents=True)
    (tmp_path / "d" / "x" / "results.json").write_text(json.dumps(bad))
    err = error(["compare", str(tmp_path / "d")])
    assert "results.json: not a valid vicreg-bench results file" in err and "top1" in err
    (tmp_path / "empty").mkdir()
    assert "no vicreg-bench results JSON found" in error(["compare", str(tmp_path / "empty")])
    good = write(tmp_path / "good.json", results("vicreg", {"imagenet_linear": linear(70.0)}))
    assert "--train-log" in error(["compare", str(good), "--train-log", str(good)])
    assert "no such file" in error(["compare", str(good), "--format", "html", "--train-log", str(tmp_path / "missing.jsonl")])
    with pytest.raises(UserError, match="no vicreg-bench results"):
        load_runs([tmp_path / "empty"])


def test_a_vit_among_resnets_is_marked_and_gets_the_vit_papers_rows(tmp_path, capsys):
    """The arch is part of what a cell ran: a ViT's number in a column of ResNet-50s is marked, and
    `--published` alone adds the ViT papers' rows as soon as a run is a ViT."""
    vit = results("moco", {"imagenet_linear": linear(76.0), "imagenet_knn": knn(70.0, 68.0)}, method="dino")
    vit["checkpoint"]["arch"] = "vit_small_patch16_224"
    files = [write(tmp_path / "a.json", results("vicreg", {"imagenet_linear": linear(73.0), "imagenet_knn": knn(60.0, 58.0)})),
             write(tmp_path / "b.json", results("barlow", {"imagenet_linear": linear(72.0), "imagenet_knn": knn(61.0, 59.0)})),
             write(tmp_path / "c.json", vit)]
    t = build_table(load_runs(files))
    assert "arch" in cell(t, 2, "imagenet_linear.top1").marks and not cell(t, 0, "imagenet_linear.top1").marks
    assert any("backbone vit_small_patch16_224 vs the column's resnet50" in n for n in t.footnotes)
    pub = [r for r in build_table(load_runs(files), published=True).rows if r.published]
    assert {r.paper for r in pub} == {"vicreg", "dino", "dinov2", "mae", "moco_v3"}
    dino = next(r for r in pub if r.method == "DINO ViT-S/16")
    assert dino.arch == "vit_small_patch16_224" and dino.source == "DINO paper, Table 2"
    assert dino.cells["imagenet_linear.top1"].value == 77.0 and dino.cells["imagenet_knn.k20_top1"].value == 74.5
    resnets_only = build_table(load_runs(files[:2]), published=True)
    assert {r.paper for r in resnets_only.rows if r.published} == {"vicreg"}
    code, out, _ = run_cli(["compare", str(files[2]), "--published", "dino,mae"], capsys)
    assert code == 0 and "DINO ViT-B/16" in out and "MAE ViT-B/16" in out and "Barlow" not in out
    assert "DINO paper (Mathilde Caron" in out and "ICCV 2021, arXiv:2104.14294): Table 2" in out
    code, _, err = run_cli(["compare", str(files[2]), "--published", "dino,simclrv9"], capsys)
    assert code == 2 and "simclrv9" in err

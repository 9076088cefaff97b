"""`vicreg-bench inspect` and `convert` through the CLI, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from checkpoint_factories import release_files  # noqa: F401  (pytest fixture)
from vicreg_bench.cli import main as cli_main


@pytest.fixture(scope="module")
def moco_path(release_files) -> Path:
    return release_files["moco_v2"]


def test_inspect_text_groups_keys(moco_path: Path, capsys) -> None:
    assert cli_main(["inspect", str(moco_path)]) == 0
    out = capsys.readouterr().out
    for needle in ("format      moco", "method      moco_v2", "arch        resnet18 (res5avg feature dim 512)",
                   "parameters  11,176,512", "sha256", "--key encoder_q", "kept (torchvision names):",
                   "stem (conv1, bn1)", "layer4"):
        assert needle in out, needle
    dropped = out.split("dropped (")[1]
    lines = {line.split()[0]: int(line.split()[-1]) for line in dropped.splitlines()[1:] if line.startswith("  ") and not line.startswith("  -")}
    assert lines["state_dict/module.encoder_k.*"] == 124  # whole momentum encoder incl. its fc head, one group
    assert lines["state_dict/module.encoder_q.fc.*"] == 4
    assert lines["state_dict/module.queue"] == 1 and lines["optimizer"] == 1
    assert len(out.splitlines()) < 40  # grouped, not one line per key


def test_inspect_json(moco_path: Path, capsys) -> None:
    assert cli_main(["inspect", str(moco_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["format"], d["method"], d["arch"], d["num_params"], d["feature_dim"]) == ("moco", "moco_v2", "resnet18", 11_176_512, 512)
    assert d["normalize_input"] is True and len(d["sha256"]) == 64
    assert {"group": "state_dict/module.queue", "keys": 1} in d["dropped_groups"]
    assert sum(g["tensors"] for g in d["kept_groups"]) == 120  # resnet18: 6 stem + 8 blocks x 12 + 3 downsamples x 6


def test_inspect_key_and_method_flags(release_files, capsys) -> None:
    path = release_files["dino_full"]
    assert cli_main(["inspect", str(path), "--key", "student", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["key"] == "student" and d["source"] == "student/module.backbone."
    flat = release_files["vicreg_resnet50.pth"]
    assert cli_main(["inspect", str(flat), "--method", "vicreg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "vicreg"
    assert cli_main(["inspect", str(flat), "--method", "nonsense"]) == 2
    assert "not a known method" in capsys.readouterr().err


def test_inspect_help_lists_layouts(capsys) -> None:
    with pytest.raises(SystemExit):
        cli_main(["inspect", "--help"])
    out = capsys.readouterr().out
    assert "dino_full" in out and "detectron2" in out and "vissl" in out


def test_convert_requires_target_and_output(moco_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["convert", str(moco_path), "--to", "onnx", "-o", "x"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        cli_main(["convert", str(moco_path), "--to", "vissl"])


def test_convert_torchvision_summary(moco_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "moco_r18.pth"
    assert cli_main(["convert", str(moco_path), "--to", "torchvision", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "moco checkpoint, method moco_v2, resnet18" in text and f"wrote {out}" in text
    assert cli_main(["inspect", str(out)]) == 0
    assert "format      vicreg_bench" in capsys.readouterr().out

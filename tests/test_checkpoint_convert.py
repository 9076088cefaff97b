"""Conversions: exact renaming, formats the target tools read, bit-exact round trips, no overwrite."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import checkpoint_factories as F
from checkpoint_factories import release_files  # noqa: F401  (pytest fixture)
from vicreg_bench.checkpoints import load_backbone
from vicreg_bench.checkpoints.convert import (
    detectron2_commands,
    detectron2_to_torchvision,
    save_detectron2_pkl,
    save_torchvision,
    save_vissl,
    torchvision_to_detectron2,
    vissl_commands,
)
from vicreg_bench.checkpoints.names import detectron2_to_torchvision_name, torchvision_to_detectron2_name
from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError
from vicreg_bench.models import ARCHS, build_resnet

# PROTOCOLS.md renaming, spelled out for a few representative keys (independent of the implementation).
D2_EXPECTED = {
    "conv1.weight": "stem.conv1.weight",
    "bn1.running_var": "stem.conv1.norm.running_var",
    "bn1.num_batches_tracked": "stem.conv1.norm.num_batches_tracked",
    "layer1.0.conv1.weight": "res2.0.conv1.weight",
    "layer1.0.bn3.bias": "res2.0.conv3.norm.bias",
    "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
    "layer1.0.downsample.1.running_mean": "res2.0.shortcut.norm.running_mean",
    "layer3.5.bn2.weight": "res4.5.conv2.norm.weight",
    "layer4.2.conv3.weight": "res5.2.conv3.weight",
}


def test_detectron2_names_follow_protocols() -> None:
    for tv, d2 in D2_EXPECTED.items():
        assert torchvision_to_detectron2_name(tv) == d2
        assert detectron2_to_torchvision_name(d2) == tv
    assert torchvision_to_detectron2_name("fc.weight") is None
    assert detectron2_to_torchvision_name("stem.fc.0.weight") is None


@pytest.mark.parametrize("arch", list(ARCHS))
def test_detectron2_renaming_is_a_bijection_on_every_arch(arch: str) -> None:
    with torch.device("meta"):
        names = list(build_resnet(arch).state_dict())
    d2 = [torchvision_to_detectron2_name(n) for n in names]
    assert None not in d2 and len(set(d2)) == len(names)
    assert [detectron2_to_torchvision_name(n) for n in d2] == names


def test_detectron2_matches_moco_converter_output() -> None:
    """Our renaming equals MoCo's convert-pretrain-to-detectron2.py on every trunk key (fc aside)."""
    moco = F.moco_v2()
    theirs = F.detectron2_from_moco(moco)["model"]
    ours = torchvision_to_detectron2(F.trunk())
    assert set(ours) == {k for k in theirs if not k.startswith("stem.fc.")}
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


def test_detectron2_file_is_what_detectron2_reads(tmp_path: Path) -> None:
    sd = F.trunk(with_fc=True)
    out = save_detectron2_pkl(sd, tmp_path / "model.pkl")
    with open(out, "rb") as f:  # exactly detectron2's DetectionCheckpointer._load_file
        data = pickle.load(f, encoding="latin1")
    assert "model" in data and "__author__" in data and data["matching_heuristics"] is True
    assert data["__author__"] != "Caffe2"  # would switch detectron2 to Caffe2 name conversion
    model = data["model"]
    assert all(isinstance(v, np.ndarray) for v in model.values())
    assert not any("fc" in k for k in model)
    assert model["stem.conv1.weight"].dtype == np.float32
    assert np.array_equal(model["res5.1.conv2.weight"], sd["layer4.1.conv2.weight"].numpy())
    assert b"numpy.core.multiarray" in out.read_bytes()  # loadable by numpy 1.x and 2.x alike


def _assert_identical(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("target", ["vissl", "detectron2", "torchvision", "safetensors"])
def test_round_trip_is_bit_exact(release_files, tmp_path: Path, target: str) -> None:
    src = release_files["vicreg_full"]
    original, info = load_backbone(src)
    out = {"vissl": tmp_path / "m.torch", "detectron2": tmp_path / "m.pkl", "torchvision": tmp_path / "m.pth",
           "safetensors": tmp_path / "m.safetensors"}[target]
    assert cli_main(["convert", str(src), "--to", "torchvision" if target == "safetensors" else target, "-o", str(out)]) == 0
    back, info_back = load_backbone(out)
    _assert_identical(original, back)
    assert info_back.method == "vicreg" and info_back.arch == info.arch  # the export remembers its source
    again = tmp_path / "again.pth"
    assert cli_main(["convert", str(out), "--to", "torchvision", "-o", str(again)]) == 0
    _assert_identical(original, load_backbone(again)[0])


def test_detectron2_to_torchvision_accepts_numpy_and_drops_heads() -> None:
    d2 = F.detectron2_from_moco(F.moco_v2())["model"]
    tv = detectron2_to_torchvision(d2)
    assert not any(k.startswith("fc") for k in tv)
    _assert_identical({k: tv[k] for k in F.trunk()}, F.trunk())


def test_vissl_file_layout_and_what_vissl_loader_does(tmp_path: Path) -> None:
    sd = F.trunk()
    out = save_vissl(sd, tmp_path / "model.torch")
    ck = torch.load(out, map_location="cpu", weights_only=True)
    assert {"classy_state_dict", "phase_idx", "iteration", "train_phase_idx", "loss", "type"} <= set(ck)
    model = ck["classy_state_dict"]["base_model"]["model"]
    assert set(model) == {"trunk", "heads"} and model["heads"] == {}
    assert all(k.startswith("_feature_blocks.") for k in model["trunk"])
    # VISSL (checkpoint.get_checkpoint_model_state_dict) prefixes "trunk.base_model." for feature
    # evaluation; its ResNeXt trunk registers conv1, bn1, layer1..4 under _feature_blocks.
    vissl_names = {"trunk.base_model." + k for k in model["trunk"]}
    expected = {"trunk.base_model._feature_blocks." + k for k in build_resnet("resnet18").state_dict()}
    assert vissl_names == expected


def test_torchvision_export_is_a_plain_state_dict(tmp_path: Path) -> None:
    out = save_torchvision(F.trunk(with_fc=True), tmp_path / "r18.pth", metadata={"method": "dino"})
    sd = torch.load(out, map_location="cpu", weights_only=True)
    build_resnet("resnet18").load_state_dict(sd, strict=True)  # the metadata rides in _metadata, ignored here
    _, info = load_backbone(out)
    assert (info.format, info.method) == ("vicreg_bench", "dino")


def test_never_overwrites_without_force_and_writes_atomically(tmp_path: Path, capsys) -> None:
    src = tmp_path / "resnet50.pth"
    torch.save(F.trunk(), src)
    out = tmp_path / "out.pkl"
    out.write_bytes(b"precious")
    assert cli_main(["convert", str(src), "--to", "detectron2", "-o", str(out)]) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    with pytest.raises(UserError, match="already exists"):
        save_vissl(F.trunk(), out)
    assert cli_main(["convert", str(src), "--to", "detectron2", "-o", str(out), "--force"]) == 0
    assert out.read_bytes() != b"precious"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # no temporary file left behind
    assert cli_main(["convert", str(src), "--to", "torchvision", "-o", str(src), "--force"]) == 2
    assert "names the input file" in capsys.readouterr().err


def test_writers_refuse_what_is_not_a_backbone(tmp_path: Path) -> None:
    sd = F.trunk()
    del sd["layer4.1.bn2.weight"]
    with pytest.raises(UserError, match="missing 1 backbone keys"):
        save_detectron2_pkl(sd, tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()


def test_convert_prints_detectron2_commands(release_files, tmp_path: Path, capsys) -> None:
    src = release_files["dino_full"]
    out = tmp_path / "dino.pkl"
    assert cli_main(["convert", str(src), "--to", "detectron2", "-o", str(out), "--key", "student"]) == 0
    text = capsys.readouterr().out
    assert f"python -m vicreg_bench.detection.d2_train_net --config-file configs/detectron2/voc07_12_faster_rcnn_R50_C4.yaml --num-gpus 8 MODEL.WEIGHTS {out}" in text
    assert "configs/detectron2/coco_mask_rcnn_R50_FPN_1x.yaml" in text
    _, info = load_backbone(out)
    assert info.method == "dino"


def test_convert_prints_vissl_commands(release_files, tmp_path: Path, capsys) -> None:
    src = release_files["vicreg_full"]
    out = tmp_path / "vicreg.torch"
    assert cli_main(["convert", str(src), "--to", "vissl", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tools/train_svm.py config=benchmark/linear_image_classification/voc07/eval_resnet_8gpu_transfer_voc07_svm" in text
    assert "tools/run_distributed_engines.py config=benchmark/linear_image_classification/imagenet1k/eval_resnet_8gpu_transfer_in1k_linear" in text
    assert f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={out}" in text
    assert "config.MODEL.WEIGHTS_INIT.STATE_DICT_KEY_NAME=classy_state_dict" in text


def test_commands_for_other_architectures_and_simclr() -> None:
    cmds, _ = vissl_commands("w.torch", "resnet50x2")
    assert all("models=resnet50_w2" in c for c in cmds)
    cmds, _ = vissl_commands("w.torch", "resnet101")
    assert all("config.MODEL.TRUNK.RESNETS.DEPTH=101" in c for c in cmds)
    cmds, notes = detectron2_commands("w.pkl", "resnet50x2", normalize_input=False)
    assert all("MODEL.RESNETS.STEM_OUT_CHANNELS 128" in c and "MODEL.RESNETS.WIDTH_PER_GROUP 128" in c for c in cmds)
    assert all("MODEL.PIXEL_STD '[255.0,255.0,255.0]'" in c for c in cmds) and notes
    cmds, _ = detectron2_commands("w.pkl", "resnet50")
    assert not any(re.search(r"RESNETS|PIXEL", c) for c in cmds)


def test_simclr_conversion_keeps_the_no_normalisation_flag(release_files, tmp_path: Path, capsys) -> None:
    src = release_files["simclr"]
    for target, name in (("torchvision", "s.safetensors"), ("detectron2", "s.pkl"), ("vissl", "s.torch")):
        assert cli_main(["convert", str(src), "--to", target, "-o", str(tmp_path / name)]) == 0
        _, info = load_backbone(tmp_path / name)
        assert (info.method, info.normalize_input) == ("simclr", False)
    header = json.loads((tmp_path / "s.safetensors").read_bytes()[8:8 + int.from_bytes((tmp_path / "s.safetensors").read_bytes()[:8], "little")])
    assert json.loads(header["__metadata__"]["__vicreg_bench__"])["normalize_input"] is False
    assert "without mean/std normalisation" in capsys.readouterr().out



def test_the_same_weights_written_twice_have_the_same_sha256(tmp_path: Path) -> None:
    """Saving through a file handle keeps torch's inner zip folder fixed: a file's sha256 (which keys the
    feature cache) depends on its content only, not on the temporary name it was written under."""
    import torch

    from vicreg_bench.fileio import atomic_torch_save, sha256_file

    state = {"w": torch.arange(6.0).reshape(2, 3)}
    atomic_torch_save(state, tmp_path / "a.pth")
    atomic_torch_save(state, tmp_path / "b.pth")
    assert sha256_file(tmp_path / "a.pth") == sha256_file(tmp_path / "b.pth")
    assert torch.equal(torch.load(tmp_path / "a.pth", weights_only=True)["w"], state["w"])

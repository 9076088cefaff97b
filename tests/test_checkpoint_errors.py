"""Bad input gets one clear line naming the file and what was expected, never a traceback."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

import checkpoint_factories as F
from checkpoint_factories import release_files  # noqa: F401  (pytest fixture)
from vicreg_bench.checkpoints import load_backbone
from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError


def error_of(path: Path, **kw) -> str:
    with pytest.raises(UserError) as err:
        load_backbone(path, **kw)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in error_of(tmp_path / "nope.pth")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in error_of(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.touch()
    assert "empty file" in error_of(path)


@pytest.fixture(scope="module")
def small_checkpoint_bytes(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("small")
    out = {}
    torch.save(F.trunk(), d / "zip.pth")
    torch.save(F.trunk(), d / "legacy.pth", _use_new_zipfile_serialization=False)
    F.write_pickle({k: v.numpy() for k, v in F.trunk().items()}, d / "plain.pkl")
    for name in ("zip.pth", "legacy.pth", "plain.pkl"):
        out[name] = (d / name).read_bytes()
    return out


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pth", "plain.pkl"])
@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_truncated_files(tmp_path: Path, small_checkpoint_bytes, name: str, fraction: float) -> None:
    data = small_checkpoint_bytes[name]
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated or corrupt" in error_of(path)


def test_truncated_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"conv1.weight": torch.randn(64, 3, 7, 7)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "safetensors" in error_of(path)


@pytest.mark.parametrize("content,expected", [
    (b"<!DOCTYPE html><html><head><title>404 Not Found</title>", "HTML page"),
    (b"just some notes about my model\n", "text file"),
    (bytes(range(7, 200)), "not a checkpoint"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'", "numpy"),
])
def test_not_a_checkpoint(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    msg = error_of(path)
    assert "not a checkpoint" in msg and expected in msg


def test_zip_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "weights.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    assert "not a PyTorch checkpoint" in error_of(path)


def test_unknown_layout_lists_keys_and_suggests_method(tmp_path: Path) -> None:
    path = tmp_path / "vit.pth"
    torch.save({"model": {"pos_embed": torch.zeros(1, 197, 8), "patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)},
                "epoch": 3}, path)
    msg = error_of(path)
    assert "unknown layout" in msg and "Top-level keys: model, epoch" in msg
    assert "model/pos_embed (1, 197, 8)" in msg and "--method" in msg


def test_pickled_whole_model_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), path)
    assert "whole pickled object of class torch.nn.modules.linear.Linear" in error_of(path)


def test_ambiguous_vicreg_or_barlow(tmp_path: Path) -> None:
    ck = F.vicreg_full()
    ck["model"] = OrderedDict((k, v) for k, v in ck["model"].items() if not k.startswith("module.projector.0."))
    path = F.save_with_main_functions(ck, tmp_path / "model.pth")
    msg = error_of(path)
    assert "ambiguous layout" in msg and "--method vicreg or --method barlowtwins" in msg
    _, info = load_backbone(path, method="barlowtwins")
    assert info.format == "barlowtwins_full"


def test_ambiguous_two_unknown_trunks(tmp_path: Path) -> None:
    obj = {"a": F._prefixed(F.trunk(), "net."), "b": F._prefixed(F.trunk(seed=1), "net.")}
    path = tmp_path / "two.pth"
    torch.save(obj, path)
    msg = error_of(path)
    assert "ambiguous layout" in msg and "a/net." in msg and "b/net." in msg and "--key" in msg
    sd, info = load_backbone(path, key="b/net.")
    assert torch.equal(sd["conv1.weight"], F.trunk(seed=1)["conv1.weight"])


def test_missing_backbone_keys_are_listed(tmp_path: Path) -> None:
    sd = F.trunk()
    for k in ("layer2.0.bn1.running_var", "layer4.1.conv2.weight"):
        del sd[k]
    path = tmp_path / "cut.pth"
    torch.save(sd, path)
    msg = error_of(path)
    assert "missing 2 backbone keys of resnet18" in msg
    assert "layer2.0.bn1.running_var" in msg and "layer4.1.conv2.weight" in msg


def test_missing_whole_block_names_the_absent_keys(tmp_path: Path) -> None:
    sd = OrderedDict((k, v) for k, v in F.trunk().items() if not k.startswith("layer3.1."))
    path = tmp_path / "cut.pth"
    torch.save(sd, path)
    assert "missing" in error_of(path) and "layer3.1.conv1.weight" in error_of(path)


def test_wrong_shapes_are_listed(tmp_path: Path) -> None:
    sd = F.trunk()
    sd["layer1.0.conv2.weight"] = torch.randn(64, 64, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    msg = error_of(path)
    assert "wrong shape" in msg and "layer1.0.conv2.weight (64, 64, 1, 1) (expected (64, 64, 3, 3))" in msg


def test_unexpected_trunk_keys_are_listed(tmp_path: Path) -> None:
    sd = F.trunk()
    sd["layer1.0.conv9.weight"] = torch.randn(1)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    assert "does not have: layer1.0.conv9.weight" in error_of(path)


@pytest.mark.parametrize("mutate,expected", [
    (lambda sd: sd.update({"conv1.weight": torch.randn(64, 3, 3, 3)}), "CIFAR-style"),
    (lambda sd: sd.update({"conv1.weight": torch.randn(96, 3, 7, 7)}), "stem width 96"),
])
def test_unsupported_architectures(tmp_path: Path, mutate, expected: str) -> None:
    sd = F.trunk()
    mutate(sd)
    path = tmp_path / "arch.pth"
    torch.save(sd, path)
    assert expected in error_of(path)


def test_method_that_does_not_fit(release_files) -> None:
    path = release_files["dino_full"]
    msg = error_of(path, method="moco_v3")
    assert "--method moco_v3 does not fit" in msg and "dino_full" in msg
    assert "not a known method" in error_of(path, method="mocov3")


def test_vicreg_marker_contradicting_method(release_files) -> None:
    assert "--method barlowtwins does not fit" in error_of(release_files["vicreg_full"], method="barlowtwins")


def test_key_that_does_not_fit(release_files) -> None:
    dino = release_files["dino_full"]
    assert "--key encoder_k does not fit" in error_of(dino, key="encoder_k") and "teacher, student" in error_of(dino, key="x")
    flat = release_files["vicreg_resnet50.pth"]
    msg = error_of(flat, key="student")
    assert "single backbone" in msg and "DINO (teacher, student)" in msg


def test_cli_errors_are_one_line_exit_2(tmp_path: Path, capsys) -> None:
    assert cli_main(["inspect", str(tmp_path / "nope.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vicreg-bench inspect: error: ") and err.count("\n") == 1 and "nope.pth" in err
    assert cli_main(["convert", str(tmp_path), "--to", "vissl", "-o", str(tmp_path / "o.torch")]) == 2
    assert "is a directory" in capsys.readouterr().err

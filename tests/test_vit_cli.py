"""ViT checkpoints through `inspect` and `convert`, and a crafted pickle in a ViT layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import timm
import torch

from vicreg_bench.checkpoints import load_backbone
from vicreg_bench.checkpoints.convert import save_timm
from vicreg_bench.cli import main as cli_main
from vicreg_bench.errors import UserError
from vit_checkpoints import dino_full, timm_vit, vit_release_files  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_inspect_json_shows_method_and_arch(vit_release_files, capsys) -> None:
    assert cli_main(["inspect", str(vit_release_files["dinov2_reg4"]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["format"], d["method"], d["arch"], d["feature_dim"]) == (
        "dinov2", "dinov2", "vit_small_patch14_reg4_dinov2:embed_dim=128,depth=2,num_heads=2", 128)
    groups = {g["group"]: g["tensors"] for g in d["kept_groups"]}
    assert groups == {"embeddings (cls_token, reg_token, pos_embed, patch_embed)": 5, "blocks": 28, "norm": 2}
    assert {"group": "mask_token", "keys": 1} in d["dropped_groups"]


def test_inspect_text_for_a_dino_training_checkpoint(vit_release_files, capsys) -> None:
    assert cli_main(["inspect", str(vit_release_files["dino_full"])]) == 0
    out = capsys.readouterr().out
    for needle in ("format      dino_full", "method      dino", "arch        vit_small_patch16_224:embed_dim=128,depth=2,num_heads=2 "
                   "(CLS token feature dim 128)", "kept (timm names):", "teacher/head.*", "student", "--key teacher"):
        assert needle in out, needle


def test_convert_to_timm_loads_into_timm_and_round_trips(vit_release_files, tmp_path: Path, capsys) -> None:
    src = vit_release_files["dinov2_reg4"]
    sd, info = load_backbone(src)
    for out in (tmp_path / "dinov2_reg4_timm.pth", tmp_path / "dinov2_reg4_timm.safetensors"):
        assert cli_main(["convert", str(src), "--to", "timm", "-o", str(out)]) == 0
        assert f"wrote {out}: timm format" in capsys.readouterr().out
        back, back_info = load_backbone(out)
        assert (back_info.format, back_info.method, back_info.arch) == ("vicreg_bench", "dinov2", info.arch)
        assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    plain = torch.load(tmp_path / "dinov2_reg4_timm.pth", weights_only=True)
    model = timm.create_model("vit_small_patch14_reg4_dinov2", num_classes=0, embed_dim=128, depth=2, num_heads=2)
    model.load_state_dict(plain, strict=True)  # a plain timm state dict; our metadata rides in _metadata


@pytest.mark.parametrize("target", ["vissl", "detectron2", "torchvision"])
def test_resnet_only_targets_refuse_a_vit_in_one_line(vit_release_files, tmp_path: Path, capsys, target: str) -> None:
    out = tmp_path / f"x.{target}"
    assert cli_main(["convert", str(vit_release_files["dino_vits16"]), "--to", target, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--to {target} converts ResNet backbones only" in err and "use --to timm" in err
    assert not out.exists()


def test_timm_target_for_a_resnet_writes_its_torchvision_file(tmp_path: Path, resnet18_state, capsys) -> None:
    src = tmp_path / "r18.pth"
    torch.save(resnet18_state, src)
    out = tmp_path / "r18_timm.pth"
    assert cli_main(["convert", str(src), "--to", "timm", "-o", str(out)]) == 0
    assert "timm's resnet* use torchvision's names" in capsys.readouterr().out
    model = timm.create_model("resnet18", num_classes=0)
    model.load_state_dict(torch.load(out, weights_only=True), strict=True)


def test_save_timm_refuses_what_is_not_a_vit(tmp_path: Path) -> None:
    sd = dict(timm_vit("vit_small_patch16_224", 0))
    sd.pop("norm.weight")
    with pytest.raises(UserError, match="not a supported ViT backbone state dict: missing 1 backbone keys"):
        save_timm(sd, tmp_path / "x.pth")


class CreatesFile:
    """Unpickling this runs `touch target` through os.system."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_crafted_pickle_in_a_vit_layout_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    ckpt = dino_full(timm_vit("vit_small_patch16_224", 0), timm_vit("vit_small_patch16_224", 1))
    ckpt["args"] = CreatesFile(target)
    path = tmp_path / "checkpoint.pth"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="refusing to load.*posix.system"):
        load_backbone(path)
    assert not target.exists()

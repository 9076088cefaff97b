"""Every ViT release layout is recognised without being told, loads bit-exactly under timm names, and its
backbone gives the same CLS feature as timm's own model of the release."""

from __future__ import annotations

import pytest
import timm
import torch

from vicreg_bench.checkpoints import METHODS, load_backbone
from vicreg_bench.checkpoints.vit_arch import infer_vit_arch
from vicreg_bench.checkpoints.vit_names import take_vit
from vicreg_bench.errors import UserError
from vicreg_bench.models import build_backbone, feature_dim
from vit_checkpoints import VIT_RELEASES, dinov2_release, timm_vit, vit_release_files  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("name", list(VIT_RELEASES))
def test_layout_detected_and_loaded_bit_exact(vit_release_files, name: str) -> None:
    release = VIT_RELEASES[name]
    sd, info = load_backbone(vit_release_files[name])
    assert (info.format, info.method, info.arch) == (release.format, release.method, release.arch)
    assert info.method in METHODS and info.key == release.key
    expected = release.expected()
    assert list(sd) == list(build_backbone(info.arch).state_dict())  # model order, strict
    assert set(sd) == set(expected)
    for k, v in expected.items():
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], v), k
    assert not any(k.startswith(("head.", "decoder_")) or k in ("mask_token", "masked_embed") for k in sd)
    for key in release.dropped:
        assert key in info.dropped_keys, key
    assert info.num_params == sum(t.numel() for t in sd.values())


def _reference(release, expected: dict) -> torch.nn.Module:
    model = timm.create_model(release.timm_name, pretrained=False, num_classes=0, dynamic_img_size=True, **release.timm_kwargs)
    model.load_state_dict(expected, strict=True)
    return model.eval()


@pytest.mark.parametrize("name", ["dino_vits16", "dino_vits8", "dinov2", "dinov2_reg4", "dinov2_giant", "dinov2_teacher",
                                  "mae_full", "moco_v3"])
def test_cls_feature_equals_timm_forward_features(vit_release_files, name: str) -> None:
    release = VIT_RELEASES[name]
    sd, info = load_backbone(vit_release_files[name])
    ours = build_backbone(info.arch)
    ours.load_state_dict(sd, strict=True)
    ours.eval()
    reference = _reference(release, release.expected())
    patch = reference.patch_embed.patch_size[0]
    for cells in ((2, 2), (3, 3), (2, 4)):
        x = torch.randn(2, 3, cells[0] * patch, cells[1] * patch)
        with torch.no_grad():
            feature = ours(x)
            torch.testing.assert_close(feature, reference.forward_features(x)[:, 0], atol=1e-4, rtol=0)
        assert feature.shape == (2, feature_dim(info.arch))


def test_registers_are_folded_as_timm_folds_them(vit_release_files) -> None:
    layout = VIT_RELEASES["dinov2_reg4"].build()
    sd, info = load_backbone(vit_release_files["dinov2_reg4"])
    assert torch.equal(sd["reg_token"], layout["register_tokens"])
    assert torch.equal(sd["pos_embed"], layout["pos_embed"][:, 1:]) and sd["pos_embed"].shape == (1, 37 * 37, 128)
    assert torch.equal(sd["cls_token"], layout["cls_token"] + layout["pos_embed"][:, :1])
    assert any("register_tokens -> reg_token" in n for n in info.notes)


def test_block_chunks_and_swiglu_are_renamed(vit_release_files) -> None:
    _, teacher = load_backbone(vit_release_files["dinov2_teacher"])
    assert "teacher/backbone.blocks.1.1.mlp.fc1.weight" not in teacher.dropped_keys
    assert any("block-chunked" in n for n in teacher.notes)
    layout = VIT_RELEASES["dinov2_giant"].build()
    assert "blocks.0.mlp.w12.weight" in layout and layout["blocks.0.mlp.w12.weight"].shape == (688, 128)
    sd, giant = load_backbone(vit_release_files["dinov2_giant"])
    assert torch.equal(sd["blocks.1.mlp.fc2.weight"], layout["blocks.1.mlp.w3.weight"])
    assert any("SwiGLU" in n for n in giant.notes)


@pytest.mark.parametrize("name, prefix", [("dino_full", "student/module.backbone."), ("ibot_full", "student/module.backbone.")])
def test_student_branch(vit_release_files, name: str, prefix: str) -> None:
    sd, info = load_backbone(vit_release_files[name], key="student")
    student = timm_vit("vit_small_patch16_224", 1)
    assert info.key == "student" and info.source == prefix
    assert all(torch.equal(sd[k], v) for k, v in student.items())
    if name == "ibot_full":
        assert "student/module.backbone.masked_embed" in info.dropped_keys and "masked_embed" not in sd
    with pytest.raises(UserError, match="--key momentum does not fit"):
        load_backbone(vit_release_files[name], key="momentum")


def test_momentum_encoder_and_method_checks(vit_release_files) -> None:
    sd, info = load_backbone(vit_release_files["moco_v3"], key="momentum_encoder")
    assert info.key == "momentum_encoder" and torch.equal(sd["cls_token"], timm_vit("vit_small_patch16_224", 1)["cls_token"])
    with pytest.raises(UserError, match="--method dino does not fit: the file is a dinov2 checkpoint"):
        load_backbone(vit_release_files["dinov2"], method="dino")
    with pytest.raises(UserError, match="--method ibot does not fit"):
        load_backbone(vit_release_files["dino_full"], method="ibot")
    _, info = load_backbone(vit_release_files["dino_vits16"], method="dino")
    assert info.method == "dino"  # a flat backbone cannot tell its method: --method records it
    with pytest.raises(UserError, match="holds a single backbone"):
        load_backbone(vit_release_files["dinov2"], key="student")


def _save(obj, path):
    torch.save(obj, path)
    return path


def test_moco_v3_vit_small_has_twelve_heads(tmp_path) -> None:
    """MoCo v3's vit_small has 12 heads (timm's 6), which shapes cannot show: the method decides, also for
    the DeiT-style file its convert_to_deit.py writes when --method moco_v3 says so."""
    from vit_checkpoints import moco_v3

    vit = timm_vit("vit_small_patch16_224", 0, embed_dim=384, depth=1, num_heads=12)
    path = _save(moco_v3(vit, timm_vit("vit_small_patch16_224", 1, embed_dim=384, depth=1, num_heads=12)), tmp_path / "m.pth.tar")
    sd, info = load_backbone(path)
    assert info.arch == "vit_small_patch16_224:depth=1,num_heads=12"
    reference = timm.create_model("vit_small_patch16_224", num_classes=0, depth=1, num_heads=12, dynamic_img_size=True).eval()
    reference.load_state_dict(vit)
    ours = build_backbone(info.arch).eval()
    ours.load_state_dict(sd)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference.forward_features(x)[:, 0], atol=1e-4, rtol=0)
    deit = _save({"model": dict(vit)}, tmp_path / "deit.pth")
    assert load_backbone(deit)[1].arch == "vit_small_patch16_224:depth=1"  # read as MAE's layout: 6 heads
    _, info = load_backbone(deit, method="moco_v3")
    assert (info.format, info.method, info.arch) == ("mae_encoder", "moco_v3", "vit_small_patch16_224:depth=1,num_heads=12")


@pytest.mark.parametrize("name, arch", [
    ("vit_small_patch16_224", "vit_small_patch16_224"), ("vit_small_patch8_224", "vit_small_patch8_224"),
    ("vit_base_patch16_224", "vit_base_patch16_224"), ("vit_base_patch8_224", "vit_base_patch8_224"),
    ("vit_large_patch16_224", "vit_large_patch16_224"), ("vit_huge_patch14_224", "vit_huge_patch14_224"),
])
def test_real_size_arch_names(name: str, arch: str) -> None:
    with torch.device("meta"):
        sd = timm.create_model(name, num_classes=0).state_dict()
    assert infer_vit_arch(sd) == arch


@pytest.mark.parametrize("size, registers, arch", [
    ("small", 0, "vit_small_patch14_dinov2"), ("base", 0, "vit_base_patch14_dinov2"),
    ("large", 4, "vit_large_patch14_reg4_dinov2"), ("giant", 0, "vit_giant_patch14_dinov2"),
    ("giant", 4, "vit_giant_patch14_reg4_dinov2"),
])
def test_real_size_dinov2_release_names(size: str, registers: int, arch: str) -> None:
    """Real DINOv2 release shapes (518 px grid, SwiGLU for g), through the same renaming, on the meta device."""
    with torch.device("meta"):
        sd = timm.create_model(f"vit_{size}_patch14_dinov2", num_classes=0).state_dict()
    layout = dinov2_release(sd, registers=registers, swiglu=size == "giant")
    layout = {k: v.to("meta") for k, v in layout.items()}
    backbone, _, _ = take_vit(layout, "", "")
    assert infer_vit_arch(backbone) == arch


@pytest.mark.parametrize("mutate, message", [
    (lambda sd: sd.update({"patch_embed.proj.0.weight": sd.pop("patch_embed.proj.weight")}), "convolutional patch stem"),
    (lambda sd: sd.update({"fc_norm.weight": sd.pop("norm.weight"), "fc_norm.bias": sd.pop("norm.bias")}), "average-pooled"),
    (lambda sd: sd.update({"pos_embed": torch.zeros(1, 190, 128)}), "not a square grid"),
    (lambda sd: sd.pop("blocks.1.attn.qkv.bias"), "missing 1 backbone keys"),
    (lambda sd: sd.update({"blocks.0.attn.qkv.weight": torch.zeros(3, 128)}), "wrong shape"),
])
def test_broken_vits_are_refused_with_one_line(tmp_path, mutate, message: str) -> None:
    sd = dict(timm_vit("vit_small_patch16_224", 0))
    mutate(sd)
    path = _save(sd, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=message) as err:
        load_backbone(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_fsdp_shard_is_refused(tmp_path) -> None:
    path = _save({"model": {"student.backbone._fsdp_wrapped_module.flat_param": torch.zeros(10)}, "iteration": 5}, tmp_path / "model_0012499.rank_0.pth")
    with pytest.raises(UserError, match="teacher_checkpoint.pth"):
        load_backbone(path)


def test_timm_register_weights_are_not_folded_twice(tmp_path) -> None:
    """timm's own vit_*_reg4_dinov2 weights already have the folded layout (reg_token, pos_embed without CLS)."""
    sd = timm_vit("vit_small_patch14_reg4_dinov2", 0)
    loaded, info = load_backbone(_save(dict(sd), tmp_path / "timm_reg4.pth"))
    assert (info.format, info.method, info.arch) == ("timm_vit", "timm", "vit_small_patch14_reg4_dinov2:embed_dim=128,depth=2,num_heads=2")
    assert all(torch.equal(loaded[k], v) for k, v in sd.items())

import pytest
import torch

from vicreg_bench.models import (
    ARCHS,
    build_backbone,
    build_resnet,
    feature_dim,
    format_vit_arch,
    is_vit,
    parse_vit_arch,
    vit_intermediate_features,
    vit_last_blocks,
    vit_layer_id,
)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnet50x2"])
def test_trunk_outputs_res5avg(arch):
    model = build_resnet(arch).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, feature_dim(arch))
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_resnet50x2_doubles_every_width():
    sd = build_resnet("resnet50x2").state_dict()
    assert sd["conv1.weight"].shape == (128, 3, 7, 7)
    assert sd["layer1.0.conv1.weight"].shape == (128, 128, 1, 1)
    assert sd["layer4.2.conv3.weight"].shape == (4096, 1024, 1, 1)
    assert feature_dim("resnet50x2") == 4096


def test_torchvision_names_match_torchvision():
    import torchvision

    ours = set(build_resnet("resnet50").state_dict())
    theirs = {k for k in torchvision.models.resnet50().state_dict() if not k.startswith("fc.")}
    assert ours == theirs
    assert set(ARCHS) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50x2"}


# ------------------------------------------------------------------------------------------ ViTs

TINY_VIT = "vit_small_patch16_224:embed_dim=64,depth=3,num_heads=2"


@pytest.fixture(scope="module")
def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone(TINY_VIT).eval()


@pytest.mark.parametrize("size", [(32, 32), (48, 48), (32, 64)])
def test_vit_backbone_gives_the_normed_cls_token_at_any_multiple_of_the_patch(tiny_vit, size):
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        out = tiny_vit(x)
        expected = tiny_vit.forward_features(x)[:, 0]
    assert out.shape == (2, feature_dim(TINY_VIT)) == (2, 64)
    assert torch.equal(out, expected)


def test_vit_backbone_has_timm_names_and_no_head():
    sd = build_backbone("vit_small_patch16_224").state_dict()
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.11.mlp.fc2.bias", "norm.weight"} <= set(sd)
    assert not any(k.startswith(("head.", "fc_norm.")) for k in sd)
    assert sd["pos_embed"].shape == (1, 197, 384)


@pytest.mark.parametrize("arch, dim", [("vit_small_patch16_224", 384), ("vit_base_patch14_dinov2", 768),
                                       ("vit_giant_patch14_reg4_dinov2", 1536), ("resnet50", 2048)])
def test_feature_dim(arch, dim):
    assert feature_dim(arch) == dim


def test_vit_arch_strings_round_trip_and_reject_bad_overrides():
    name, overrides = parse_vit_arch("vit_small_patch16_224:num_heads=12,img_size=32")
    assert (name, overrides) == ("vit_small_patch16_224", {"num_heads": 12, "img_size": 32})
    assert format_vit_arch(name, overrides) == "vit_small_patch16_224:num_heads=12,img_size=32"
    assert format_vit_arch("vit_giant_patch14_dinov2", {"mlp_ratio": 5.375}) == "vit_giant_patch14_dinov2:mlp_ratio=5.375"
    with pytest.raises(ValueError, match="override 'heads=2'"):
        parse_vit_arch("vit_small_patch16_224:heads=2")
    with pytest.raises(ValueError, match="depth must be an integer"):
        parse_vit_arch("vit_small_patch16_224:depth=two")
    with pytest.raises(ValueError, match="not a timm model name"):
        build_backbone("vit_enormous_patch16_224")
    assert is_vit(TINY_VIT) and not is_vit("resnet50")


def _dino_tokens(model, x, n):
    """The normed tokens after each of the last n blocks, computed block by block (DINO's get_intermediate_layers)."""
    t = model.norm_pre(model._pos_embed(model.patch_embed(x)))
    out = []
    for i, blk in enumerate(model.blocks):
        t = blk(t)
        if i >= len(model.blocks) - n:
            out.append(model.norm(t))
    return out


def test_vit_intermediate_features_follow_dino_eval_linear(tiny_vit):
    x = torch.randn(3, 3, 48, 32)
    with torch.no_grad():
        tokens = _dino_tokens(tiny_vit, x, 3)
        four = vit_intermediate_features(tiny_vit, x, n_last_blocks=3)
        one_avg = vit_intermediate_features(tiny_vit, x, n_last_blocks=1, avgpool_patchtokens=True)
        three_avg = vit_intermediate_features(tiny_vit, x, n_last_blocks=3, avgpool_patchtokens=True)
        blocks = vit_last_blocks(tiny_vit, x, 2)
    cls = [t[:, 0] for t in tokens]
    pooled = tokens[-1][:, 1:].mean(dim=1)
    torch.testing.assert_close(four, torch.cat(cls, dim=-1))
    assert one_avg.shape == (3, 128)  # DINO interleaves per channel for n = 1: cls_0, avg_0, cls_1, avg_1, ...
    torch.testing.assert_close(one_avg[:, 0::2], cls[-1])
    torch.testing.assert_close(one_avg[:, 1::2], pooled)
    torch.testing.assert_close(three_avg, torch.cat(cls + [pooled], dim=-1))  # DINOv2's layout for n > 1
    assert [b[1].shape for b in blocks] == [(3, 6, 64)] * 2  # 3 x 2 patches of 16 px
    torch.testing.assert_close(blocks[-1][0], tiny_vit(x))
    with pytest.raises(ValueError, match="n_last_blocks must be in 1..3"):
        vit_last_blocks(tiny_vit, x, 4)


def test_vit_patch_tokens_leave_registers_out():
    torch.manual_seed(0)
    model = build_backbone("vit_small_patch14_reg4_dinov2:embed_dim=64,depth=2,num_heads=1").eval()
    x = torch.randn(1, 3, 28, 42)
    with torch.no_grad():
        (cls, patches), = vit_last_blocks(model, x, 1)
        full = model.forward_features(x)
    assert model.num_prefix_tokens == 5 and patches.shape == (1, 6, 64)
    torch.testing.assert_close(patches, full[:, 5:])
    torch.testing.assert_close(cls, full[:, 0])


def test_vit_layer_id_follows_mae_layer_decay():
    names = list(build_backbone("vit_small_patch14_reg4_dinov2:embed_dim=64,depth=2,num_heads=1").state_dict())
    ids = {n: vit_layer_id(n, 2) for n in names}
    assert ids["cls_token"] == ids["reg_token"] == ids["pos_embed"] == ids["patch_embed.proj.weight"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.1.ls2.gamma"] == 2
    assert ids["norm.weight"] == 3 and vit_layer_id("head.weight", 2) == 3

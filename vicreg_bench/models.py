"""Backbones: `build_backbone(arch)` is the one place a backbone is built.

- ResNets (`ARCHS`): torchvision ResNets, including VICReg's widened resnet50x2. The trunk's `fc` is an
  Identity: `model(x)` returns the res5avg feature (global average pool after layer4).
- Vision Transformers (`vit_*`): timm `VisionTransformer`s, because the released ViT checkpoints use
  timm's parameter names. `model(x)` returns the CLS token after the final norm, equal to timm's
  `forward_features(x)[:, 0]`, at any image size that is a multiple of the patch (timm's dynamic image
  size), so tiny synthetic images work.

A ViT arch is a timm model name, optionally followed by overrides of that model's defaults for what
shapes alone cannot tell or what differs from timm's definition, e.g.
`vit_small_patch16_224:num_heads=12` (MoCo v3's ViT-S) or
`vit_large_patch14_dinov2:img_size=224` (a DINOv2 training checkpoint's position grid).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


@dataclass(frozen=True)
class ArchSpec:
    block: type
    layers: tuple[int, int, int, int]
    widen: int = 1

    @property
    def feature_dim(self) -> int:
        return 512 * self.block.expansion * self.widen


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ArchSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ArchSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ArchSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ArchSpec(Bottleneck, (3, 8, 36, 3)),
    # VICReg / SwAV "x2": every channel count doubled (stem 128, res5 out 4096),
    # not torchvision's wide_resnet50_2 (which widens only the bottleneck).
    "resnet50x2": ArchSpec(Bottleneck, (3, 4, 6, 3), widen=2),
}

# timm keyword arguments a ViT arch may override, with their types.
VIT_OVERRIDES: dict[str, type] = {
    "embed_dim": int, "depth": int, "num_heads": int, "mlp_ratio": float, "img_size": int, "patch_size": int,
}


class WidenedResNet(ResNet):
    """torchvision's ResNet with all widths multiplied by `widen`; parameter names unchanged."""

    def __init__(self, block: type, layers: list[int], widen: int, **kwargs):
        super().__init__(block, layers, **kwargs)
        width = 64 * widen
        norm = self._norm_layer
        self.inplanes = width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(width)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.fc = nn.Linear(width * 8 * block.expansion, kwargs.get("num_classes", 1000))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if kwargs.get("zero_init_residual"):
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)


def build_resnet(arch: str, *, with_fc: bool = False, num_classes: int = 1000, zero_init_residual: bool = False) -> nn.Module:
    """A randomly initialised trunk. Without `fc` its forward returns res5avg features."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    spec = ARCHS[arch]
    kwargs = dict(num_classes=num_classes, zero_init_residual=zero_init_residual)
    if spec.widen == 1:
        model = ResNet(spec.block, list(spec.layers), **kwargs)
    else:
        model = WidenedResNet(spec.block, list(spec.layers), spec.widen, **kwargs)
    if not with_fc:
        model.fc = nn.Identity()
    return model


# ------------------------------------------------------------------------------------- ViTs


def is_vit(arch: str) -> bool:
    return arch.startswith("vit_")


def parse_vit_arch(arch: str) -> tuple[str, dict[str, Any]]:
    """`name[:key=value,...]` -> (timm model name, overrides). Raises ValueError naming what is wrong."""
    name, _, rest = arch.partition(":")
    overrides: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in VIT_OVERRIDES:
            raise ValueError(f"bad ViT arch {arch!r}: override {item!r}; expected key=value with key in {', '.join(VIT_OVERRIDES)}")
        try:
            overrides[key] = VIT_OVERRIDES[key](value)
        except ValueError:
            kind = "an integer" if VIT_OVERRIDES[key] is int else "a number"
            raise ValueError(f"bad ViT arch {arch!r}: {key} must be {kind}, not {value!r}") from None
    return name, overrides


def format_vit_arch(name: str, overrides: dict[str, Any]) -> str:
    """Inverse of `parse_vit_arch`, keys in a fixed order so one model has one arch string."""
    items = [f"{k}={overrides[k]!r}" for k in VIT_OVERRIDES if k in overrides]
    return name + (":" + ",".join(items) if items else "")


def build_vit(arch: str) -> nn.Module:
    """A randomly initialised timm ViT without classifier; `model(x)` is the CLS token after the final norm."""
    try:
        import timm
    except ImportError:
        raise ValueError(f"{arch} needs the timm package (pip install 'timm>=1.0.21,<2')") from None
    name, overrides = parse_vit_arch(arch)
    if not timm.is_model(name):
        raise ValueError(f"unknown ViT architecture {name!r}: not a timm model name")
    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="token", dynamic_img_size=True, **overrides)
    if not hasattr(model, "cls_token") or model.cls_token is None:
        raise ValueError(f"{arch} has no class token; only ViTs with a CLS token are supported")
    return model


def build_backbone(arch: str) -> nn.Module:
    """The backbone for `arch`, randomly initialised: res5avg for ResNets, the normed CLS token for ViTs."""
    return build_vit(arch) if is_vit(arch) else build_resnet(arch)


@functools.lru_cache(maxsize=None)
def _vit_width(arch: str) -> int:
    with torch.device("meta"):
        return int(build_vit(arch).num_features)


def feature_dim(arch: str) -> int:
    """Dimension of `build_backbone(arch)(x)`: 2048 for resnet50, embed_dim for a ViT."""
    return _vit_width(arch) if is_vit(arch) else ARCHS[arch].feature_dim


def vit_last_blocks(model: nn.Module, x: torch.Tensor, n_last_blocks: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(CLS token (B, D), patch tokens (B, N, D)) after each of the last n blocks, each passed through the
    final norm, as DINO's `get_intermediate_layers(x, n)`; register tokens are left out of the patch tokens."""
    depth = len(model.blocks)
    if not 1 <= n_last_blocks <= depth:
        raise ValueError(f"n_last_blocks must be in 1..{depth} for this {depth}-block ViT, not {n_last_blocks}")
    outputs = model.forward_intermediates(x, indices=n_last_blocks, norm=True, output_fmt="NLC",
                                          intermediates_only=True, return_prefix_tokens=True)
    return [(prefix[:, 0], patches) for patches, prefix in outputs]


def vit_intermediate_features(model: nn.Module, x: torch.Tensor, n_last_blocks: int = 1,
                              avgpool_patchtokens: bool = False) -> torch.Tensor:
    """The linear-probe input of DINO's eval_linear: the CLS tokens of the last n blocks, concatenated.

    With `avgpool_patchtokens`, the mean of the last block's patch tokens is added. For n = 1 the two are
    interleaved per channel ([cls_0, avg_0, cls_1, avg_1, ...]) exactly as DINO's eval_linear does; DINO's
    code cannot combine n > 1 with the pooling, so there the mean is appended after the CLS tokens, as
    DINOv2's `create_linear_input` does. Output width: D * (n + avgpool).
    """
    outputs = vit_last_blocks(model, x, n_last_blocks)
    out = torch.cat([cls for cls, _ in outputs], dim=-1)
    if not avgpool_patchtokens:
        return out
    pooled = outputs[-1][1].mean(dim=1)
    if n_last_blocks == 1:
        return torch.stack((out, pooled), dim=-1).reshape(out.shape[0], -1)
    return torch.cat((out, pooled), dim=-1)


def vit_layer_id(param_name: str, depth: int) -> int:
    """Layer index of a ViT parameter for layer-wise lr decay, as MAE's util/lr_decay.py (after BEiT) assigns
    it: 0 for the embeddings (cls_token, reg_token, pos_embed, patch_embed), i + 1 for `blocks.i`, and
    depth + 1 for what follows the blocks (norm, a head). MAE scales the lr by decay ** (depth + 1 - id)."""
    if param_name.split(".", 1)[0] in ("cls_token", "reg_token", "pos_embed", "patch_embed"):
        return 0
    if param_name.startswith("blocks."):
        return int(param_name.split(".")[1]) + 1
    return depth + 1

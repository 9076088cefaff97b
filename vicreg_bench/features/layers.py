"""Which feature of a frozen backbone a protocol reads (the "layer"), and the module that computes it.

- `res5avg`: a ResNet's global average pool after layer4 (every ResNet protocol);
- `cls`: a ViT's CLS token after the final norm (k-NN, SVM; timm's `forward_features(x)[:, 0]`);
- `cls_last<n>[_avgpool]`: DINO's eval_linear input, the CLS tokens of the last n blocks (each through the
  final norm) concatenated, with the mean of the last block's patch tokens when `_avgpool`
  (`vicreg_bench.models.vit_intermediate_features`).

The layer is part of the feature cache key, so two layers of one checkpoint never share an entry.
"""

from __future__ import annotations

import functools
import re

import torch
import torch.nn as nn

from vicreg_bench.models import feature_dim, is_vit, vit_intermediate_features

_LAST = re.compile(r"^cls_last(\d+)(_avgpool)?$")
# DINO's eval_linear: the last 4 CLS tokens for ViT-S, the last one with the pooled patch tokens for ViT-B
SMALL_VIT_WIDTH = 384


def default_layer(arch: str) -> str:
    """The feature k-NN and the SVM read: res5avg (ResNets) or the CLS token (ViTs)."""
    return "cls" if is_vit(arch) else "res5avg"


@functools.lru_cache(maxsize=None)
def vit_depth(arch: str) -> int:
    """Number of transformer blocks of a ViT arch (built on the meta device: no memory, no weights)."""
    from vicreg_bench.models import build_vit

    with torch.device("meta"):
        return len(build_vit(arch).blocks)


def vit_linear_defaults(arch: str) -> tuple[int, bool]:
    """(n_last_blocks, avgpool_patchtokens) of DINO's eval_linear: (4, False) for ViT-S and narrower (fewer
    blocks for a ViT with fewer than 4), (1, True) for ViT-B and wider."""
    return (min(4, vit_depth(arch)), False) if feature_dim(arch) <= SMALL_VIT_WIDTH else (1, True)


def linear_layer(arch: str, n_last_blocks: int, avgpool_patchtokens: bool) -> str:
    """The linear probes' feature: res5avg for ResNets; for ViTs the last n CLS tokens (+ pooled patches)."""
    if not is_vit(arch):
        return "res5avg"
    return f"cls_last{n_last_blocks}" + ("_avgpool" if avgpool_patchtokens else "")


class ViTLastBlocks(nn.Module):
    """A frozen ViT returning DINO's eval_linear input instead of its final CLS token."""

    def __init__(self, vit: nn.Module, n_last_blocks: int, avgpool_patchtokens: bool):
        super().__init__()
        self.vit, self.n, self.avgpool = vit, n_last_blocks, avgpool_patchtokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return vit_intermediate_features(self.vit, x, self.n, self.avgpool)


def layer_module(backbone: nn.Module, arch: str, layer: str) -> nn.Module:
    """`backbone` (from `models.build_backbone(arch)`) computing `layer`."""
    if layer == default_layer(arch):
        return backbone
    match = _LAST.match(layer)
    if match and is_vit(arch):
        depth = len(backbone.blocks)
        n = int(match.group(1))
        if not 1 <= n <= depth:
            raise ValueError(f"layer {layer}: {arch} has {depth} blocks, so n_last_blocks must be in 1..{depth}")
        return ViTLastBlocks(backbone, n, bool(match.group(2)))
    raise ValueError(f"layer {layer!r} does not exist for {arch} (expected {default_layer(arch)}"
                     + (" or cls_last<n>[_avgpool]" if is_vit(arch) else "") + ")")


def layer_dim(arch: str, layer: str) -> int:
    match = _LAST.match(layer)
    if match:
        return feature_dim(arch) * (int(match.group(1)) + bool(match.group(2)))
    return feature_dim(arch)

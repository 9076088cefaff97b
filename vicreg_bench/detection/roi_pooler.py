"""RoIAlign with `aligned=True` (detectron2's ROIAlignV2) behind torchvision's pooler interface.

torchvision's MultiScaleRoIAlign samples with `aligned=False` (boxes not shifted by half a pixel) and
`sampling_ratio=2`; detectron2's protocol uses ROIAlignV2 (`aligned=True`, adaptive sampling, ratio 0).
This subclass keeps the interface torchvision's FasterRCNN/MaskRCNN check for (`isinstance` of
MultiScaleRoIAlign) and pools the way detectron2 does, with its FPN level rule:
`level = floor(4 + log2(sqrt(box area) / 224 + 1e-8))`, clamped to the available levels.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align


class AlignedRoIPool(MultiScaleRoIAlign):
    def __init__(
        self,
        featmap_names: Sequence[str],
        output_size: int,
        strides: Sequence[int],
        sampling_ratio: int = 0,
        canonical_box_size: float = 224.0,
        canonical_level: int = 4,
    ):
        super().__init__(list(featmap_names), output_size, sampling_ratio)
        if len(strides) != len(featmap_names):
            raise ValueError("one stride per feature map is required")
        self.strides = [int(s) for s in strides]
        self.min_level = int(math.log2(self.strides[0]))
        self.max_level = int(math.log2(self.strides[-1]))
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level

    def levels(self, boxes: Tensor) -> Tensor:
        """Index (0-based, into featmap_names) of the level each box is pooled from."""
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        level = torch.floor(self.canonical_level + torch.log2(torch.sqrt(area) / self.canonical_box_size + 1e-8))
        return (level.clamp(self.min_level, self.max_level) - self.min_level).to(torch.int64)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:  # type: ignore[override]
        feats = [x[name] for name in self.featmap_names]
        rois = torch.cat(
            [torch.cat([torch.full((len(b), 1), i, dtype=b.dtype, device=b.device), b], dim=1) for i, b in enumerate(boxes)]
        )
        if len(feats) == 1:
            return roi_align(feats[0], rois, self.output_size, 1.0 / self.strides[0], self.sampling_ratio, aligned=True)
        levels = self.levels(rois[:, 1:])
        out = None
        for k, feat in enumerate(feats):
            idx = torch.nonzero(levels == k).squeeze(1)
            pooled = roi_align(feat, rois[idx], self.output_size, 1.0 / self.strides[k], self.sampling_ratio, aligned=True)
            if out is None:
                out = pooled.new_zeros((len(rois), pooled.shape[1], *pooled.shape[2:]))
            out[idx] = pooled.to(out.dtype)
        return out

"""Pieces shared by the two torchvision detectors, each bringing torchvision closer to detectron2's defaults.

- `PreResizedTransform`: torchvision's GeneralizedRCNNTransform normalises and batches, but also resizes with
  its own rounding; our `transforms` already resized the way detectron2 does, so resizing and the matching
  postprocess are turned off here (predictions are mapped back to the original image by the engine).
  It also accepts uint8 images and scales them to [0, 1].
- `DetectronStylePredictor`: box classifier and class-specific box regressor initialised as detectron2's
  FastRCNNOutputLayers (normal std 0.01 and 0.001, zero bias); torchvision's FastRCNNPredictor keeps PyTorch's
  default Linear init. Background is class 0 (torchvision's convention; detectron2 puts it last).
- `c2_xavier_fill`: detectron2's init for FC/conv layers of the FPN box head (kaiming uniform, a=1, zero bias).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class PreResizedTransform(GeneralizedRCNNTransform):
    def __init__(self, image_mean: Sequence[float], image_std: Sequence[float], size_divisible: int = 32):
        # min_size/max_size are unused: resize() is the identity
        super().__init__(min_size=800, max_size=1333, image_mean=list(image_mean), image_std=list(image_std), size_divisible=size_divisible)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        if not image.is_floating_point():
            image = image.float().div_(255.0)
        return super().normalize(image)

    def resize(self, image, target=None):  # type: ignore[override]
        return image, target

    def postprocess(self, result, image_shapes, original_image_sizes):  # type: ignore[override]
        return result


class DetectronStylePredictor(nn.Module):
    """(class logits over K+1 incl. background at 0, class-specific box deltas) from pooled RoI features."""

    def __init__(self, in_features: int, num_classes_with_background: int):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes_with_background)
        self.bbox_pred = nn.Linear(in_features, num_classes_with_background * 4)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


def c2_xavier_fill(module: nn.Module) -> None:
    nn.init.kaiming_uniform_(module.weight, a=1)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # = detectron2 PIXEL_MEAN [123.675, 116.280, 103.530] / 255
IMAGENET_STD = (0.229, 0.224, 0.225)  # = detectron2 PIXEL_STD [58.395, 57.120, 57.375] / 255


def input_normalization(normalize_input: bool) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std in [0, 1] units; (0, 1) for checkpoints trained on unnormalised input (converted SimCLR)."""
    return (IMAGENET_MEAN, IMAGENET_STD) if normalize_input else ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

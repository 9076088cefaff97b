"""Faster R-CNN R50-C4 assembled from a torchvision ResNet trunk, as in detectron2's C4 protocol (VOC07+12).

- Backbone: stem + layer1..layer3 (res2..res4), stride 16, `out_channels` = layer3's width (1024 for R50).
- RPN on res4: anchors sizes 32..512 x ratios 0.5/1/2, 12000/6000 pre-NMS and 2000/1000 post-NMS boxes
  (train/test), NMS 0.7, 256 anchors per image at half positives; IoU 0.3/0.7 (detectron2's C4 defaults).
- RoI pooling: 14 x 14 RoIAlign with aligned=True, adaptive sampling (detectron2 ROIAlignV2).
- Box head: layer4 (res5, stride 2 -> 7 x 7), then MoCo's extra BatchNorm on res5's output
  (`Res5ROIHeadsExtraNorm`, the protocol of the published VOC numbers), then global average pooling.
  The pretrained res5 weights initialise the head (detectron2 does the same via its suffix matching).
- Predictor on 2048 channels; 512 RoIs per image, 25% foreground, IoU 0.5; test: score > 0.05, NMS 0.5, 100
  detections per image; box regression weights (10, 10, 5, 5).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator

from vicreg_bench.detection.rcnn_parts import DetectronStylePredictor, PreResizedTransform
from vicreg_bench.detection.roi_pooler import AlignedRoIPool


class C4Backbone(nn.Sequential):
    """res2..res4 of a torchvision ResNet (names kept: conv1, bn1, layer1..3)."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3"):
            self.add_module(name, getattr(trunk, name))
        last_block = trunk.layer3[-1]
        self.out_channels = (last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2).num_features


class Res5BoxHead(nn.Module):
    """res5 on pooled RoIs, MoCo's extra BN, global average pool -> one vector per RoI."""

    def __init__(self, layer4: nn.Module, extra_norm: bool = True):
        super().__init__()
        self.layer4 = layer4
        last_block = layer4[-1]
        self.out_channels = (last_block.bn3 if hasattr(last_block, "bn3") else last_block.bn2).num_features
        self.norm = nn.BatchNorm2d(self.out_channels) if extra_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.layer4(x)).mean(dim=(2, 3))


def build_c4_faster_rcnn(
    trunk: nn.Module,
    num_classes: int,
    *,
    image_mean,
    image_std,
    extra_norm: bool = True,
    roi_per_image: int = 512,
    test_proposals: int = 1000,
    detections_per_image: int = 100,
) -> FasterRCNN:
    """A Faster R-CNN C4 whose trunk weights are shared with `trunk` (copy it first to keep the original)."""
    trunk = copy.deepcopy(trunk)
    backbone = C4Backbone(trunk)
    head = Res5BoxHead(trunk.layer4, extra_norm=extra_norm)
    model = FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),)),
        rpn_pre_nms_top_n_train=12000,
        rpn_pre_nms_top_n_test=6000,
        rpn_post_nms_top_n_train=2000,
        rpn_post_nms_top_n_test=test_proposals,
        rpn_nms_thresh=0.7,
        rpn_fg_iou_thresh=0.7,
        rpn_bg_iou_thresh=0.3,
        rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5,
        box_roi_pool=AlignedRoIPool(["0"], output_size=14, strides=[16]),
        box_head=head,
        box_predictor=DetectronStylePredictor(head.out_channels, num_classes + 1),
        box_score_thresh=0.05,
        box_nms_thresh=0.5,
        box_detections_per_img=detections_per_image,
        box_fg_iou_thresh=0.5,
        box_bg_iou_thresh=0.5,
        box_batch_size_per_image=roi_per_image,
        box_positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
    )
    model.transform = PreResizedTransform(image_mean, image_std, size_divisible=32)
    return model

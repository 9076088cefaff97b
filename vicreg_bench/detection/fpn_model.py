"""Mask R-CNN R50-FPN assembled from a torchvision ResNet trunk, as in detectron2's COCO protocol.

- Backbone: res2..res5 + FPN (256 channels, P2..P5 and P6 by max-pooling P5), BN in the FPN convs
  ("SyncBN in backbone and FPN": BN here, synchronised across processes by the engine); all stages trainable.
- RPN: one anchor size per level (32..512), ratios 0.5/1/2; 2000/1000 pre-NMS boxes per level and
  1000/1000 post-NMS per image (train/test), as detectron2's Base-RCNN-FPN.
- RoI pooling: aligned RoIAlign (detectron2 ROIAlignV2) 7 x 7 for boxes, 14 x 14 for masks, detectron2's
  level rule. Box head: two FC 1024 (detectron2 init); mask head: 4 conv 256 + deconv + 1x1 predictor
  (logits initialised with std 0.001 as detectron2).
"""

from __future__ import annotations

import copy

import torch.nn as nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from vicreg_bench.detection.rcnn_parts import DetectronStylePredictor, PreResizedTransform, c2_xavier_fill
from vicreg_bench.detection.roi_pooler import AlignedRoIPool

FPN_LEVELS = ["0", "1", "2", "3"]  # P2..P5 (torchvision names); "pool" = P6 is used by the RPN only
FPN_STRIDES = [4, 8, 16, 32]


def build_fpn_mask_rcnn(
    trunk: nn.Module, num_classes: int, *, image_mean, image_std, roi_per_image: int = 512, test_proposals: int = 1000,
    detections_per_image: int = 100,
) -> MaskRCNN:
    trunk = copy.deepcopy(trunk)
    backbone = _resnet_fpn_extractor(trunk, trainable_layers=5, norm_layer=nn.BatchNorm2d)
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, 1024)
    for fc in (box_head.fc6, box_head.fc7):
        c2_xavier_fill(fc)
    mask_predictor = MaskRCNNPredictor(256, 256, num_classes + 1)
    nn.init.normal_(mask_predictor.mask_fcn_logits.weight, std=0.001)
    nn.init.zeros_(mask_predictor.mask_fcn_logits.bias)
    model = MaskRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=AnchorGenerator(sizes=((32,), (64,), (128,), (256,), (512,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5),
        rpn_pre_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_train=1000,
        rpn_post_nms_top_n_test=test_proposals,
        rpn_nms_thresh=0.7,
        rpn_batch_size_per_image=256,
        box_roi_pool=AlignedRoIPool(FPN_LEVELS, output_size=7, strides=FPN_STRIDES),
        box_head=box_head,
        box_predictor=DetectronStylePredictor(1024, num_classes + 1),
        box_score_thresh=0.05,
        box_nms_thresh=0.5,
        box_detections_per_img=detections_per_image,
        box_batch_size_per_image=roi_per_image,
        box_positive_fraction=0.25,
        bbox_reg_weights=(10.0, 10.0, 5.0, 5.0),
        mask_roi_pool=AlignedRoIPool(FPN_LEVELS, output_size=14, strides=FPN_STRIDES),
        mask_head=MaskRCNNHeads(backbone.out_channels, [256, 256, 256, 256], 1),
        mask_predictor=mask_predictor,
    )
    model.transform = PreResizedTransform(image_mean, image_std, size_divisible=32)
    return model

"""Detection building blocks: schedules, input sizes, sampling, RoI pooling, BN handling, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torchvision.ops import roi_align

from vicreg_bench.data.base import DetectionTarget
from task_contexts import typed_options
from vicreg_bench.detection.protocols import protocol_record, resolve_schedule, resolve_sizes
from vicreg_bench.tasks.detection import COCO, VOC07_12
from vicreg_bench.detection.roi_pooler import AlignedRoIPool
from vicreg_bench.detection.schedule import COCO_FPN_1X, VOC07_12_C4, linear_scaled, shortened
from vicreg_bench.detection.sync_bn import NaiveSyncBatchNorm, convert_to_sync_bn, precise_bn
from vicreg_bench.detection.transforms import InputSizes, eval_image, protocol_sizes, resized_shape, train_sample
from vicreg_bench.detection.tv_data import GroupedInfiniteBatches
from vicreg_bench.detection.tv_engine import build_optimizer
from vicreg_bench.errors import UserError


def test_paper_schedules():
    assert (VOC07_12_C4.max_iter, VOC07_12_C4.base_lr, VOC07_12_C4.steps, VOC07_12_C4.warmup_iters) == (24000, 0.05, (18000, 22000), 1000)
    assert VOC07_12_C4.warmup_factor == 0.333 and VOC07_12_C4.ims_per_batch == 16
    assert (COCO_FPN_1X.max_iter, COCO_FPN_1X.base_lr, COCO_FPN_1X.steps, COCO_FPN_1X.warmup_iters) == (90000, 0.04, (60000, 80000), 50)
    # linear warmup from 0.333 x lr: halfway through warmup the factor is 0.333 * 0.5 + 0.5
    assert VOC07_12_C4.lr_at(0) == pytest.approx(0.05 * 0.333)
    assert VOC07_12_C4.lr_at(500) == pytest.approx(0.05 * (0.333 * 0.5 + 0.5))
    assert VOC07_12_C4.lr_at(1000) == pytest.approx(0.05)
    assert VOC07_12_C4.lr_at(17999) == pytest.approx(0.05) and VOC07_12_C4.lr_at(18000) == pytest.approx(0.005)
    assert VOC07_12_C4.lr_at(22000) == pytest.approx(0.0005)


def test_linear_scaling_rule():
    s = linear_scaled(VOC07_12_C4, 2)  # one GPU with 2 images: 8x the iterations at 1/8 of the lr
    assert s.base_lr == pytest.approx(0.00625) and s.max_iter == 192000
    assert s.steps == (144000, 176000) and s.warmup_iters == 8000 and s.warmup_factor == 0.333
    assert linear_scaled(VOC07_12_C4, 16) is VOC07_12_C4
    t = shortened(VOC07_12_C4, 240)
    assert t.steps == (180, 220) and t.warmup_iters == 10 and t.base_lr == 0.05


def test_options_and_protocol_record():
    opts = typed_options("voc07_det", det_engine="torchvision", det_ims_per_batch="4", det_input_scale=0.5)
    sched, period, notes = resolve_schedule(VOC07_12, opts)
    assert sched.ims_per_batch == 4 and sched.max_iter == 96000 and period == 20000
    sizes, size_notes = resolve_sizes(VOC07_12, opts)
    assert sizes.min_sizes_train[0] == 240 and sizes.min_size_test == 400 and sizes.max_size == 666
    name, params, all_notes = protocol_record(COCO, typed_options("coco_det"), "resnet50", 1)
    assert name == "det_coco_mask_rcnn_R50_FPN_1x_detectron2" and params["paper_protocol"] and not all_notes
    assert params["schedule"]["base_lr"] == 0.04 and params["input_sizes"]["min_sizes_train"][0] == 640
    for bad in ({"det_engine": "mmdet"}, {"det_ims_per_batch": "x"}, {"det_input_scale": -1}, {"det_amp": "fp8"}, {"det_d2_opts": "A"}):
        with pytest.raises(UserError, match="det_"):
            typed_options("voc07_det", **bad)


def test_resize_rule_matches_detectron2():
    assert resized_shape(375, 500, 800, 1333) == (800, 1067)  # int(1066.67 + 0.5)
    assert resized_shape(500, 353, 600, 1333) == (850, 600)  # 849.86 -> 850
    assert resized_shape(100, 1000, 800, 1333) == (133, 1333)  # long side capped
    assert protocol_sizes(VOC07_12.min_sizes_train).min_sizes_train == tuple(range(480, 801, 32))
    small = protocol_sizes(VOC07_12.min_sizes_train, 0.1)
    assert small.min_sizes_train == (48, 51, 54, 58, 61, 64, 67, 70, 74, 77, 80) and small.max_size == 133


def _target(boxes, classes, difficult, masks=None):
    return DetectionTarget(np.asarray(boxes, np.float32), np.asarray(classes), np.asarray(difficult), masks, "x", 40, 20)


def test_train_sample_boxes_flip_offset_and_crowd():
    from PIL import Image

    img = Image.new("RGB", (40, 20))
    poly = [[10.0, 5.0, 20.0, 5.0, 20.0, 15.0, 10.0, 15.0]]
    t = _target([[11, 6, 20, 15], [1, 1, 5, 5]], [3, 1], [False, True], masks=[poly, {"counts": [0, 800], "size": [20, 40]}])
    sizes = InputSizes((40,), 40, 1000)  # 2x upscale
    rng = np.random.default_rng(0)
    # flip_prob 0: VOC convention (1-based boxes shifted by -1 on xmin/ymin), difficult objects kept
    image, target = train_sample(img, t, rng, sizes, box_offset=1.0, flip_prob=0.0)
    assert tuple(image.shape) == (3, 40, 80) and image.dtype == torch.uint8
    assert target["boxes"].tolist() == [[20.0, 10.0, 40.0, 30.0], [0.0, 0.0, 10.0, 10.0]]
    assert target["labels"].tolist() == [4, 2]
    # flip_prob 1 with masks, crowd dropped (COCO convention)
    image, target = train_sample(img, t, rng, sizes, with_masks=True, drop_crowd=True, flip_prob=1.0)
    assert target["boxes"].tolist() == [[40.0, 12.0, 58.0, 30.0]]  # [22, 12, 40, 30] flipped: x -> 80 - x
    m = target["masks"][0].numpy()
    ys, xs = np.nonzero(m)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (40, 59, 10, 29)
    t_img, orig = eval_image(img, InputSizes((40,), 30, 1000))
    assert tuple(t_img.shape) == (3, 30, 60) and orig == (20, 40)


def test_aligned_roi_pool_single_and_multi_level():
    torch.manual_seed(0)
    feat = torch.randn(2, 4, 10, 12)
    boxes = [torch.tensor([[0.0, 0.0, 40.0, 30.0], [8.0, 8.0, 100.0, 60.0]]), torch.tensor([[16.0, 4.0, 60.0, 70.0]])]
    pool = AlignedRoIPool(["0"], 14, strides=[8])
    out = pool({"0": feat}, boxes, [(80, 96)] * 2)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1) for i, b in enumerate(boxes)])
    assert torch.allclose(out, roi_align(feat, rois, 14, 1 / 8, 0, aligned=True))
    assert not torch.allclose(out, roi_align(feat, rois, 14, 1 / 8, 0, aligned=False))
    fpn = AlignedRoIPool(["0", "1", "2", "3"], 7, strides=[4, 8, 16, 32])
    # detectron2's rule floor(4 + log2(sqrt(area) / 224)): 224 -> P4, 112 -> P3, 50 -> P2 (clamped), 1000 -> P5
    lv = fpn.levels(torch.tensor([[0, 0, 224.0, 224.0], [0, 0, 112.0, 112.0], [0, 0, 50.0, 50.0], [0, 0, 1000.0, 1000.0]]))
    assert lv.tolist() == [2, 1, 0, 3]
    feats = {str(k): torch.randn(1, 3, 64 // 2**k, 64 // 2**k) for k in range(4)}
    b = [torch.tensor([[0, 0, 224.0, 224.0], [0, 0, 30.0, 30.0]])]
    out = fpn(feats, b, [(256, 256)])
    r0 = torch.tensor([[0, 0, 0, 224.0, 224.0]])
    assert torch.allclose(out[0], roi_align(feats["2"], r0, 7, 1 / 16, 0, aligned=True)[0])


def test_sync_bn_conversion_and_single_process_equality():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    net[1].running_mean.fill_(0.5)
    conv = convert_to_sync_bn(net)
    assert isinstance(conv[1], NaiveSyncBatchNorm) and torch.equal(conv[1].running_mean, net[1].running_mean)
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(conv(x), net(x))  # without a process group it is plain BN


def test_precise_bn_is_the_average_of_batch_statistics():
    bn = nn.BatchNorm2d(2, momentum=0.1)
    batches = [torch.randn(4, 2, 3, 3) * (k + 1) + k for k in range(5)]
    used = precise_bn(bn, iter(batches), lambda b: bn(b), num_iters=5)
    assert used == 5 and bn.momentum == 0.1
    expected = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(bn.running_mean, expected, atol=1e-6)


def test_optimizer_has_no_weight_decay_on_bn():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    opt = build_optimizer(net, VOC07_12_C4)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(net[1].weight)] == 0.0 and wd[id(net[1].bias)] == 0.0
    assert wd[id(net[0].weight)] == 1e-4 and wd[id(net[0].bias)] == 1e-4 and wd[id(net[2].weight)] == 1e-4


def test_batches_are_grouped_deterministic_and_resumable():
    idx = np.arange(20)
    landscape = np.arange(20) % 3 != 0
    full = GroupedInfiniteBatches(idx, landscape, 2, 0, 1, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(12)]
    for batch in first:
        assert len({bool(landscape[i]) for i, _ in batch}) == 1  # one orientation per batch
    again = iter(GroupedInfiniteBatches(idx, landscape, 2, 0, 1, seed=3, start_batch=5))
    assert [next(again) for _ in range(7)] == first[5:]
    # two processes see disjoint images within an epoch
    r0 = iter(GroupedInfiniteBatches(idx, np.ones(20, bool), 2, 0, 2, seed=3))
    r1 = iter(GroupedInfiniteBatches(idx, np.ones(20, bool), 2, 1, 2, seed=3))
    a = {i for _ in range(5) for i, _ in next(r0)}
    b = {i for _ in range(5) for i, _ in next(r1)}
    assert not a & b and len(a | b) == 20

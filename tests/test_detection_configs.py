"""detectron2 configs, plugin and runner inputs, checked without detectron2 (it is not pip-installable).

The key set below is every config key of detectron2's `detectron2/config/defaults.py` (read at commit
084acd0f781f217e8d7b93a0099b08fce82cd88f) under the sections our configs use: `get_cfg().merge_from_file`
rejects any key that is not there, so a key outside this set would fail in detectron2.
"""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from vicreg_bench.detection.d2_plugin import HEAD_NAME, INSTALL_HINT
from vicreg_bench.detection.d2_runner import build_command, effective_batch, parse_results
from task_contexts import typed_options
from vicreg_bench.detection.protocols import CONFIG_DIR
from vicreg_bench.tasks.detection import COCO, VOC07_12
from vicreg_bench.errors import UserError

D2_DEFAULT_KEYS = set("""
VERSION MODEL.LOAD_PROPOSALS MODEL.MASK_ON MODEL.KEYPOINT_ON MODEL.DEVICE MODEL.META_ARCHITECTURE MODEL.WEIGHTS
MODEL.PIXEL_MEAN MODEL.PIXEL_STD INPUT.MIN_SIZE_TRAIN INPUT.MIN_SIZE_TRAIN_SAMPLING INPUT.MAX_SIZE_TRAIN
INPUT.MIN_SIZE_TEST INPUT.MAX_SIZE_TEST INPUT.RANDOM_FLIP INPUT.FORMAT INPUT.MASK_FORMAT DATASETS.TRAIN DATASETS.TEST
DATASETS.PROPOSAL_FILES_TRAIN DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN DATASETS.PROPOSAL_FILES_TEST
DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST DATALOADER.NUM_WORKERS DATALOADER.ASPECT_RATIO_GROUPING
DATALOADER.SAMPLER_TRAIN DATALOADER.REPEAT_THRESHOLD DATALOADER.FILTER_EMPTY_ANNOTATIONS MODEL.BACKBONE.NAME
MODEL.BACKBONE.FREEZE_AT MODEL.FPN.IN_FEATURES MODEL.FPN.OUT_CHANNELS MODEL.FPN.NORM MODEL.FPN.FUSE_TYPE
MODEL.PROPOSAL_GENERATOR.NAME MODEL.PROPOSAL_GENERATOR.MIN_SIZE MODEL.ANCHOR_GENERATOR.NAME MODEL.ANCHOR_GENERATOR.SIZES
MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS MODEL.ANCHOR_GENERATOR.ANGLES MODEL.ANCHOR_GENERATOR.OFFSET MODEL.RPN.HEAD_NAME
MODEL.RPN.IN_FEATURES MODEL.RPN.BOUNDARY_THRESH MODEL.RPN.IOU_THRESHOLDS MODEL.RPN.IOU_LABELS MODEL.RPN.BATCH_SIZE_PER_IMAGE
MODEL.RPN.POSITIVE_FRACTION MODEL.RPN.BBOX_REG_LOSS_TYPE MODEL.RPN.BBOX_REG_LOSS_WEIGHT MODEL.RPN.BBOX_REG_WEIGHTS
MODEL.RPN.SMOOTH_L1_BETA MODEL.RPN.LOSS_WEIGHT MODEL.RPN.PRE_NMS_TOPK_TRAIN MODEL.RPN.PRE_NMS_TOPK_TEST
MODEL.RPN.POST_NMS_TOPK_TRAIN MODEL.RPN.POST_NMS_TOPK_TEST MODEL.RPN.NMS_THRESH MODEL.RPN.CONV_DIMS MODEL.ROI_HEADS.NAME
MODEL.ROI_HEADS.NUM_CLASSES MODEL.ROI_HEADS.IN_FEATURES MODEL.ROI_HEADS.IOU_THRESHOLDS MODEL.ROI_HEADS.IOU_LABELS
MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE MODEL.ROI_HEADS.POSITIVE_FRACTION MODEL.ROI_HEADS.SCORE_THRESH_TEST
MODEL.ROI_HEADS.NMS_THRESH_TEST MODEL.ROI_HEADS.PROPOSAL_APPEND_GT MODEL.ROI_BOX_HEAD.NAME
MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS
MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO
MODEL.ROI_BOX_HEAD.POOLER_TYPE MODEL.ROI_BOX_HEAD.NUM_FC MODEL.ROI_BOX_HEAD.FC_DIM MODEL.ROI_BOX_HEAD.NUM_CONV
MODEL.ROI_BOX_HEAD.CONV_DIM MODEL.ROI_BOX_HEAD.NORM MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG
MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES MODEL.ROI_MASK_HEAD.NAME MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO MODEL.ROI_MASK_HEAD.NUM_CONV MODEL.ROI_MASK_HEAD.CONV_DIM
MODEL.ROI_MASK_HEAD.NORM MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK MODEL.ROI_MASK_HEAD.POOLER_TYPE MODEL.RESNETS.DEPTH
MODEL.RESNETS.OUT_FEATURES MODEL.RESNETS.NUM_GROUPS MODEL.RESNETS.NORM MODEL.RESNETS.WIDTH_PER_GROUP
MODEL.RESNETS.STRIDE_IN_1X1 MODEL.RESNETS.RES5_DILATION MODEL.RESNETS.RES2_OUT_CHANNELS MODEL.RESNETS.STEM_OUT_CHANNELS
MODEL.RESNETS.DEFORM_ON_PER_STAGE MODEL.RESNETS.DEFORM_MODULATED MODEL.RESNETS.DEFORM_NUM_GROUPS
SOLVER.LR_SCHEDULER_NAME SOLVER.MAX_ITER SOLVER.BASE_LR SOLVER.MOMENTUM SOLVER.NESTEROV SOLVER.WEIGHT_DECAY
SOLVER.WEIGHT_DECAY_NORM SOLVER.GAMMA SOLVER.STEPS SOLVER.WARMUP_FACTOR SOLVER.WARMUP_ITERS SOLVER.WARMUP_METHOD
SOLVER.CHECKPOINT_PERIOD SOLVER.IMS_PER_BATCH SOLVER.REFERENCE_WORLD_SIZE SOLVER.BIAS_LR_FACTOR SOLVER.WEIGHT_DECAY_BIAS
TEST.EXPECTED_RESULTS TEST.EVAL_PERIOD TEST.DETECTIONS_PER_IMAGE TEST.PRECISE_BN.ENABLED TEST.PRECISE_BN.NUM_ITER
OUTPUT_DIR SEED CUDNN_BENCHMARK VIS_PERIOD
""".split())
# values detectron2 accepts for the names our configs set (registries / get_norm / ROIPooler / builtin datasets)
D2_NAMES = {
    "MODEL.ROI_HEADS.NAME": {"Res5ROIHeads", "StandardROIHeads", HEAD_NAME},
    "MODEL.RESNETS.NORM": {"FrozenBN", "BN", "SyncBN", "naiveSyncBN", "GN", ""},
    "MODEL.FPN.NORM": {"", "BN", "SyncBN", "naiveSyncBN", "GN"},
    "MODEL.BACKBONE.NAME": {"build_resnet_backbone", "build_resnet_fpn_backbone"},
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": {"ROIAlignV2"},
    "DATASETS.TRAIN": {"voc_2007_trainval", "voc_2012_trainval", "coco_2017_train"},
    "DATASETS.TEST": {"voc_2007_test", "coco_2017_val"},
}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_merged(name: str) -> dict:
    """The config as detectron2 sees it after resolving `_BASE_` (later files override earlier ones)."""
    raw = yaml.safe_load((CONFIG_DIR / name).read_text())
    base = raw.pop("_BASE_", None)
    merged = load_merged(base) if base else {}
    for k, v in _flatten(raw).items():
        merged[k] = ast.literal_eval(v) if isinstance(v, str) and v.startswith("(") else v
    return merged


@pytest.mark.parametrize("name", ["voc07_12_faster_rcnn_R50_C4.yaml", "coco_mask_rcnn_R50_FPN_1x.yaml", "Base-RCNN-C4-BN.yaml"])
def test_config_keys_exist_in_detectron2_defaults(name):
    cfg = load_merged(name)
    unknown = sorted(set(cfg) - D2_DEFAULT_KEYS)
    assert not unknown, f"keys detectron2's get_cfg() would reject: {unknown}"
    for key, allowed in D2_NAMES.items():
        if key in cfg:
            values = cfg[key] if isinstance(cfg[key], (list, tuple)) else [cfg[key]]
            assert set(values) <= allowed, (key, values)


def test_voc_config_holds_the_protocol():
    c = load_merged(VOC07_12.config_file)
    assert c["SOLVER.MAX_ITER"] == 24000 and c["SOLVER.IMS_PER_BATCH"] == 16 and c["SOLVER.BASE_LR"] == 0.05
    assert list(c["SOLVER.STEPS"]) == [18000, 22000] and c["SOLVER.WARMUP_ITERS"] == 1000 and c["SOLVER.WARMUP_FACTOR"] == 0.333
    assert c["MODEL.RESNETS.NORM"] in ("naiveSyncBN", "SyncBN") and c["MODEL.BACKBONE.FREEZE_AT"] == 0
    assert c["MODEL.ROI_HEADS.NAME"] == HEAD_NAME and c["MODEL.ROI_HEADS.NUM_CLASSES"] == 20 and not c["MODEL.MASK_ON"]
    assert c["INPUT.FORMAT"] == "RGB" and c["MODEL.RESNETS.STRIDE_IN_1X1"] is False
    assert c["MODEL.PIXEL_MEAN"] == [123.675, 116.280, 103.530] and c["MODEL.PIXEL_STD"] == [58.395, 57.120, 57.375]
    assert list(c["INPUT.MIN_SIZE_TRAIN"]) == list(range(480, 801, 32)) == list(VOC07_12.min_sizes_train)
    assert c["INPUT.MIN_SIZE_TEST"] == 800 and c["INPUT.MAX_SIZE_TRAIN"] == 1333 and c["TEST.PRECISE_BN.ENABLED"] is True
    assert list(c["DATASETS.TRAIN"]) == ["voc_2007_trainval", "voc_2012_trainval"] and list(c["DATASETS.TEST"]) == ["voc_2007_test"]
    assert c["MODEL.ROI_BOX_HEAD.POOLER_TYPE"] == "ROIAlignV2" and c["MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION"] == 14


def test_coco_config_holds_the_protocol():
    c = load_merged(COCO.config_file)
    assert c["SOLVER.MAX_ITER"] == 90000 and c["SOLVER.BASE_LR"] == 0.04 and list(c["SOLVER.STEPS"]) == [60000, 80000]
    assert c["SOLVER.WARMUP_ITERS"] == 50 and c["SOLVER.IMS_PER_BATCH"] == 16
    assert c["MODEL.RESNETS.NORM"] == "SyncBN" and c["MODEL.FPN.NORM"] == "SyncBN" and c["MODEL.MASK_ON"] is True
    assert c["MODEL.BACKBONE.NAME"] == "build_resnet_fpn_backbone" and c["MODEL.ROI_HEADS.NUM_CLASSES"] == 80
    assert c["INPUT.FORMAT"] == "RGB" and c["MODEL.RESNETS.STRIDE_IN_1X1"] is False
    assert list(c["INPUT.MIN_SIZE_TRAIN"]) == list(COCO.min_sizes_train)
    assert list(c["DATASETS.TRAIN"]) == ["coco_2017_train"] and list(c["DATASETS.TEST"]) == ["coco_2017_val"]


def test_runner_command_scales_the_schedule_and_sets_inputs(tmp_path):
    assert effective_batch(None, 8, 1) == 16 and effective_batch(None, 1, 1) == 2 and effective_batch(8, 1, 1) == 8
    opts = typed_options("voc07_det", det_ims_per_batch=2)
    cmd, notes = build_command(VOC07_12, opts, arch="resnet50", normalize_input=True, weights=tmp_path / "w.pkl",
                               output_dir=tmp_path / "out", data_root=tmp_path, num_gpus=1, seed=0, resume=False)
    kv = dict(zip(cmd[cmd.index("--data-root") + 2 :: 2], cmd[cmd.index("--data-root") + 3 :: 2]))
    assert cmd[1:3] == ["-m", "vicreg_bench.detection.d2_train_net"] and cmd[cmd.index("--num-gpus") + 1] == "1"
    assert kv["MODEL.WEIGHTS"] == str(tmp_path / "w.pkl") and kv["SOLVER.IMS_PER_BATCH"] == "2"
    assert float(kv["SOLVER.BASE_LR"]) == pytest.approx(0.00625) and kv["SOLVER.MAX_ITER"] == "192000"
    assert ast.literal_eval(kv["SOLVER.STEPS"]) == (144000, 176000) and kv["SOLVER.WARMUP_ITERS"] == "8000"
    assert ast.literal_eval(kv["MODEL.PIXEL_MEAN"]) == [123.675, 116.28, 103.53] and ast.literal_eval(kv["MODEL.PIXEL_STD"]) == [58.395, 57.12, 57.375]
    assert ast.literal_eval(kv["INPUT.MIN_SIZE_TRAIN"]) == tuple(range(480, 801, 32))
    assert set(kv) <= D2_DEFAULT_KEYS and notes and "linear scaling" in notes[0]
    cmd, _ = build_command(COCO, typed_options("coco_det"), arch="resnet50", normalize_input=False, weights=tmp_path / "w.pkl",
                           output_dir=tmp_path, data_root=tmp_path, num_gpus=8, seed=0, resume=True)
    kv = dict(zip(cmd[cmd.index("--data-root") + 2 :: 2], cmd[cmd.index("--data-root") + 3 :: 2]))
    assert "--resume" in cmd and kv["SOLVER.MAX_ITER"] == "90000" and ast.literal_eval(kv["MODEL.PIXEL_STD"]) == [255.0] * 3
    with pytest.raises(UserError, match="resnet18"):
        build_command(VOC07_12, opts, arch="resnet18", normalize_input=True, weights=tmp_path, output_dir=tmp_path,
                      data_root=tmp_path, num_gpus=1, seed=0, resume=False)


def test_results_parsing():
    assert parse_results("voc", {"bbox": {"AP": 55.0, "AP50": 81.0, "AP75": 60.0}}) == {"AP": 55.0, "AP50": 81.0, "AP75": 60.0}
    coco = {k: {"AP": 40.0, "AP50": 60.0, "AP75": 43.0, "APs": 20.0} for k in ("bbox", "segm")}
    assert parse_results("coco", coco)["segm_AP75"] == 43.0
    with pytest.raises(RuntimeError):
        parse_results("coco", {"bbox": coco["bbox"]})


def test_converted_weights_have_the_names_the_configs_need(tmp_path):
    convert = pytest.importorskip("vicreg_bench.checkpoints.convert")
    from vicreg_bench.models import build_resnet

    sd = build_resnet("resnet50").state_dict()
    out = tmp_path / "r50.pkl"
    convert.save_detectron2_pkl(sd, out)
    with open(out, "rb") as f:
        blob = pickle.load(f, encoding="latin1")
    assert blob["matching_heuristics"] is True and "__author__" in blob
    model = blob["model"]
    # detectron2 ResNet names: stem, res2..res5, conv{1,2,3}.norm, shortcut(.norm)
    for key in ("stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.shortcut.weight", "res2.0.shortcut.norm.bias",
                "res4.5.conv3.norm.weight", "res5.2.conv3.weight"):
        assert key in model and isinstance(model[key], np.ndarray), key
    # STRIDE_IN_1X1 False: the stride-2 block of res3 has its 3x3 kernel in conv2, as torchvision
    assert model["res3.0.conv2.weight"].shape == (128, 128, 3, 3) and model["res3.0.conv1.weight"].shape == (128, 256, 1, 1)
    # RGB: the first conv keeps torchvision's channel order (no BGR flip), matching INPUT.FORMAT RGB
    np.testing.assert_array_equal(model["stem.conv1.weight"], sd["conv1.weight"].numpy())


def test_detectron2_missing_is_a_clear_user_error():
    try:
        import detectron2  # noqa: F401

        pytest.skip("detectron2 is installed here")
    except ImportError:
        pass
    from vicreg_bench.detection.d2_plugin import register

    with pytest.raises(UserError, match="pip install --no-build-isolation"):
        register()
    assert "docker/Dockerfile" in INSTALL_HINT and "torchvision" in INSTALL_HINT

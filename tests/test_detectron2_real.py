"""The detectron2 engine against a real detectron2 build (scripts/build_detectron2.sh; `make test-detectron2`).

Skipped where detectron2 is not importable (`.ci/run` does not build it: that takes minutes). What is checked:
the converted `.pkl` loads into both configs with every backbone tensor in place; the splits are registered
under our own names (no clash with detectron2's builtin COCO metadata); every shortened schedule is one
detectron2's solver accepts; both tasks run end to end on the CPU on the synthetic suite.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from checkpoint_factories import save_with_main_functions, trunk, vicreg_full
from vicreg_bench.checkpoints.names import torchvision_to_detectron2_name
from vicreg_bench.cli import main as cli_main


def _detectron2_importable() -> bool:
    try:
        import detectron2._C  # noqa: F401  (the compiled ops, not only the Python package)
    except ImportError:
        return False
    return True


pytestmark = [
    pytest.mark.detectron2,
    pytest.mark.skipif(not _detectron2_importable(), reason="detectron2 is not installed: build it with "
                       "scripts/build_detectron2.sh SRC, or run `make test-detectron2 DETECTRON2_SRC=SRC`"),
]
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "detectron2"
VOC_CONFIG = CONFIGS / "voc07_12_faster_rcnn_R50_C4.yaml"
COCO_CONFIG = CONFIGS / "coco_mask_rcnn_R50_FPN_1x.yaml"
# what the protocol trains from scratch: heads, FPN layers, the extra norm after res5 of the C4-BN box head
FROM_SCRATCH = ("proposal_generator.", "roi_heads.box_predictor.", "roi_heads.box_head.", "roi_heads.mask_head.",
                "backbone.fpn_", "roi_heads.res5.norm.")


def _model(config: Path, *overrides: str):
    from detectron2.config import get_cfg
    from detectron2.modeling import build_model

    from vicreg_bench.detection import d2_plugin

    d2_plugin.register()
    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", *overrides])
    return build_model(cfg)


@pytest.fixture(scope="module")
def models() -> dict:
    torch.manual_seed(0)
    return {"voc": _model(VOC_CONFIG), "coco": _model(COCO_CONFIG)}


def _converted(tmp_path: Path, layout: str) -> tuple[Path, dict]:
    """`vicreg-bench convert --to detectron2` of a resnet50 in `layout`, and the torchvision tensors it holds."""
    src = tmp_path / f"{layout}.pth"
    if layout == "torchvision":
        torch.save(trunk("resnet50", with_fc=True, seed=3), src)
    else:  # VICReg's main_vicreg.py checkpoint: DDP module.backbone.* + projector + LARS state
        save_with_main_functions(vicreg_full("resnet50", seed=3), src)
    out = tmp_path / f"{layout}.pkl"
    assert cli_main(["convert", str(src), "--to", "detectron2", "-o", str(out)]) == 0
    return out, trunk("resnet50", seed=3)


def _load(model, pkl: Path):
    """detectron2's own loading path (DetectionCheckpointer, name-matching heuristics); the incompatible keys."""
    from detectron2.checkpoint import DetectionCheckpointer

    ckpt = DetectionCheckpointer(model)
    return ckpt._load_model(ckpt._load_file(str(pkl)))


@pytest.mark.parametrize("layout", ["torchvision", "vicreg"])
@pytest.mark.parametrize("config", ["voc", "coco"])
def test_converted_resnet50_loads_with_every_backbone_tensor(models, tmp_path, layout, config):
    model = models[config]
    pkl, source = _converted(tmp_path, layout)
    incompatible = _load(model, pkl)
    assert not incompatible.unexpected_keys and not incompatible.incorrect_shapes
    missing = [k for k in incompatible.missing_keys if not k.startswith(FROM_SCRATCH)]
    assert not missing, f"backbone keys not loaded: {missing}"
    if config == "voc":
        assert any(k.startswith("roi_heads.res5.norm.") for k in incompatible.missing_keys)
    # the heuristics drop checkpoint keys that match nothing: every source tensor must be found, equal
    state = model.state_dict()
    checked = 0
    for tv_name, tensor in source.items():
        d2 = torchvision_to_detectron2_name(tv_name)
        if d2 is None or tv_name.endswith("num_batches_tracked"):
            continue
        places = [k for k in state if k == d2 or k.endswith("." + d2)]
        assert len(places) == 1, (tv_name, d2, places)
        torch.testing.assert_close(state[places[0]], tensor, rtol=0, atol=0, msg=f"{tv_name} -> {places[0]}")
        checked += 1
    assert checked == 265  # resnet50: stem 5 + 16 blocks x 15 + 4 shortcuts x 5
    stem = "backbone.stem.conv1.weight" if config == "voc" else "backbone.bottom_up.stem.conv1.weight"
    res5 = "roi_heads.res5.2.conv3.norm.running_var" if config == "voc" else "backbone.bottom_up.res5.2.conv3.norm.running_var"
    torch.testing.assert_close(state[stem], source["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(state[res5], source["layer4.2.bn3.running_var"], rtol=0, atol=0)


@pytest.mark.parametrize("arch, config", [("resnet18", COCO_CONFIG), ("resnet50x2", VOC_CONFIG), ("resnet50x2", COCO_CONFIG)])
def test_other_trunks_load_with_the_runners_overrides(tmp_path, arch, config):
    """resnet18/34 on FPN (RES2_OUT_CHANNELS 64) and the doubled-width resnet50x2 on both heads."""
    from vicreg_bench.checkpoints.convert import save_detectron2_pkl
    from vicreg_bench.detection.d2_runner import D2_ARCHS

    pkl = save_detectron2_pkl(trunk(arch), tmp_path / f"{arch}.pkl")
    model = _model(config, *[x for kv in D2_ARCHS[arch].items() for x in kv])
    incompatible = _load(model, pkl)
    assert not incompatible.incorrect_shapes
    assert not [k for k in incompatible.missing_keys if not k.startswith(FROM_SCRATCH)]
    state = model.state_dict()
    last = "res5.1.conv2.weight" if arch == "resnet18" else "res5.2.conv3.weight"
    place = next(k for k in state if k.endswith("." + last))
    torch.testing.assert_close(state[place], trunk(arch)["layer4." + last[len("res5."):]], rtol=0, atol=0)


def test_shortened_schedules_pass_detectron2s_solver():
    """det_max_iter=4 failed: "Milestone must be smaller than total number of updates"."""
    from detectron2.config import get_cfg
    from detectron2.solver import build_lr_scheduler

    from vicreg_bench.detection.schedule import VOC07_12_C4, linear_scaled, shortened

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    for max_iter in range(1, 30):
        s = shortened(linear_scaled(VOC07_12_C4, 2), max_iter)
        cfg = get_cfg()
        cfg.merge_from_list(["SOLVER.MAX_ITER", str(max_iter), "SOLVER.STEPS", str(s.steps),
                             "SOLVER.WARMUP_ITERS", str(s.warmup_iters)])
        build_lr_scheduler(cfg, opt)


def test_splits_are_registered_under_our_names(synthetic_root, tmp_path):
    """coco_det failed: "Attribute 'thing_classes' in the metadata of 'coco_2017_train' cannot be set to a different
    value" (the synthetic COCO has 8 categories; detectron2's builtin registration has COCO's 80)."""
    import detectron2.data.datasets  # noqa: F401  (the builtin registration, as in the launcher)
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator

    from vicreg_bench.detection.d2_datasets import evaluator_for, project_names

    names = project_names(["coco_2017_train", "voc_2007_test", "my_own_set"], synthetic_root)
    assert names == ("vicreg_bench_coco_train2017", "vicreg_bench_voc2007_test", "my_own_set")
    coco = DatasetCatalog.get(names[0])
    assert len(coco) == 24 and len(MetadataCatalog.get(names[0]).thing_classes) == 8
    voc = DatasetCatalog.get(names[1])
    assert len(voc) == 40 and MetadataCatalog.get(names[1]).year == 2007
    assert isinstance(evaluator_for(names[0], str(tmp_path)), COCOEvaluator)
    assert isinstance(evaluator_for(names[1], str(tmp_path)), PascalVOCDetectionEvaluator)
    # another data root in the same process: registered anew, not the first root's files
    other = tmp_path / "other"
    shutil.copytree(synthetic_root / "coco", other / "coco")
    project_names(["coco_2017_train"], other)
    assert MetadataCatalog.get(names[0]).vicreg_bench_root == str((other / "coco").resolve())
    assert DatasetCatalog.get(names[0])[0]["file_name"].startswith(str(other.resolve()))


def _run(tmp_path: Path, data: Path, arch: str, task: str) -> dict:
    torch.manual_seed(0)
    from vicreg_bench.models import build_resnet

    ckpt = tmp_path / f"{arch}.pth"
    torch.save(build_resnet(arch).state_dict(), ckpt)
    out = tmp_path / "run"
    options = {"det_ims_per_batch": 2, "det_roi_per_image": 16, "det_input_scale": 0.1, "det_test_proposals": 10,
               "det_detections_per_image": 10, "det_precise_bn_iters": 1}
    argv = ["run", "--ckpt", str(ckpt), "--tasks", task, "--det-engine", "detectron2", "--data-root", str(data),
            "--out", str(out), "--device", "cpu", "--workers", "0", "--det-iters", "4"]
    for k, v in options.items():
        argv += ["--option", f"{k}={v}"]
    cli_main(argv)
    return json.loads((out / "results.json").read_text())["tasks"][task]


@pytest.mark.slow
def test_voc07_det_runs_on_the_cpu_with_a_four_iteration_schedule(synthetic_root, tmp_path):
    entry = _run(tmp_path, synthetic_root, "resnet50", "voc07_det")
    assert entry["status"] == "ok", entry.get("reason")
    assert entry["engine"] == "detectron2" and set(entry["metrics"]) == {"AP", "AP50", "AP75"}
    assert entry["protocol"]["params"]["schedule"]["steps"] == [3]
    # the deviations listed are all those the params count (RoIs, proposals and detections per image were missing)
    notes = entry["extra"]["deviations_from_protocol"]
    assert any("16 RoIs per training image" in n for n in notes) and any("10 detections" in n for n in notes)
    assert entry["extra"]["paper_protocol"] is entry["protocol"]["params"]["paper_protocol"] is False
    launch = entry["extra"]["launch"]
    assert launch["device"] == "cpu" and launch["num_gpus"] == 1


@pytest.mark.slow
def test_coco_det_runs_with_a_resnet18_on_the_synthetic_categories(synthetic_root, tmp_path):
    entry = _run(tmp_path, synthetic_root, "resnet18", "coco_det")
    assert entry["status"] == "ok", entry.get("reason")
    assert set(entry["metrics"]) == {f"{k}_{m}" for k in ("bbox", "segm") for m in ("AP", "AP50", "AP75")}
    d2 = dict(zip(entry["extra"]["launch"]["d2_opts"][0::2], entry["extra"]["launch"]["d2_opts"][1::2]))
    assert d2["MODEL.RESNETS.DEPTH"] == "18" and d2["MODEL.ROI_HEADS.NUM_CLASSES"] == "8"

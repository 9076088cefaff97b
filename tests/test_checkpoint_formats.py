"""Every release layout of PROTOCOLS.md is recognised without being told, and its backbone loads strictly."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import checkpoint_factories as F
from checkpoint_factories import release_files  # noqa: F401  (pytest fixture)
from vicreg_bench.checkpoints import METHODS, BackboneInfo, load_backbone
from vicreg_bench.models import build_resnet


def assert_same_trunk(sd: dict, expected: dict, *, counters: bool = True) -> None:
    expected = {k: v for k, v in expected.items() if not k.startswith("fc.")}
    assert set(sd) == set(expected) | ({k for k in sd if k.endswith("num_batches_tracked")} if not counters else set())
    for k, v in expected.items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k


@functools.lru_cache(maxsize=None)
def _model(arch: str) -> torch.nn.Module:
    return build_resnet(arch)


def strict_load(sd: dict, info: BackboneInfo) -> None:
    _model(info.arch).load_state_dict(sd, strict=True)
    assert not any(k.startswith("fc.") for k in sd)


RESNET18_PARAMS = 11_176_512  # sum(p.numel() for p in build_resnet("resnet18").parameters())


def _save(obj, path: Path, **kw) -> Path:
    torch.save(obj, path, **kw)
    return path


EXPECTED = {
    # release file (checkpoint_factories.RELEASE_FILES): (format, method, key)
    "torchvision": ("torchvision", "torchvision", None),
    "vicreg_resnet50.pth": ("torchvision", "torchvision", None),
    "vicreg_full": ("vicreg_full", "vicreg", None),
    "barlowtwins_full": ("barlowtwins_full", "barlowtwins", None),
    "moco_v2": ("moco", "moco_v2", "encoder_q"),
    "moco_v1_released": ("moco", "moco_v2", "encoder_q"),
    "moco_v3": ("moco_v3", "moco_v3", "base_encoder"),
    "swav_wrapped": ("swav", "swav", None),
    "swav_flat": ("swav", "swav", None),
    "dino_full": ("dino_full", "dino", "teacher"),
    "vissl": ("vissl", "vissl", None),
    "vissl_eval": ("vissl", "vissl", None),
    "simclr": ("simclr_converted", "simclr", None),
    "byol": ("byol_converted", "byol", None),
    "solo_learn": ("lightning", "solo_learn", "backbone"),
    "solo_learn_old": ("lightning", "solo_learn", "encoder"),
    "lightly": ("lightning", "solo_learn", "backbone"),
    "detectron2_moco": ("detectron2", "detectron2", None),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_release_layout_is_recognised(release_files, name: str) -> None:
    fmt, method, key = EXPECTED[name]
    path = release_files[name]
    sd, info = load_backbone(path)
    assert (info.format, info.method, info.arch, info.key) == (fmt, method, "resnet18", key)
    assert info.method in METHODS
    if name == "byol":  # no counters in the file: added as zeros
        assert_same_trunk({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
                          {k: v for k, v in F.trunk().items() if not k.endswith("num_batches_tracked")})
    else:
        assert_same_trunk(sd, F.trunk())
    strict_load(sd, info)
    assert info.sha256 and len(info.sha256) == 64
    assert info.num_params == RESNET18_PARAMS
    assert info.to_results_dict() == {"path": str(path), "sha256": info.sha256, "format": fmt, "method": method, "arch": "resnet18"}


def test_vicreg_full_needs_the_restricted_reader_and_drops_projector(release_files) -> None:
    sd, info = load_backbone(release_files["vicreg_full"])
    assert info.reader == "restricted_unpickler"
    assert any("__main__.exclude_bias_and_norm" in n for n in info.notes)
    assert "model/module.projector.0.bias" in info.dropped_keys and "model/module.projector.6.weight" in info.dropped_keys
    assert {"epoch", "optimizer"} <= set(info.dropped_keys)


def test_barlowtwins_marker_is_the_affine_free_bn(release_files) -> None:
    _, info = load_backbone(release_files["barlowtwins_full"])
    assert "model/module.bn.running_mean" in info.dropped_keys
    assert "model/module.projector.0.bias" not in info.dropped_keys  # Barlow's Linears have no bias


def test_dino_full_reads_namespace_and_numpy_scalars_safely_and_student_key(release_files) -> None:
    path = release_files["dino_full"]
    sd, info = load_backbone(path)
    assert info.reader == "restricted_unpickler"  # weights_only refuses argparse.Namespace
    assert any("argparse.Namespace" in n or "numpy" in n for n in info.notes)
    assert "teacher" in info.source and any("student" in n for n in info.notes)
    sd_s, info_s = load_backbone(path, key="student")
    assert info_s.key == "student" and info_s.source.startswith("student/")
    assert_same_trunk(sd_s, F.trunk(seed=1))
    assert "teacher" in info_s.dropped_keys


def test_moco_momentum_encoder_by_key(release_files) -> None:
    path = release_files["moco_v2"]
    sd, info = load_backbone(path, key="encoder_k")
    assert info.key == "encoder_k"
    assert_same_trunk(sd, F.trunk(seed=1))
    _, info_q = load_backbone(path)
    assert any("MoCo v2" in n for n in info_q.notes)
    assert "state_dict/module.queue" in info_q.dropped_keys
    assert "state_dict/module.encoder_q.fc.0.weight" in info_q.dropped_keys


def test_moco_v3_momentum_encoder_by_key(release_files) -> None:
    path = release_files["moco_v3"]
    sd, _ = load_backbone(path, key="momentum_encoder")
    assert_same_trunk(sd, F.trunk(seed=1))


def test_lightning_momentum_backbone_by_key(release_files) -> None:
    path = release_files["solo_learn"]
    sd, info = load_backbone(path, key="momentum_backbone")
    assert info.key == "momentum_backbone"
    assert_same_trunk(sd, F.trunk(seed=1))


def test_byol_converted_missing_counters_are_zeros(release_files) -> None:
    sd, info = load_backbone(release_files["byol"])
    assert all(int(sd[k]) == 0 for k in sd if k.endswith("num_batches_tracked"))
    assert any("num_batches_tracked" in n for n in info.notes)
    strict_load(sd, info)


def test_simclr_means_no_input_normalisation(release_files) -> None:
    path = release_files["simclr"]
    _, info = load_backbone(path)
    assert info.normalize_input is False
    _, info_tv = load_backbone(path, method="torchvision")  # a --method override decides
    assert info_tv.normalize_input is True


def test_old_torchvision_without_counters_stays_torchvision(tmp_path: Path) -> None:
    sd = F.trunk(with_fc=True)
    sd = type(sd)((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))  # OrderedDict, module order
    _, info = load_backbone(_save(sd, tmp_path / "resnet18-5c106cde.pth"))
    assert (info.format, info.method) == ("torchvision", "torchvision")


def test_detectron2_pkl_from_moco_converter(release_files) -> None:
    _, info = load_backbone(release_files["detectron2_moco"])
    assert info.container == "pickle"
    assert "model/stem.fc.0.weight" in info.dropped_keys  # MoCo's converter keeps the MLP head as stem.fc.*


def test_safetensors_timm_style(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(dict(F.trunk(with_fc=True)), str(path), metadata={"format": "pt"})
    sd, info = load_backbone(path)
    assert (info.container, info.format, info.method) == ("safetensors", "torchvision", "torchvision")
    assert_same_trunk(sd, F.trunk())


def test_wrapped_imagenet_example_and_timm_train_checkpoints(tmp_path: Path) -> None:
    lincls = {"epoch": 100, "arch": "resnet18", "state_dict": F._prefixed(F.trunk(with_fc=True), "module."),
              "best_acc1": 71.1, "optimizer": F._sgd_state(2)}
    _, info = load_backbone(_save(lincls, tmp_path / "model_best.pth.tar"))
    assert (info.format, info.method) == ("torchvision_wrapped", "torchvision")
    timm = {"epoch": 5, "arch": "resnet", "state_dict": F.trunk(with_fc=True), "optimizer": F._sgd_state(2),
            "version": 2, "args": {"model": "resnet18"}, "metric": 70.0}
    _, info = load_backbone(_save(timm, tmp_path / "checkpoint-5.pth.tar"))
    assert (info.format, info.method) == ("torchvision_wrapped", "timm")


def test_vicreg_full_without_ddp_and_our_trainer_prefix(tmp_path: Path) -> None:
    path = F.save_with_main_functions(F.vicreg_full(ddp=False), tmp_path / "model.pth")
    _, info = load_backbone(path)
    assert (info.format, info.method, info.source) == ("vicreg_full", "vicreg", "model/backbone.")


def test_half_precision_is_cast_to_float32(tmp_path: Path) -> None:
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in F.trunk().items()}
    out, info = load_backbone(_save(sd, tmp_path / "half.pth"))
    assert all(v.dtype == torch.float32 for k, v in out.items() if not k.endswith("num_batches_tracked"))
    assert any("float16" in n for n in info.notes)


def test_numpy_arrays_in_plain_pickle(tmp_path: Path) -> None:
    sd = {k: v.numpy() for k, v in F.trunk().items()}
    out, info = load_backbone(F.write_pickle(sd, tmp_path / "weights.pkl"))
    assert info.container == "pickle"
    assert_same_trunk(out, F.trunk())


def test_resnet50_release_file(tmp_path: Path) -> None:
    """The one full-size case: a VICReg/Barlow resnet50.pth-style backbone (23.5M trunk parameters),
    loaded, checked strictly, and round-tripped through detectron2."""
    from vicreg_bench.checkpoints.convert import save_detectron2_pkl

    path = _save(F.trunk("resnet50"), tmp_path / "resnet50.pth")
    sd, info = load_backbone(path, method="vicreg")
    assert (info.arch, info.method) == ("resnet50", "vicreg")
    assert info.num_params == sum(p.numel() for p in _model("resnet50").parameters())
    strict_load(sd, info)
    back, info_d2 = load_backbone(save_detectron2_pkl(sd, tmp_path / "r50.pkl"))
    assert (info_d2.arch, info_d2.format) == ("resnet50", "detectron2")
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)


def test_generic_fallback_single_trunk_under_unknown_prefix(tmp_path: Path) -> None:
    obj = {"net": {"model": F._prefixed(F.trunk(), "encoder.base.")}, "step": 3}
    sd, info = load_backbone(_save(obj, tmp_path / "other.pth"))
    assert info.format == "generic" and info.source == "net/model/encoder.base."
    assert_same_trunk(sd, F.trunk())


def test_method_override_on_a_flat_file(release_files) -> None:
    path = release_files["vicreg_resnet50.pth"]
    for method in ("vicreg", "barlowtwins", "dino"):
        _, info = load_backbone(path, method=method)
        assert info.method == method


def test_numpy_float64_schedules_are_plain_numbers_after_loading(release_files) -> None:
    """The restricted reader rebuilds numpy scalars (DINO param groups) as numpy scalars, nothing else."""
    from vicreg_bench.checkpoints.readers import read_checkpoint

    raw = read_checkpoint(release_files["dino_full"])
    group = raw.obj["optimizer"]["param_groups"][0]
    assert isinstance(group["lr"], np.float64) and group["lr"] == np.float64(0.0123)
    assert raw.obj["args"].arch == "resnet18" and raw.obj["args"]["epochs"] == 100

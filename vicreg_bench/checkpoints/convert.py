"""Checkpoint conversions to torchvision, timm, VISSL and detectron2 files (the library half of
`vicreg-bench convert`, whose command line is `vicreg_bench.cli.convert`).

Conversions are bit-exact and round-trip; OUT is never overwritten without force, and is written atomically.
"""

from __future__ import annotations

import io
import json
import pickle
import shlex
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from vicreg_bench import __version__
from vicreg_bench.checkpoints.arch import complete_and_check, expected_shapes, infer_arch
from vicreg_bench.checkpoints.formats import EXPORT_KEY, EXPORT_VERSION
from vicreg_bench.checkpoints.info import BackboneInfo
from vicreg_bench.checkpoints.names import VISSL_PREFIX, detectron2_to_torchvision_name, torchvision_to_detectron2_name
from vicreg_bench.checkpoints.vit_arch import infer_vit_arch
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_path, torch_save_file
from vicreg_bench.models import build_backbone

TARGETS = ("torchvision", "vissl", "detectron2", "timm")
DETECTRON2_AUTHOR = "vicreg-bench"
D2_CONFIGS = {
    "VOC07+12 Faster R-CNN R50-C4": "configs/detectron2/voc07_12_faster_rcnn_R50_C4.yaml",
    "COCO Mask R-CNN R50-FPN 1x": "configs/detectron2/coco_mask_rcnn_R50_FPN_1x.yaml",
}
VISSL_BENCHMARKS = {  # (tool, benchmark config, model-config folder)
    "ImageNet linear": ("tools/run_distributed_engines.py", "benchmark/linear_image_classification/imagenet1k/eval_resnet_8gpu_transfer_in1k_linear", "imagenet1k"),
    "VOC07 SVM": ("tools/train_svm.py", "benchmark/linear_image_classification/voc07/eval_resnet_8gpu_transfer_voc07_svm", "voc07"),
    "Places205 linear": ("tools/run_distributed_engines.py", "benchmark/linear_image_classification/places205/eval_resnet_8gpu_transfer_places205_linear", "places205"),
    "iNat18 linear": ("tools/run_distributed_engines.py", "benchmark/linear_image_classification/inaturalist18/eval_resnet_8gpu_transfer_inaturalist18_linear", "inaturalist18"),
}


# ------------------------------------------------------------------------------ name conversions


def torchvision_to_detectron2(state_dict: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """detectron2-named numpy arrays of a torchvision trunk; `fc` and other non-trunk keys are left out."""
    out: dict[str, np.ndarray] = {}
    for name, tensor in state_dict.items():
        d2 = torchvision_to_detectron2_name(name)
        if d2 is not None:
            out[d2] = tensor.detach().cpu().numpy().copy()
    return out


def detectron2_to_torchvision(model: Mapping[str, Any]) -> "OrderedDict[str, torch.Tensor]":
    """torchvision-named tensors of a detectron2 ResNet (numpy or torch values); non-trunk keys are left out."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name, value in model.items():
        tv = detectron2_to_torchvision_name(name)
        if tv is not None:
            out[tv] = torch.from_numpy(np.array(value, copy=True)) if isinstance(value, np.ndarray) else value.detach().clone()
    return out


# ------------------------------------------------------------------------------------- writers


def _validated(state_dict: Mapping[str, torch.Tensor]) -> tuple["OrderedDict[str, torch.Tensor]", str]:
    """The state dict in model order, checked to load strictly into its inferred architecture."""
    sd = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
    try:
        arch = infer_arch(sd)
        complete_and_check(sd, arch)
    except ValueError as e:
        raise UserError(f"not a supported ResNet backbone state dict: {e}") from None
    return OrderedDict((k, sd[k]) for k in expected_shapes(arch)), arch


def check_out(out_path: str | Path, force: bool) -> Path:
    """OUT as a Path, refused when it is a folder, or exists and force is off (a file is never overwritten silently)."""
    out = Path(out_path)
    if out.is_dir():
        raise UserError(f"{out}: is a directory; -o expects a file name")
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; pass --force to overwrite")
    return out


def _write(out: Path, force: bool, write) -> Path:
    try:
        with atomic_path(out, force=force) as tmp:
            write(tmp)
    except FileExistsError:
        raise UserError(f"{out}: already exists; pass --force to overwrite") from None
    return out


class _Detectron2Pickler(pickle._Pickler):
    """Writes numpy arrays under `numpy.core.multiarray._reconstruct`, the path both numpy 1.x and 2.x
    unpickle (numpy 2 itself writes `numpy._core...`, which numpy < 1.26 cannot read)."""

    _reconstruct = (getattr(np, "_core", None) or np.core).multiarray._reconstruct

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is self._reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def detectron2_pickle_bytes(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> bytes:
    content: dict[str, Any] = {
        "model": torchvision_to_detectron2(state_dict),
        "__author__": DETECTRON2_AUTHOR,
        "matching_heuristics": True,
    }
    if metadata:
        content[EXPORT_KEY] = dict(metadata)
    buf = io.BytesIO()
    _Detectron2Pickler(buf, protocol=4).dump(content)
    return buf.getvalue()


def save_detectron2_pkl(state_dict: Mapping[str, torch.Tensor], out_path: str | Path, force: bool = False,
                        *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a detectron2 `.pkl` (no fc). detectron2 matches the names by suffix, so res5 also seeds the C4 head."""
    out = check_out(out_path, force)
    sd, _arch = _validated(state_dict)
    data = detectron2_pickle_bytes(sd, metadata)
    return _write(out, force, lambda tmp: tmp.write_bytes(data))


def vissl_checkpoint(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The dict VISSL's `init_model_from_consolidated_weights` reads with STATE_DICT_KEY_NAME classy_state_dict.

    VISSL takes `classy_state_dict.base_model.model.trunk` (prefixing `trunk.` or, for feature
    evaluation, `trunk.base_model.`) and always reads `...model.heads` too, so an empty heads dict is
    required. The phase/iteration entries mirror what VISSL's checkpoint hook writes.
    """
    trunk = OrderedDict((VISSL_PREFIX + k, v) for k, v in state_dict.items())
    content: dict[str, Any] = {
        "type": "consolidated",
        "phase_idx": 0,
        "iteration": 0,
        "iteration_num": 0,
        "train_phase_idx": 0,
        "loss": {},
        "classy_state_dict": {"base_model": {"model": {"trunk": trunk, "heads": OrderedDict()}}},
    }
    if metadata:
        content[EXPORT_KEY] = dict(metadata)
    return content


def save_vissl(state_dict: Mapping[str, torch.Tensor], out_path: str | Path, force: bool = False,
               *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a VISSL checkpoint (`.torch` by VISSL's convention) holding the trunk."""
    out = check_out(out_path, force)
    sd, _arch = _validated(state_dict)
    content = vissl_checkpoint(sd, metadata)
    return _write(out, force, lambda tmp: torch_save_file(content, tmp))


def _module_metadata(arch: str) -> "OrderedDict[str, Any]":
    """The per-module version table `state_dict()` attaches (BatchNorm version 2 and so on)."""
    with torch.device("meta"):
        table = build_backbone(arch).state_dict()._metadata  # type: ignore[attr-defined]
    return OrderedDict((k, dict(v)) for k, v in table.items())


def _save_state_dict(sd: "OrderedDict[str, torch.Tensor]", arch: str, out: Path, force: bool,
                     metadata: Mapping[str, Any] | None) -> Path:
    """torch.save of the plain state dict, or safetensors for a `.safetensors` OUT; metadata rides along."""
    meta = {"format_version": EXPORT_VERSION, "arch": arch, "tool_version": __version__, **(metadata or {})}
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
        header = {"format": "pt", EXPORT_KEY: json.dumps(meta, sort_keys=True)}
        return _write(out, force, lambda tmp: save_file(tensors, str(tmp), metadata=header))
    table = _module_metadata(arch)
    table[EXPORT_KEY] = meta
    sd._metadata = table  # type: ignore[attr-defined]
    return _write(out, force, lambda tmp: torch_save_file(sd, tmp))


def save_torchvision(state_dict: Mapping[str, torch.Tensor], out_path: str | Path, force: bool = False,
                     *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the plain torchvision state dict (no fc); `.safetensors` OUT writes safetensors.

    The vicreg-bench metadata rides in the state dict's `_metadata` table (ignored by
    `load_state_dict`) or in the safetensors header, so the file stays a plain state dict.
    """
    out = check_out(out_path, force)
    sd, arch = _validated(state_dict)
    return _save_state_dict(sd, arch, out, force, metadata)


def save_timm(state_dict: Mapping[str, torch.Tensor], out_path: str | Path, force: bool = False,
              *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a timm-named ViT state dict (no head) as `save_torchvision` writes ResNets; ResNets go to
    `save_torchvision` (timm's ResNets use torchvision's names). The arch is `metadata["arch"]` when given
    (it knows what shapes cannot tell, e.g. MoCo v3's 12 heads), else inferred from the shapes."""
    if "cls_token" not in state_dict:
        return save_torchvision(state_dict, out_path, force, metadata=metadata)
    out = check_out(out_path, force)
    sd = {k: v for k, v in state_dict.items() if not k.startswith("head.")}
    try:
        arch = str((metadata or {}).get("arch") or infer_vit_arch(sd))
        complete_and_check(sd, arch)
    except ValueError as e:
        raise UserError(f"not a supported ViT backbone state dict: {e}") from None
    ordered = OrderedDict((k, sd[k]) for k in expected_shapes(arch))
    return _save_state_dict(ordered, arch, out, force, metadata)


def export_metadata(info: BackboneInfo) -> dict[str, Any]:
    """What a converted file remembers about its source."""
    return {
        "format_version": EXPORT_VERSION,
        "method": info.method,
        "arch": info.arch,
        "normalize_input": info.normalize_input,
        "source_format": info.format,
        "source_file": Path(info.path).name,
        "source_sha256": info.sha256,
        "tool_version": __version__,
    }


# ---------------------------------------------------------------------------- evaluation commands


def detectron2_commands(out_path: str | Path, arch: str, normalize_input: bool = True) -> tuple[list[str], list[str]]:
    """(command lines, caveats) that train and evaluate the paper's detection protocols from OUT."""
    extra: list[str] = []
    notes: list[str] = []
    if arch in ("resnet101", "resnet152"):
        extra += ["MODEL.RESNETS.DEPTH", arch[len("resnet"):]]
    elif arch == "resnet50x2":
        extra += ["MODEL.RESNETS.STEM_OUT_CHANNELS", "128", "MODEL.RESNETS.RES2_OUT_CHANNELS", "512",
                  "MODEL.RESNETS.WIDTH_PER_GROUP", "128"]
    elif arch in ("resnet18", "resnet34"):
        extra += ["MODEL.RESNETS.DEPTH", arch[len("resnet"):], "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
        notes.append(f"detectron2's C4 box head is built from bottleneck blocks: for {arch} only the FPN config applies")
    if not normalize_input:
        extra += ["MODEL.PIXEL_MEAN", "[0.0,0.0,0.0]", "MODEL.PIXEL_STD", "[255.0,255.0,255.0]"]
        notes.append("this checkpoint expects inputs in [0, 1] without mean/std normalisation (PIXEL_MEAN/STD overridden)")
    commands = []
    for config in D2_CONFIGS.values():
        argv = ["python", "-m", "vicreg_bench.detection.d2_train_net", "--config-file", config, "--num-gpus", "8",
                "MODEL.WEIGHTS", str(out_path), *extra]
        commands.append(shlex.join(argv))
    return commands, notes


def vissl_commands(out_path: str | Path, arch: str, normalize_input: bool = True) -> tuple[list[str], list[str]]:
    """(command lines, caveats) for VISSL's benchmarks, run from a VISSL checkout."""
    notes: list[str] = []
    commands = []
    for tool, config, folder in VISSL_BENCHMARKS.values():
        argv = ["python", tool, f"config={config}"]
        if arch == "resnet50x2":
            argv.append(f"+config/benchmark/linear_image_classification/{folder}/models=resnet50_w2")
        elif arch in ("resnet18", "resnet34") and folder != "voc07":
            argv.append(f"+config/benchmark/linear_image_classification/{folder}/models={arch}")
        elif arch != "resnet50":
            argv.append(f"config.MODEL.TRUNK.RESNETS.DEPTH={arch[len('resnet'):]}")
        argv += [f"config.MODEL.WEIGHTS_INIT.PARAMS_FILE={out_path}", "config.MODEL.WEIGHTS_INIT.STATE_DICT_KEY_NAME=classy_state_dict"]
        commands.append(shlex.join(argv))
    if arch in ("resnet18", "resnet34"):
        notes.append(f"VISSL's VOC07 SVM config pools ResNet-50 feature maps; check its pooling ops for {arch}")
    if not normalize_input:
        notes.append("this checkpoint expects inputs without mean/std normalisation: remove the Normalize "
                     "transform from the benchmark config's DATA.TRAIN/TEST.TRANSFORMS")
    return commands, notes

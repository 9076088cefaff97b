"""`load_backbone`: any supported checkpoint file -> backbone state dict + `BackboneInfo`.

Steps: read the file safely (readers), recognise the release layout and pull out the backbone
(formats), turn every tensor into a float32 torch tensor, infer the architecture from the shapes
(arch for ResNets, vit_arch for ViTs), and check the result loads strictly into
`vicreg_bench.models.build_backbone(arch)`. ResNets come back under torchvision names, ViTs under timm
names. Every problem is a one-line `UserError` naming the file.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vicreg_bench.checkpoints.arch import complete_and_check, expected_shapes, infer_arch, is_parameter_name
from vicreg_bench.checkpoints.formats import LayoutError, detect_layout
from vicreg_bench.checkpoints.info import BackboneInfo
from vicreg_bench.checkpoints.readers import read_checkpoint
from vicreg_bench.checkpoints.vit_arch import infer_vit_arch
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import sha256_file


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError(f"{name} is a numpy object array, not numbers")
        value = torch.from_numpy(np.array(value, copy=True))
    tensor = value.detach().to("cpu")
    # A view into a larger storage would drag the whole storage along when re-saved.
    if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size() or not tensor.is_contiguous():
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    return tensor


def to_float_tensors(backbone: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """float32 weights and statistics, int64 BatchNorm counters; notes say what was cast."""
    out: dict[str, torch.Tensor] = {}
    cast: set[str] = set()
    for name, value in backbone.items():
        t = _as_tensor(name, value)
        if name.endswith("num_batches_tracked"):
            if t.numel() != 1:
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected a single counter")
            t = t.reshape(()).to(torch.long)
        elif t.dtype != torch.float32:
            if not t.is_floating_point():
                raise ValueError(f"{name} has dtype {t.dtype}; expected floating-point weights")
            cast.add(str(t.dtype).replace("torch.", ""))
            t = t.float()
        out[name] = t
    notes = [f"cast {', '.join(sorted(cast))} tensors to float32"] if cast else []
    return out, notes


def load_backbone(path: str | Path, method: str | None = None, key: str | None = None) -> tuple[dict[str, torch.Tensor], BackboneInfo]:
    """Read any supported checkpoint and return its backbone: torchvision names (ResNets), timm names (ViTs).

    `method` overrides (or disambiguates) the method recorded in `info.method`; it must fit the
    file's layout. `key` picks a branch where a layout holds several (DINO / iBOT `teacher`/`student`,
    MoCo `encoder_q`/`encoder_k`, MoCo v3 `base_encoder`/`momentum_encoder`, Lightning
    `backbone`/`momentum_backbone`, or a prefix for unrecognised layouts).
    The state dict has no head (`fc`, `head`) and loads with `strict=True` into `build_backbone(info.arch)`.
    """
    path = Path(path)
    raw = read_checkpoint(path)
    try:
        ext = detect_layout(raw, method, key)
        state_dict, cast_notes = to_float_tensors(ext.backbone)
        arch = infer_vit_arch(state_dict, ext.method) if ext.family == "vit" else infer_arch(state_dict)
        fill_notes = complete_and_check(state_dict, arch)
    except LayoutError as e:
        raise UserError(f"{path}: {e}") from None
    except ValueError as e:
        where = f" (backbone from {ext.source or 'the top level'})" if "ext" in locals() else ""
        kind = "ViT" if "ext" in locals() and ext.family == "vit" else "ResNet"
        raise UserError(f"{path}: not a supported {kind} backbone{where}: {e}") from None
    ordered = OrderedDict((k, state_dict[k]) for k in expected_shapes(arch))
    info = BackboneInfo(
        path=str(path),
        format=ext.format,
        method=ext.method,
        arch=arch,
        sha256=sha256_file(path),
        num_params=sum(t.numel() for k, t in ordered.items() if is_parameter_name(k)),
        dropped_keys=list(ext.dropped),
        normalize_input=ext.normalize_input,
        notes=raw.notes + ext.notes + cast_notes + fill_notes,
        container=raw.container,
        reader=raw.reader,
        source=ext.source,
        key=ext.key,
        num_tensors=len(ext.backbone),
    )
    return ordered, info

"""What a layout rule returns (`Extraction`), what it is told (`Context`), and the helpers every rule uses.

A rule looks at the unpickled object and either declines (None) or returns an `Extraction`: the
backbone tensors under torchvision (ResNet) or timm (ViT) names, the keys it dropped, and what it
concluded. Rules raise `LayoutError` (a ValueError without the file name; the loader adds it) when the
file is recognised but cannot be used as asked: ambiguous, wrong `--method`, wrong `--key`, incomplete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np
import torch

from vicreg_bench.checkpoints.readers import RawCheckpoint

# Our own export (see convert.save_torchvision / save_timm): a state dict whose `_metadata` (the
# per-module version table every `state_dict()` carries, which `load_state_dict` ignores for unknown
# prefixes) holds this entry; in safetensors files the header metadata holds it as JSON.
EXPORT_KEY = "__vicreg_bench__"
EXPORT_VERSION = 1


class LayoutError(ValueError):
    """The file's layout is recognised but cannot be used as asked."""


@dataclass
class Extraction:
    format: str
    method: str
    backbone: dict[str, Any]  # torchvision / timm name -> tensor or numpy array, as stored
    source: str  # where the backbone was: "entry/prefix"
    dropped: list[str]
    notes: list[str] = field(default_factory=list)
    normalize_input: bool = True
    key: str | None = None  # the branch taken, for layouts that hold several
    strict_methods: frozenset[str] | None = None  # methods this layout can be; None: any label fits
    family: str = "resnet"  # "resnet" (torchvision names) or "vit" (timm names)


@dataclass
class Context:
    method: str | None
    key: str | None


def is_tensor(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def other_entries(obj: Mapping, *used: str) -> list[str]:
    """Top-level entries not used, for the dropped-keys list."""
    return [str(k) for k in obj if k not in used]


def wrapped_state_dicts(obj: Any, entries: tuple[str, ...]) -> Iterator[tuple[str, Mapping]]:
    """(entry, mapping) for each of `entries` that holds a mapping in a checkpoint dict (`{"state_dict": ...}`,
    `{"model": ...}`, ...), in the order given: the wrapped layouts of ResNets and ViTs search the same way."""
    if is_mapping(obj):
        for entry in entries:
            if is_mapping(obj.get(entry)):
                yield entry, obj[entry]


def timm_training_checkpoint(obj: Mapping) -> bool:
    """timm's train.py saves `{arch, version, args, state_dict, ...}`."""
    return {"arch", "version", "args"} <= set(obj)


def pick_branch(key: str | None, branches: Mapping[str, Any], default: str, what: str) -> str:
    """The branch `--key` names (or the default), or a LayoutError listing the branches there are."""
    chosen = default if key is None else key
    if chosen not in branches:
        raise LayoutError(f"--key {key} does not fit: this {what} checkpoint holds {', '.join(branches)}")
    return chosen


def flatten_keys(obj: Any, label: str) -> list[str]:
    """Dotted keys of a (possibly nested) mapping of tensors, for the dropped-keys list."""
    if not is_mapping(obj):
        return [label.rstrip("/")]
    keys: list[str] = []
    for k, v in obj.items():
        if is_mapping(v) and not any(is_tensor(x) for x in v.values()):
            keys += flatten_keys(v, f"{label}{k}.")
        elif is_mapping(v):
            keys += [f"{label}{k}.{kk}" for kk in v]
        else:
            keys.append(f"{label}{k}")
    return keys


def export_meta(raw: RawCheckpoint) -> Mapping[str, Any] | None:
    """The vicreg-bench export entry of a file `convert` wrote as a plain state dict, if any."""
    if raw.container == "safetensors":
        if not raw.metadata or EXPORT_KEY not in raw.metadata:
            return None
        try:
            meta = json.loads(raw.metadata[EXPORT_KEY])
        except json.JSONDecodeError:
            return None
    elif is_mapping(raw.obj):
        meta = (getattr(raw.obj, "_metadata", None) or {}).get(EXPORT_KEY)
    else:
        return None
    return meta if is_mapping(meta) else None


def export_notes(meta: Mapping[str, Any]) -> list[str]:
    sha = f" (sha256 {str(meta['source_sha256'])[:12]}...)" if meta.get("source_sha256") else ""
    return [f"exported by vicreg-bench {meta.get('tool_version', '?')} from a {meta.get('source_format', '?')} checkpoint{sha}"]

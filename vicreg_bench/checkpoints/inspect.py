"""What a checkpoint holds, as text or as a dict: container, layout, method, architecture, parameters,
sha256, and which keys were kept as the backbone and which were dropped (grouped by prefix, with counts).
`vicreg-bench inspect` (`vicreg_bench.cli.inspect`) prints it.

Nothing in the file is executed. Recognised layouts (`format`):
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Mapping

from vicreg_bench.checkpoints.arch import is_parameter_name
from vicreg_bench.checkpoints.info import CONTAINERS, FORMATS, BackboneInfo
from vicreg_bench.models import feature_dim, is_vit

__doc__ = (__doc__ or "") + "\n".join(f"  {name:<20} {text}" for name, text in FORMATS.items()) + "\n"

_WRAPPERS = {"module", "_orig_mod", "model"}
_EMBEDDINGS = ("cls_token", "reg_token", "pos_embed", "patch_embed")


def kept_groups(state_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Backbone tensors per stage: stem, layer1..layer4 (ResNets); embeddings, blocks, norm (ViTs)."""
    groups: "OrderedDict[str, dict[str, Any]]" = OrderedDict()
    tops = {name.split(".", 1)[0] for name in state_dict}
    embeddings = f"embeddings ({', '.join(n for n in _EMBEDDINGS if n in tops)})"
    for name, tensor in state_dict.items():
        top = name.split(".", 1)[0]
        label = "stem (conv1, bn1)" if top in ("conv1", "bn1") else embeddings if top in _EMBEDDINGS else top
        g = groups.setdefault(label, {"group": label, "tensors": 0, "parameters": 0})
        g["tensors"] += 1
        if is_parameter_name(name):
            g["parameters"] += int(tensor.numel())
    return list(groups.values())


def _group_label(key: str, source: str) -> str:
    entry, sep, rest = key.rpartition("/")
    entry = entry + sep
    src_entry, _, src_prefix = source.rpartition("/")
    src_entry = src_entry + ("/" if source.count("/") else "")
    if src_prefix and entry == src_entry and rest.startswith(src_prefix):
        tail = rest[len(src_prefix):].split(".")
        head = src_prefix + tail[0]
        return entry + head + (".*" if len(tail) > 1 else "")
    comps = rest.split(".")
    n = 2 if comps[0] in _WRAPPERS and len(comps) >= 2 else 1
    head = ".".join(comps[:n])
    return entry + head + (".*" if len(comps) > n else "")


def dropped_groups(keys: list[str], source: str = "") -> list[dict[str, Any]]:
    """Dropped keys grouped by entry and prefix, e.g. `state_dict/module.encoder_k.*: 320`."""
    counts: "OrderedDict[str, int]" = OrderedDict()
    for key in keys:
        label = _group_label(key, source)
        counts[label] = counts.get(label, 0) + 1
    return [{"group": g, "keys": n} for g, n in counts.items()]


def render(state_dict: Mapping[str, Any], info: BackboneInfo) -> str:
    reader = {"weights_only": "torch.load(weights_only=True)", "restricted_unpickler": "the restricted unpickler",
              "safetensors": "safetensors"}.get(info.reader, info.reader)
    lines = [
        info.path,
        f"  container   {CONTAINERS.get(info.container, info.container)} (read with {reader})",
        f"  format      {info.format}: {FORMATS.get(info.format, '')}",
        f"  method      {info.method}",
        f"  arch        {info.arch} ({'CLS token' if is_vit(info.arch) else 'res5avg'} feature dim {feature_dim(info.arch)})",
        f"  parameters  {info.num_params:,}",
        f"  sha256      {info.sha256}",
        f"  backbone    from {info.source or '(top level)'}, {info.num_tensors} tensors" + (f", --key {info.key}" if info.key else ""),
        "  input       " + ("ImageNet mean/std normalisation" if info.normalize_input
                            else "NO mean/std normalisation (images in [0, 1])"),
        f"kept ({'timm' if is_vit(info.arch) else 'torchvision'} names):",
    ]
    kept = kept_groups(state_dict)
    kept_width = max([22] + [len(g["group"]) for g in kept])
    for g in kept:
        lines.append(f"  {g['group']:<{kept_width}} {g['tensors']:>4} tensors {g['parameters']:>12,} parameters")
    groups = dropped_groups(info.dropped_keys, info.source)
    lines.append(f"dropped ({len(info.dropped_keys)} keys and entries):" if groups else "dropped: nothing")
    width = max((len(g["group"]) for g in groups), default=0)
    for g in groups:
        lines.append(f"  {g['group']:<{width}}  {g['keys']:>5}")
    if info.notes:
        lines.append("notes:")
        lines += [f"  - {n}" for n in info.notes]
    return "\n".join(lines)


def inspect_dict(state_dict: Mapping[str, Any], info: BackboneInfo) -> dict[str, Any]:
    d = info.to_dict()
    d["num_dropped_keys"] = len(d.pop("dropped_keys"))
    d["feature_dim"] = feature_dim(info.arch)
    d["kept_groups"] = kept_groups(state_dict)
    d["dropped_groups"] = dropped_groups(info.dropped_keys, info.source)
    return d

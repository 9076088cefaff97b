"""ResNet layout rules: which release wrote a checkpoint, and where in it the ResNet trunk is.

One rule per release layout of PROTOCOLS.md, tried from the most specific to the most generic (the
order of `RESNET_RULES`). Each returns an `Extraction` with the trunk under torchvision names, or None.
The facts each rule relies on come from the releases' own saving code (see docs/checkpoints.md).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from vicreg_bench.checkpoints.extraction import (
    EXPORT_KEY,
    Context,
    Extraction,
    LayoutError,
    export_meta,
    export_notes,
    flatten_keys,
    is_mapping,
    is_tensor,
    other_entries,
    pick_branch,
    timm_training_checkpoint,
    wrapped_state_dicts,
)
from vicreg_bench.checkpoints.info import METHODS
from vicreg_bench.checkpoints.names import NAMINGS, TRUNK_SIGNATURES
from vicreg_bench.checkpoints.readers import RawCheckpoint


def _has_trunk(sd: Mapping, prefix: str, naming: str = "torchvision") -> bool:
    stem, first = TRUNK_SIGNATURES[naming]
    return is_tensor(sd.get(prefix + stem)) and is_tensor(sd.get(prefix + first))


def trunk_prefixes(sd: Mapping, naming: str) -> list[str]:
    """Every prefix under which `sd` holds a ResNet stem and first block in `naming`."""
    stem = TRUNK_SIGNATURES[naming][0]
    found = []
    for k in sd:
        if isinstance(k, str) and k.endswith(stem):
            prefix = k[: -len(stem)]
            if (prefix == "" or prefix.endswith(".")) and _has_trunk(sd, prefix, naming):
                found.append(prefix)
    return found


def _take(sd: Mapping, prefix: str, naming: str, label: str) -> tuple[dict[str, Any], list[str]]:
    """Split `sd` into the trunk under `prefix` (renamed to torchvision names) and the dropped keys."""
    rename = NAMINGS[naming]
    backbone: dict[str, Any] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        if isinstance(k, str) and k.startswith(prefix) and is_tensor(v):
            name = rename(k[len(prefix):])
            if name is not None:
                if name in backbone:
                    raise LayoutError(f"two keys map to the backbone tensor {name!r} (second: {label}{k})")
                backbone[name] = v
                continue
        dropped.append(f"{label}{k}")
    return backbone, dropped


def _apply_export_meta(ext: Extraction, obj: Any) -> Extraction:
    """VISSL and detectron2 files written by `convert` remember the source method in EXPORT_KEY."""
    meta = obj.get(EXPORT_KEY) if is_mapping(obj) else None
    if is_mapping(meta):
        if meta.get("method") in METHODS:
            ext.method = str(meta["method"])
        ext.normalize_input = bool(meta.get("normalize_input", True))
        ext.notes.append(f"written by vicreg-bench convert from a {meta.get('source_format', '?')} checkpoint")
        ext.dropped = [d for d in ext.dropped if d != EXPORT_KEY]
    return ext


# ----------------------------------------------------------------------------------------- rules


def _vicreg_bench(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    meta = export_meta(raw)
    if meta is None or not _has_trunk(raw.obj, ""):
        return None
    backbone, dropped = _take(raw.obj, "", "torchvision", "")
    method = str(meta.get("method", "torchvision"))
    return Extraction("vicreg_bench", method if method in METHODS else "torchvision", backbone, "", dropped,
                      export_notes(meta), normalize_input=bool(meta.get("normalize_input", True)))


def _vissl(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not is_mapping(obj) or "classy_state_dict" not in obj:
        return None
    kind = obj.get("type")
    if kind in ("shard_list", "shard", "slice_list", "slice"):
        raise LayoutError(f"a {kind!r} VISSL checkpoint; consolidate it first (VISSL's CheckpointFormatConverter)")
    node: Any = obj["classy_state_dict"]
    path = "classy_state_dict"
    for level in ("base_model", "model", "trunk"):
        if not is_mapping(node) or level not in node:
            raise LayoutError(f"a VISSL checkpoint without {path}.{level}; expected classy_state_dict.base_model.model.trunk")
        parent, node, path = node, node[level], f"{path}.{level}"
    trunk = node
    prefixes = [p for p in ("base_model._feature_blocks.", "_feature_blocks.") if _has_trunk(trunk, p)]
    if not prefixes:
        sample = ", ".join(list(map(str, trunk))[:4])
        raise LayoutError(f"the VISSL trunk holds no ResNet '_feature_blocks.' keys (found e.g. {sample}); only ResNet trunks are supported")
    prefix = prefixes[0]
    backbone, dropped = _take(trunk, prefix, "torchvision", f"{path}/")
    dropped += flatten_keys(parent.get("heads", {}), "classy_state_dict.base_model.model.heads/")
    dropped += [f"classy_state_dict/{k}" for k in obj["classy_state_dict"] if k != "base_model"]
    dropped += other_entries(obj, "classy_state_dict")
    notes = []
    if prefix.startswith("base_model."):
        notes.append("VISSL evaluation checkpoint: trunk under base_model._feature_blocks.")
    if "phase_idx" in obj:
        notes.append(f"VISSL phase_idx {obj.get('phase_idx')}, iteration {obj.get('iteration')}")
    return _apply_export_meta(Extraction("vissl", "vissl", backbone, f"{path}/{prefix}", dropped, notes), obj)


def _dino_full(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not is_mapping(obj) or not is_mapping(obj.get("teacher")):
        return None
    branches = {k: obj[k] for k in ("teacher", "student") if is_mapping(obj.get(k))}
    key = pick_branch(ctx.key, branches, "teacher", "DINO")
    sd = branches[key]
    prefixes = [p for p in ("module.backbone.", "backbone.") if _has_trunk(sd, p)]
    if not prefixes:
        sample = ", ".join(list(map(str, sd))[:4])
        raise LayoutError(f"the DINO {key!r} holds neither a ResNet nor a supported ViT backbone (keys e.g. {sample})")
    backbone, dropped = _take(sd, prefixes[0], "torchvision", f"{key}/")
    dropped += other_entries(obj, key)
    note = ("teacher network (what DINO evaluates); pass --key student for the student" if key == "teacher"
            else "student network (--key student); DINO evaluates the teacher")
    notes = [note]
    args = obj.get("args")
    if is_mapping(args) and "arch" in args:
        notes.append(f"DINO args: arch {args.get('arch')}, epochs {args.get('epochs')}")
    return Extraction("dino_full", "dino", backbone, f"{key}/{prefixes[0]}", dropped, notes, key=key,
                      strict_methods=frozenset({"dino"}))


_CAFFE2_NAME = re.compile(r"^(res\d+_\d+_branch|res_conv1_bn|conv1_w)")


def _detectron2(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not (is_mapping(obj) and is_mapping(obj.get("model")) and ("__author__" in obj or "matching_heuristics" in obj)):
        return None
    model = obj["model"]
    prefixes = trunk_prefixes(model, "detectron2")
    if not prefixes:
        if any(isinstance(k, str) and _CAFFE2_NAME.match(k) for k in model):
            raise LayoutError("Caffe2/Detectron1 parameter names (e.g. res2_0_branch2a_w) are not supported; "
                              "only detectron2-named ResNets (stem.conv1, res2.0.conv1, ...)")
        return None
    prefix = "" if "" in prefixes else prefixes[0]
    backbone, dropped = _take(model, prefix, "detectron2", "model/")
    dropped += other_entries(obj, "model")
    notes = [f"detectron2 names converted back to torchvision names (__author__: {obj.get('__author__')!r})"]
    return _apply_export_meta(Extraction("detectron2", "detectron2", backbone, f"model/{prefix}", dropped, notes), obj)


_PROJECTOR_BIAS = re.compile(r"^(module\.)?projector\.0\.bias$")  # the first Linear: biased in VICReg only


def _vicreg_barlow_full(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not is_mapping(obj) or not is_mapping(obj.get("model")):
        return None
    model = obj["model"]
    prefixes = [p for p in ("module.backbone.", "backbone.") if _has_trunk(model, p)]
    if not prefixes:
        return None
    outer = "module." if prefixes[0].startswith("module.") else ""
    vicreg = any(isinstance(k, str) and _PROJECTOR_BIAS.match(k) for k in model)
    barlow = f"{outer}bn.running_mean" in model
    found = "vicreg" if vicreg and not barlow else "barlowtwins" if barlow and not vicreg else None
    method = found
    if ctx.method in ("vicreg", "barlowtwins"):
        if found and found != ctx.method:
            marker = f"{outer}projector.0.bias" if found == "vicreg" else f"{outer}bn.running_mean"
            raise LayoutError(f"--method {ctx.method} does not fit: '{marker}' marks a {found} full checkpoint")
        method = ctx.method
    elif found is None:
        raise LayoutError(
            f"ambiguous layout: {{model: {prefixes[0]}*}} is a VICReg or a Barlow Twins full checkpoint, but neither "
            f"marker is present ('{outer}projector.0.bias': VICReg, '{outer}bn.running_mean': Barlow Twins); "
            "pass --method vicreg or --method barlowtwins"
        )
    backbone, dropped = _take(model, prefixes[0], "torchvision", "model/")
    dropped += other_entries(obj, "model")
    notes = [f"epoch {obj.get('epoch')}"] if "epoch" in obj else []
    return Extraction(f"{method}_full", str(method), backbone, f"model/{prefixes[0]}", dropped, notes,
                      strict_methods=frozenset({"vicreg", "barlowtwins"}))


def _state_dict_of(obj: Any) -> tuple[Mapping | None, str]:
    if is_mapping(obj) and is_mapping(obj.get("state_dict")):
        return obj["state_dict"], "state_dict/"
    if is_mapping(obj) and any(is_tensor(v) for v in obj.values()):
        return obj, ""
    return None, ""


def _two_encoders(raw: RawCheckpoint, ctx: Context, main: str, other: str, fmt: str, method: str, what: str) -> Extraction | None:
    sd, label = _state_dict_of(raw.obj)
    if sd is None:
        return None
    outer = next((o for o in ("module.", "") if _has_trunk(sd, f"{o}{main}.")), None)
    if outer is None:
        return None
    branches = {name: f"{outer}{name}." for name in (main, other) if _has_trunk(sd, f"{outer}{name}.")}
    key = pick_branch(ctx.key, branches, main, what)
    backbone, dropped = _take(sd, branches[key], "torchvision", label)
    if label:
        dropped += other_entries(raw.obj, "state_dict")
    notes = []
    if is_mapping(raw.obj) and isinstance(raw.obj.get("arch"), str):
        notes.append(f"arch recorded in the file: {raw.obj['arch']}")
    if fmt == "moco":
        if f"{outer}{main}.fc.0.weight" in sd:
            notes.append("MLP projection head fc.0/fc.2 (MoCo v2)")
        elif f"{outer}{main}.fc.weight" in sd:
            notes.append("linear projection head fc (MoCo v1); method name moco_v2 covers v1 and v2")
    if key != main:
        notes.append(f"{key}: the momentum encoder (default: {main})")
    return Extraction(fmt, method, backbone, f"{label}{branches[key]}", dropped, notes, key=key,
                      strict_methods=frozenset({method}))


def _moco(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    return _two_encoders(raw, ctx, "encoder_q", "encoder_k", "moco", "moco_v2", "MoCo")


def _moco_v3(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    return _two_encoders(raw, ctx, "base_encoder", "momentum_encoder", "moco_v3", "moco_v3", "MoCo v3")


def _swav(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    sd, label = _state_dict_of(raw.obj)
    if sd is None:
        return None
    for outer in ("module.", ""):
        heads = any(isinstance(k, str) and k.startswith((f"{outer}prototypes", f"{outer}projection_head.")) for k in sd)
        if heads and _has_trunk(sd, outer):
            backbone, dropped = _take(sd, outer, "torchvision", label)
            if label:
                dropped += other_entries(raw.obj, "state_dict")
            notes = ["SwAV-family layout (DeepCluster-v2 and SeLa-v2 releases share it)"]
            return Extraction("swav", "swav", backbone, f"{label}{outer}", dropped, notes, strict_methods=frozenset({"swav"}))
    return None


def _lightning(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not (is_mapping(obj) and is_mapping(obj.get("state_dict"))):
        return None
    if "pytorch-lightning_version" not in obj and not {"epoch", "global_step"} <= set(obj):
        return None
    sd = obj["state_dict"]
    branches: dict[str, tuple[str, str]] = {}
    for name in ("backbone", "momentum_backbone", "encoder", "momentum_encoder"):
        for naming in ("torchvision", "sequential"):
            if name not in branches and _has_trunk(sd, f"{name}.", naming):
                branches[name] = (f"{name}.", naming)
    if not branches:
        return None
    key = pick_branch(ctx.key, branches, "backbone" if "backbone" in branches else next(iter(branches)), "Lightning")
    prefix, naming = branches[key]
    backbone, dropped = _take(sd, prefix, naming, "state_dict/")
    dropped += other_entries(obj, "state_dict")
    notes = [f"PyTorch Lightning checkpoint (pytorch-lightning {obj.get('pytorch-lightning_version', '?')})"]
    if naming == "sequential":
        notes.append("nn.Sequential backbone (lightly style): child indices mapped to torchvision names")
    if key == "encoder":
        notes.append("old solo-learn layout (encoder.*)")
    return Extraction("lightning", "solo_learn", backbone, f"state_dict/{prefix}", dropped, notes, key=key)


def _simclr(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not (is_mapping(obj) and set(obj) == {"state_dict"} and is_mapping(obj["state_dict"])):
        return None
    sd = obj["state_dict"]
    if not (_has_trunk(sd, "") and is_tensor(sd.get("fc.weight"))):
        return None
    backbone, dropped = _take(sd, "", "torchvision", "state_dict/")
    notes = ["converted SimCLR (simclr-converter: {state_dict} only, with fc): expects inputs WITHOUT mean/std normalisation"]
    return Extraction("simclr_converted", "simclr", backbone, "state_dict/", dropped, notes, normalize_input=False)


def _byol(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    # byol-convert saves a plain dict: all parameters first, then all BN statistics, no counters.
    if type(obj) is not dict or not _has_trunk(obj, "") or not is_tensor(obj.get("fc.weight")):
        return None
    keys = [k for k in obj if isinstance(k, str)]
    if any(k.endswith("num_batches_tracked") for k in keys):
        return None
    stats = [i for i, k in enumerate(keys) if k.endswith(("running_mean", "running_var"))]
    params = [i for i, k in enumerate(keys) if not k.endswith(("running_mean", "running_var"))]
    if not stats or max(params) > min(stats):
        return None
    backbone, dropped = _take(obj, "", "torchvision", "")
    notes = ["converted BYOL (byol-convert key order: parameters, then BN statistics; no num_batches_tracked); "
             "BYOL trained with TF 'SAME' padding, which torchvision's padding approximates"]
    return Extraction("byol_converted", "byol", backbone, "", dropped, notes)


def _flat(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not is_mapping(obj) or not any(is_tensor(v) for v in obj.values()):
        return None
    for prefix in ("", "module."):
        if _has_trunk(obj, prefix):
            backbone, dropped = _take(obj, prefix, "torchvision", "")
            notes = []
            if prefix:
                notes.append("DataParallel 'module.' prefix removed")
            if is_tensor(obj.get(f"{prefix}fc.weight")):
                notes.append("classifier fc dropped")
            else:
                notes.append("backbone-only state dict (VICReg/Barlow Twins resnet50.pth and DINO's backbone release look "
                             "like this): pass --method to record which method trained it")
            if not any(k.endswith("num_batches_tracked") for k in backbone):
                notes.append("no num_batches_tracked (old torchvision weights, or converted from another framework)")
            return Extraction("torchvision", "torchvision", backbone, prefix, dropped, notes)
    if trunk_prefixes(obj, "detectron2") == [""]:
        backbone, dropped = _take(obj, "", "detectron2", "")
        return Extraction("detectron2", "detectron2", backbone, "", dropped, ["bare detectron2-named state dict"])
    return None


_WRAPPER_ENTRIES = ("state_dict", "model", "model_state_dict", "model_state", "net", "network", "params", "weights")


def _wrapped(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    for entry, sd in wrapped_state_dicts(raw.obj, _WRAPPER_ENTRIES):
        for prefix in ("", "module."):
            if _has_trunk(sd, prefix):
                backbone, dropped = _take(sd, prefix, "torchvision", f"{entry}/")
                dropped += other_entries(raw.obj, entry)
                timm = timm_training_checkpoint(raw.obj)
                notes = [f"torchvision names under {entry!r}" + (" (timm training checkpoint)" if timm else "")]
                return Extraction("torchvision_wrapped", "timm" if timm else "torchvision", backbone, f"{entry}/{prefix}", dropped, notes)
    return None


def _find_trunks(obj: Any, path: str = "", depth: int = 0) -> list[tuple[str, Mapping, str, str]]:
    """(entry path, mapping, prefix, naming) of every trunk in nested mappings."""
    found: list[tuple[str, Mapping, str, str]] = []
    if not is_mapping(obj) or depth > 4:
        return found
    for naming in NAMINGS:
        found += [(path, obj, p, naming) for p in trunk_prefixes(obj, naming)]
    for k, v in obj.items():
        if is_mapping(v):
            found += _find_trunks(v, f"{path}{k}/", depth + 1)
    return found


def _generic(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    trunks = _find_trunks(raw.obj)
    # A trunk nested in a longer prefix of another is the same tensors seen twice only if prefixes equal.
    labels = {f"{path}{prefix}": (path, sd, prefix, naming) for path, sd, prefix, naming in trunks}
    if not labels:
        return None
    if ctx.key is not None:
        matches = [lab for lab in labels if ctx.key in (lab, lab.rstrip("./"), lab.rstrip(".").rsplit("/", 1)[-1])]
        if len(matches) != 1:
            raise LayoutError(f"--key {ctx.key} does not fit: backbones found under {', '.join(labels)}")
        chosen = matches[0]
    elif len(labels) > 1:
        raise LayoutError(f"ambiguous layout: ResNet backbones under {', '.join(labels)}; choose one with --key")
    else:
        chosen = next(iter(labels))
    path, sd, prefix, naming = labels[chosen]
    backbone, dropped = _take(sd, prefix, naming, path)
    top = path.split("/", 1)[0]
    if top and is_mapping(raw.obj):
        dropped += other_entries(raw.obj, top)
    notes = [f"layout not recognised as a known release; backbone found under {chosen!r} "
             "(pass --method to record which method trained it)"]
    return Extraction("generic", "torchvision", backbone, chosen, dropped, notes, key=ctx.key and chosen)


RESNET_RULES: list[tuple[str, Callable[[RawCheckpoint, Context], Extraction | None]]] = [
    ("vicreg_bench", _vicreg_bench),
    ("vissl", _vissl),
    ("dino_full", _dino_full),
    ("detectron2", _detectron2),
    ("vicreg_full/barlowtwins_full", _vicreg_barlow_full),
    ("moco", _moco),
    ("moco_v3", _moco_v3),
    ("swav", _swav),
    ("lightning", _lightning),
    ("simclr_converted", _simclr),
    ("byol_converted", _byol),
    ("torchvision", _flat),
    ("torchvision_wrapped", _wrapped),
    ("generic", _generic),
]

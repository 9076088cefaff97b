"""ViT layout rules: which release wrote a ViT checkpoint, and where in it the backbone is.

Each rule follows the release's own saving code (read from the public repositories):

- DINO main_dino.py: `{student, teacher, optimizer, epoch, args, dino_loss[, fp16_scaler]}`; a ViT has no
  BatchNorm, so only the student is DDP-wrapped: `student/module.backbone.*`, `teacher/backbone.*`, heads
  `head.*` beside them. The backbone release (dino_deitsmall16_pretrain.pth) is the flat backbone.
- iBOT main_ibot.py: the same with `ibot_loss`, both networks DDP-wrapped (`module.backbone.*`), the
  student's backbone holding `masked_embed`; extract_backbone_weights.py writes `{state_dict: backbone}`
  (the checkpoint_teacher.pth releases).
- DINOv2: hub releases (dinov2_vits14[_reg4]_pretrain.pth) are the flat backbone with `mask_token` (and
  `register_tokens`); train.py's do_test writes eval/<iter>/teacher_checkpoint.pth = `{teacher:
  backbone.* + dino_head.* + ibot_head.*}`, blocks chunked by `block_chunks`.
- MAE main_pretrain.py (util/misc.py save_model): `{model, optimizer, epoch, scaler, args}`, model =
  encoder + `decoder_*` + `mask_token`; the mae_pretrain_vit_*.pth releases are `{model: encoder}`.
- MoCo v3 main_moco.py: `{epoch, arch, state_dict, optimizer, scaler}`, state_dict = DDP
  `module.base_encoder.*` (its `head.*` replaced by the projector MLP), `module.momentum_encoder.*`,
  `module.predictor.*`.
- timm: a flat `vit_*` state dict with `head.*`, or a training checkpoint with it under `state_dict`.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from vicreg_bench.checkpoints.extraction import (
    Context,
    Extraction,
    LayoutError,
    export_meta,
    export_notes,
    is_mapping,
    is_tensor,
    other_entries,
    pick_branch,
    timm_training_checkpoint,
    wrapped_state_dicts,
)
from vicreg_bench.checkpoints.info import METHODS
from vicreg_bench.checkpoints.readers import RawCheckpoint
from vicreg_bench.checkpoints.vit_names import has_vit, take_vit, vit_prefixes

_WRAPPER_ENTRIES = ("state_dict", "model", "model_ema", "state_dict_ema", "module", "net", "network", "weights")


def _vit(fmt: str, method: str, sd: Mapping, prefix: str, label: str, notes: list[str], **kwargs: Any) -> Extraction:
    backbone, dropped, rename_notes = take_vit(sd, prefix, label)
    return Extraction(fmt, method, backbone, f"{label}{prefix}", dropped, notes + rename_notes, family="vit", **kwargs)


def _args_note(obj: Mapping) -> list[str]:
    args = obj.get("args")
    arch = (args.get("arch") or args.get("model")) if is_mapping(args) else None  # MAE names it `model`
    return [f"training args: arch {arch}, epochs {args.get('epochs', '?')}"] if arch else []


# ----------------------------------------------------------------------------------------- rules


def _vicreg_bench(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    meta = export_meta(raw)
    if meta is None or not has_vit(raw.obj, ""):
        return None
    method = str(meta.get("method", "timm"))
    return _vit("vicreg_bench", method if method in METHODS else "timm", raw.obj, "", "", export_notes(meta),
                normalize_input=bool(meta.get("normalize_input", True)))


def _fsdp(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    model = raw.obj.get("model") if is_mapping(raw.obj) else None
    if is_mapping(model) and any(isinstance(k, str) and ("_fsdp_wrapped_module" in k or "flat_param" in k) for k in model):
        raise LayoutError("an FSDP training checkpoint holding one rank's shard (DINOv2 model_*.rank_N.pth); "
                          "use the eval/<iteration>/teacher_checkpoint.pth that DINOv2's training writes")
    return None


def _teacher_student(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    """DINO and iBOT full checkpoints, DINOv2 teacher_checkpoint.pth."""
    obj = raw.obj
    if not is_mapping(obj) or not is_mapping(obj.get("teacher")):
        return None
    branches = {k: obj[k] for k in ("teacher", "student") if is_mapping(obj.get(k))}
    if not any(has_vit(sd, p) for sd in branches.values() for p in ("module.backbone.", "backbone.")):
        return None
    teacher = branches["teacher"]
    if any(isinstance(k, str) and k.startswith(("dino_head.", "ibot_head.", "module.dino_head.")) for k in teacher):
        fmt, method, what = "dinov2_teacher", "dinov2", "DINOv2"
    elif "ibot_loss" in obj or any(isinstance(k, str) and k.endswith("backbone.masked_embed") for k in branches.get("student", {})):
        fmt, method, what = "ibot_full", "ibot", "iBOT"
    else:
        fmt, method, what = "dino_full", "dino", "DINO"
    key = pick_branch(ctx.key, branches, "teacher", what)
    sd = branches[key]
    prefix = next((p for p in ("module.backbone.", "backbone.") if has_vit(sd, p)), None)
    if prefix is None:
        raise LayoutError(f"the {what} {key!r} holds no ViT backbone under backbone. or module.backbone.")
    notes = ([f"teacher network (what {what} evaluates); pass --key student for the student"] if key == "teacher"
             else [f"student network (--key student); {what} evaluates the teacher"]) + _args_note(obj)
    ext = _vit(fmt, method, sd, prefix, f"{key}/", notes, key=key, strict_methods=frozenset({method}))
    ext.dropped += other_entries(obj, key)
    return ext


def _moco_v3(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    wrapped = is_mapping(obj) and is_mapping(obj.get("state_dict"))
    sd = obj["state_dict"] if wrapped else obj
    if not is_mapping(sd):
        return None
    outer = next((o for o in ("module.", "") if has_vit(sd, f"{o}base_encoder.")), None)
    if outer is None:
        return None
    branches = {n: f"{outer}{n}." for n in ("base_encoder", "momentum_encoder") if has_vit(sd, f"{outer}{n}.")}
    key = pick_branch(ctx.key, branches, "base_encoder", "MoCo v3")
    notes = [f"arch recorded in the file: {obj['arch']}"] if is_mapping(obj) and isinstance(obj.get("arch"), str) else []
    if key != "base_encoder":
        notes.append(f"{key}: the momentum encoder (default: base_encoder)")
    label = "state_dict/" if wrapped else ""
    ext = _vit("moco_v3", "moco_v3", sd, branches[key], label, notes, key=key, strict_methods=frozenset({"moco_v3"}))
    if wrapped:
        ext.dropped += other_entries(obj, "state_dict")
    return ext


def _mae(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not (is_mapping(obj) and is_mapping(obj.get("model")) and has_vit(obj["model"], "")):
        return None
    model = obj["model"]
    keys = [k for k in model if isinstance(k, str)]
    if any(k.startswith("decoder_") for k in keys):
        fmt, strict, notes = "mae", frozenset({"mae"}), ["MAE pretraining checkpoint: encoder kept, decoder dropped"]
    elif not any(k.startswith("head.") for k in keys) and "dist_token" not in model:
        fmt, strict = "mae_encoder", None
        notes = ["encoder under 'model', no head: MAE's mae_pretrain_vit_*.pth release layout (MoCo v3's "
                 "convert_to_deit.py writes the same: pass --method moco_v3 for those)"]
    else:
        return None
    ext = _vit(fmt, "mae", model, "", "model/", notes + _args_note(obj), strict_methods=strict)
    ext.dropped += other_entries(obj, "model")
    return ext


def _ibot_backbone(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not (is_mapping(obj) and set(obj) == {"state_dict"} and is_mapping(obj["state_dict"]) and has_vit(obj["state_dict"], "")):
        return None
    notes = ["{state_dict: backbone}: iBOT's extract_backbone_weights.py layout (checkpoint_teacher.pth / checkpoint_student.pth)"]
    return _vit("ibot_backbone", "ibot", obj["state_dict"], "", "state_dict/", notes)


def _dinov2(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not (is_mapping(obj) and has_vit(obj, "")):
        return None
    mask = obj.get("mask_token")
    if not ("register_tokens" in obj or (is_tensor(mask) and mask.ndim == 2)):
        return None
    notes = ["DINOv2 backbone release (hub dinov2_vit*14[_reg4]_pretrain.pth layout)"]
    return _vit("dinov2", "dinov2", obj, "", "", notes, strict_methods=frozenset({"dinov2"}))


def _timm_flat(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    obj = raw.obj
    if not is_mapping(obj):
        return None
    prefix = next((p for p in ("", "module.") if has_vit(obj, p)), None)
    if prefix is None:
        return None
    if any(isinstance(k, str) and k.startswith(f"{prefix}head.") for k in obj):
        notes = ["timm ViT state dict; classifier head dropped"]
    else:
        notes = ["backbone-only ViT state dict (DINO's dino_*_pretrain.pth release and timm's headless weights look "
                 "like this): pass --method to record which method trained it"]
    return _vit("timm_vit", "timm", obj, prefix, "", notes)


def _wrapped(raw: RawCheckpoint, ctx: Context) -> Extraction | None:
    for entry, sd in wrapped_state_dicts(raw.obj, _WRAPPER_ENTRIES):
        prefixes = vit_prefixes(sd)
        prefix = next((p for p in ("", "module.") if p in prefixes), None)
        if prefix is not None:
            timm = timm_training_checkpoint(raw.obj)
            notes = [f"timm-named ViT under {entry!r}" + (" (timm training checkpoint)" if timm else "")]
            ext = _vit("timm_vit_wrapped", "timm", sd, prefix, f"{entry}/", notes)
            ext.dropped += other_entries(raw.obj, entry)
            return ext
    return None


VIT_RULES: list[tuple[str, Callable[[RawCheckpoint, Context], Extraction | None]]] = [
    ("vicreg_bench", _vicreg_bench),
    ("fsdp", _fsdp),
    ("dino_full/ibot_full/dinov2_teacher", _teacher_student),
    ("moco_v3", _moco_v3),
    ("mae/mae_encoder", _mae),
    ("ibot_backbone", _ibot_backbone),
    ("dinov2", _dinov2),
    ("timm_vit", _timm_flat),
    ("timm_vit_wrapped", _wrapped),
]

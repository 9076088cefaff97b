"""ViT parameter names: where a ViT is in a checkpoint, and the releases' keys renamed to timm's.

DINO, iBOT, MAE and MoCo v3 build their ViTs from timm's module names (`cls_token`, `pos_embed`,
`patch_embed.proj`, `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}`, `norm`), so their
backbones need no renaming: only heads, decoders and mask tokens are dropped. DINOv2
(dinov2/models/vision_transformer.py and dinov2/layers/) differs in four ways, mapped as timm's own
DINOv2 conversion maps them:

- blocks chunked for FSDP (`block_chunks` > 0): `blocks.<chunk>.<i>.*` -> `blocks.<i>.*`;
- the SwiGLU FFN of ViT-g: `mlp.w12` / `mlp.w3` -> `mlp.fc1` / `mlp.fc2` (timm's SwiGLUPacked);
- registers: `register_tokens` -> `reg_token`. DINOv2 gives the CLS token a position embedding and the
  registers none; timm's register models (`no_embed_class`) give none to either, so
  `cls_token + pos_embed[:, 0]` becomes `cls_token` and `pos_embed[:, 1:]` the position embedding: the
  same float32 sum the DINOv2 forward computes, so features are unchanged;
- `mask_token` (masked image modelling, unused at inference) is dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Mapping

import torch

from vicreg_bench.checkpoints.extraction import LayoutError, is_tensor

_CHUNKED = re.compile(r"^blocks\.\d+\.(\d+)\.(.+)$")
_SWIGLU = re.compile(r"^(blocks\.\d+\.mlp\.)(w12|w3)\.(weight|bias)$")
_CONV_STEM = "patch_embed.proj.0.weight"

# key (or key prefix ending in '.' / '_') -> why it is not part of the backbone
_DROPPED = {
    "mask_token": "mask token (DINOv2 / MAE masked image modelling)",
    "masked_embed": "mask token (iBOT masked image modelling)",
    "decoder_": "MAE decoder",
    "head.": "head",
    "head_dist.": "head",
}


def has_vit(sd: Mapping, prefix: str = "") -> bool:
    """True when `sd` holds a ViT's class token, position embedding and patch embedding under `prefix`."""
    patch = is_tensor(sd.get(prefix + "patch_embed.proj.weight")) or is_tensor(sd.get(prefix + _CONV_STEM))
    return patch and is_tensor(sd.get(prefix + "cls_token")) and is_tensor(sd.get(prefix + "pos_embed"))


def vit_prefixes(sd: Mapping) -> list[str]:
    """Every prefix under which `sd` holds a ViT."""
    found = []
    for k in sd:
        if isinstance(k, str) and k.endswith("cls_token"):
            prefix = k[: -len("cls_token")]
            if (prefix == "" or prefix.endswith(".")) and has_vit(sd, prefix):
                found.append(prefix)
    return found


def _timm_name(name: str) -> tuple[str | None, str | None]:
    """(timm name, None) for a backbone tensor, or (None, reason) for one that is not part of it."""
    for start, reason in _DROPPED.items():
        if name == start or (start[-1] in "._" and name.startswith(start)):
            return None, reason
    if name == "register_tokens":
        return "reg_token", None
    m = _CHUNKED.match(name)
    if m:
        name = f"blocks.{m[1]}.{m[2]}"
    m = _SWIGLU.match(name)
    if m:
        name = f"{m[1]}{'fc1' if m[2] == 'w12' else 'fc2'}.{m[3]}"
    return name, None


def _fold_registers(backbone: dict[str, Any]) -> None:
    """DINOv2 register layout -> timm's no_embed_class layout (see the module docstring)."""
    cls, pos = torch.as_tensor(backbone["cls_token"]), torch.as_tensor(backbone["pos_embed"])
    if pos.ndim != 3 or cls.ndim != 3 or pos.shape[1] < 2:
        raise LayoutError(f"cls_token {tuple(cls.shape)} / pos_embed {tuple(pos.shape)}: expected (1, 1, D) / (1, 1 + N, D)")
    backbone["cls_token"] = cls.float() + pos[:, :1].float()
    backbone["pos_embed"] = pos[:, 1:]


def take_vit(sd: Mapping, prefix: str, label: str) -> tuple[dict[str, Any], list[str], list[str]]:
    """Split `sd` into the ViT under `prefix` (timm names) and the dropped keys; also notes on what was done."""
    if is_tensor(sd.get(prefix + _CONV_STEM)):
        raise LayoutError(f"the ViT under {label}{prefix or '(top level)'} has a convolutional patch stem "
                          f"({prefix}{_CONV_STEM}: MoCo v3's vit_conv_*), which timm's ViT cannot hold; not supported")
    backbone: dict[str, Any] = {}
    dropped: list[str] = []
    reasons: Counter[str] = Counter()
    for k, v in sd.items():
        if isinstance(k, str) and k.startswith(prefix) and is_tensor(v):
            name, reason = _timm_name(k[len(prefix):])
            if name is not None:
                if name in backbone:
                    raise LayoutError(f"two keys map to the backbone tensor {name!r} (second: {label}{k})")
                backbone[name] = v
                continue
            reasons[reason] += 1
        dropped.append(f"{label}{k}")
    notes = [f"dropped {n} {reason} key{'s' * (n > 1)}" for reason, n in reasons.items()]
    names = [k[len(prefix):] for k in sd if isinstance(k, str) and k.startswith(prefix)]
    if any(_CHUNKED.match(n) for n in names):
        notes.append("block-chunked keys (blocks.<chunk>.<i>.*, DINOv2 block_chunks) flattened to blocks.<i>.*")
    if any(_SWIGLU.match(_CHUNKED.sub(r"blocks.\1.\2", n)) for n in names):
        notes.append("SwiGLU FFN mlp.w12 / mlp.w3 renamed to timm's mlp.fc1 / mlp.fc2")
    if any(n == "register_tokens" for n in names):  # DINOv2's layout; timm's own `reg_token` files are already folded
        _fold_registers(backbone)
        notes.append("register_tokens -> reg_token; cls_token + pos_embed[:, 0] folded into cls_token and "
                     "pos_embed[:, 1:] kept, as timm's register models (no_embed_class) expect")
    return backbone, dropped, notes

"""The timm architecture name of a timm-named ViT state dict, from its shapes.

Shapes give the width, depth, patch size, position grid, register count, layer scale and FFN kind;
they map to timm's names: `vit_{small,base,large,huge}_patch{8,14,16}_224` for DINO, iBOT, MAE, MoCo v3
and timm weights, `vit_{small,base,large,giant}_patch14[_reg4]_dinov2` for DINOv2 (layer scale, and
SwiGLU for ViT-g). What differs from that model's defaults becomes an override in the arch string
(see `vicreg_bench.models.parse_vit_arch`), e.g. a 224-pixel DINOv2 training grid, or a tiny test model.

Shapes cannot tell the number of attention heads. Standard widths take timm's (S 6, B 12, L 16, H 16,
g 24), except MoCo v3, whose ViT-S has 12 heads (moco-v3 vits.py); other widths take width // 64
(1 when the width is not a multiple of 64).
Functions raise ValueError with a readable message; the loader prefixes the file name.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Mapping

import torch

from vicreg_bench.models import build_vit, format_vit_arch

# width -> (timm size name, heads) of the standard sizes
_SIZES = {192: ("tiny", 3), 384: ("small", 6), 768: ("base", 12), 1024: ("large", 16), 1280: ("huge", 16), 1536: ("giant", 24)}
_MOCO_V3_HEADS = {384: 12}  # moco-v3 vits.py: vit_small has num_heads=12 (timm's ViT-S has 6)
_GIANT_MLP_RATIO = 2.66667 * 2  # timm's vit_giant_patch14_dinov2; every other base name has 4.0
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def _shape(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ValueError(f"no {key!r} in the ViT backbone")
    return tuple(int(s) for s in sd[key].shape)


@functools.lru_cache(maxsize=None)
def _defaults(name: str) -> dict[str, Any]:
    """embed_dim, depth, num_heads, patch_size, img_size and FFN width of timm model `name`."""
    with torch.device("meta"):
        model = build_vit(name)
    return {
        "embed_dim": int(model.embed_dim), "depth": len(model.blocks), "num_heads": int(model.blocks[0].attn.num_heads),
        "patch_size": int(model.patch_embed.patch_size[0]), "img_size": int(model.patch_embed.img_size[0]),
        "hidden": int(model.blocks[0].mlp.fc1.out_features),
    }


def _timm_exists(name: str) -> bool:
    import timm

    return bool(timm.is_model(name))


def _base_name(width: int, patch: int, img: int, dinov2: bool, registers: int, swiglu: bool) -> str:
    size = _SIZES.get(width, ("small",))[0]
    if dinov2:
        size = "giant" if swiglu else ("small" if size in ("tiny", "huge", "giant") else size)
        return f"vit_{size}_patch14{f'_reg{registers}' if registers else ''}_dinov2"
    for name in (f"vit_{size}_patch{patch}_{img}", f"vit_{size}_patch{patch}_224", f"vit_{size}_patch16_224"):
        if _timm_exists(name):
            return name
    return "vit_small_patch16_224"


def infer_vit_arch(sd: Mapping[str, Any], method: str | None = None) -> str:
    """Arch string (timm name plus overrides) whose model holds exactly these tensors."""
    width = _shape(sd, "cls_token")[-1]
    patch_shape = _shape(sd, "patch_embed.proj.weight")
    if len(patch_shape) != 4 or patch_shape[1] != 3 or patch_shape[2] != patch_shape[3]:
        raise ValueError(f"'patch_embed.proj.weight' has shape {patch_shape}; expected (D, 3, p, p) of an RGB square-patch ViT")
    patch = patch_shape[2]
    depth = 1 + max((int(m[1]) for k in sd if (m := _BLOCK.match(k))), default=-1)
    if depth == 0:
        raise ValueError("no transformer blocks ('blocks.0.*') in the ViT backbone")
    if "fc_norm.weight" in sd and "norm.weight" not in sd:
        raise ValueError("fc_norm without a final norm: a ViT trained on average-pooled tokens (timm global_pool='avg', "
                         "MAE fine-tuning); only CLS-token ViTs are supported")
    registers = _shape(sd, "reg_token")[1] if "reg_token" in sd else 0
    dinov2 = "blocks.0.ls1.gamma" in sd
    if registers and (not dinov2 or registers != 4):
        raise ValueError(f"{registers} register tokens{'' if dinov2 else ' without layer scale'}: timm has register "
                         "ViTs only for DINOv2 with 4 registers")
    fc1, fc2 = _shape(sd, "blocks.0.mlp.fc1.weight"), _shape(sd, "blocks.0.mlp.fc2.weight")
    swiglu = fc1[0] == 2 * fc2[1]
    if swiglu and not dinov2:
        raise ValueError("a SwiGLU FFN without layer scale: only DINOv2's ViT-g has one")
    tokens = _shape(sd, "pos_embed")[1] - (0 if registers else 1)  # timm's register models: no CLS position
    grid = math.isqrt(max(tokens, 0))
    if grid * grid != tokens or grid == 0:
        raise ValueError(f"'pos_embed' holds {tokens} patch positions, not a square grid")
    name = _base_name(width, patch, grid * patch, dinov2, registers, swiglu)
    default = _defaults(name)
    standard = _SIZES.get(width)
    heads = (_MOCO_V3_HEADS.get(width) if method == "moco_v3" else None) or (
        standard[1] if standard else (width // 64 if width % 64 == 0 else 1))
    wanted = {"embed_dim": width, "depth": depth, "num_heads": heads, "patch_size": patch, "img_size": grid * patch}
    overrides = {k: v for k, v in wanted.items() if v != default[k]}
    default_hidden = default["hidden"] if width == default["embed_dim"] else int(width * (_GIANT_MLP_RATIO if swiglu else 4.0))
    if fc1[0] != default_hidden:
        ratio = fc1[0] / width
        overrides["mlp_ratio"] = ratio if int(width * ratio) == fc1[0] else (fc1[0] + 0.5) / width
    return format_vit_arch(name, overrides)

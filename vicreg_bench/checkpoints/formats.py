"""Layout detection: which release wrote a checkpoint, and where in it the backbone is.

The ViT rules (vit_layouts) and then the ResNet rules (resnet_layouts) are tried in order; the first
that recognises the file decides. The two families are told apart by their tensors (a ViT's
`cls_token` + `patch_embed.proj.weight`, a ResNet's `conv1.weight` + `layer1.0.conv1.weight`), so the
ViT rules never claim a ResNet file and the ResNet rules keep their order from specific to generic.

`EXPORT_KEY` / `EXPORT_VERSION` are re-exported here for the exporters that import them from this module.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from vicreg_bench.checkpoints.extraction import (  # noqa: F401  (EXPORT_* re-exported)
    EXPORT_KEY,
    EXPORT_VERSION,
    Context,
    Extraction,
    LayoutError,
    is_mapping,
    is_tensor,
)
from vicreg_bench.checkpoints.info import FORMATS, METHODS
from vicreg_bench.checkpoints.readers import RawCheckpoint
from vicreg_bench.checkpoints.resnet_layouts import RESNET_RULES
from vicreg_bench.checkpoints.safe_pickle import ForeignObject, is_foreign
from vicreg_bench.checkpoints.vit_layouts import VIT_RULES

KEYED_LAYOUTS = ("DINO (teacher, student), iBOT (teacher, student), MoCo (encoder_q, encoder_k), MoCo v3 (base_encoder, momentum_encoder), "
                 "Lightning (backbone, momentum_backbone)")

RULES: list[tuple[str, Callable[[RawCheckpoint, Context], Extraction | None]]] = VIT_RULES + RESNET_RULES


def _tensor_key_sample(obj: Any, path: str = "", limit: int = 5) -> list[str]:
    out: list[str] = []
    if is_mapping(obj):
        for k, v in obj.items():
            if len(out) >= limit:
                break
            if is_tensor(v):
                out.append(f"{path}{k} {tuple(v.shape)}")
            elif is_mapping(v):
                out += _tensor_key_sample(v, f"{path}{k}/", limit - len(out))
    return out


def _describe_unknown(obj: Any, method: str | None) -> str:
    if is_foreign(obj) or isinstance(obj, ForeignObject):
        name = getattr(obj, "_foreign_name", "?")
        return (f"the file holds a whole pickled object of class {name}, not a state dict; "
                "load it with its own code and save model.state_dict()")
    if isinstance(obj, torch.Tensor):
        return f"the file holds a single tensor {tuple(obj.shape)}, not a state dict"
    if not is_mapping(obj):
        return f"the file holds a {type(obj).__name__}, not a state dict (a mapping of names to tensors)"
    top = [str(k) for k in obj][:10]
    more = f" (+{len(obj) - 10} more)" if len(obj) > 10 else ""
    sample = _tensor_key_sample(obj)
    wanted = f"--method {method} was given, but no " if method else "no "
    return (f"unknown layout: {wanted}ResNet or ViT backbone found. Top-level keys: {', '.join(top) or '(none)'}{more}. "
            f"Tensor keys e.g.: {'; '.join(sample) or '(no tensors)'}. Supported layouts: see docs/checkpoints.md "
            f"or `vicreg-bench inspect --help`; if it is one of them, pass --method ({', '.join(METHODS)})")


def detect_layout(raw: RawCheckpoint, method: str | None = None, key: str | None = None) -> Extraction:
    """Apply the rules in order; the first that recognises the file decides. Raises LayoutError."""
    if method is not None and method not in METHODS:
        raise LayoutError(f"--method {method!r} is not a known method; expected one of {', '.join(METHODS)}")
    ctx = Context(method, key)
    for _name, rule in RULES:
        ext = rule(raw, ctx)
        if ext is None:
            continue
        if key is not None and ext.key is None:
            raise LayoutError(f"--key {key} does not fit: a {ext.format} checkpoint holds a single backbone "
                              f"(--key applies to {KEYED_LAYOUTS})")
        if method is not None and method != ext.method:
            if ext.strict_methods is not None and method not in ext.strict_methods:
                raise LayoutError(f"--method {method} does not fit: the file is a {ext.format} checkpoint "
                                  f"({FORMATS[ext.format]}), written by {ext.method}")
            ext.notes.append(f"method set by --method (layout alone suggests {ext.method})")
            ext.method = method
            ext.normalize_input = method != "simclr"
        return ext
    raise LayoutError(_describe_unknown(raw.obj, method))

"""ViT checkpoints in the exact layouts the releases' own code writes, built from random timm models.

Each builder takes a random timm ViT's tensors (timm names) and lays them out as its release does (read
from the public repositories, see vicreg_bench/checkpoints/vit_layouts.py): the same top-level
entries, prefixes, heads, decoders, mask tokens, block chunks and extra Python objects. Widths and depths
are tiny (embed_dim 128, depth 2, 2 heads); key names, nesting and position grids are the real ones.

`VIT_RELEASES` lists every layout with what loading it must give; `vit_release_files` writes each once
per session.
"""

from __future__ import annotations

import argparse
import functools
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import timm
import torch
import torch.nn as nn

from checkpoint_factories import _module_state, _mocov3_mlp, _prefixed, _sgd_state

TINY = {"embed_dim": 128, "depth": 2, "num_heads": 2}
TINY_ARCH = "embed_dim=128,depth=2,num_heads=2"
SWIGLU_RATIO = 5.375  # DINOv2 SwiGLUFFNFused hidden for dim 128: (int(4 * 128 * 2 / 3) + 7) // 8 * 8 = 344; fc1 = 2 x 344


@functools.lru_cache(maxsize=16)
def _random_vit(name: str, seed: int, items: tuple) -> "OrderedDict[str, torch.Tensor]":
    kwargs = dict(items)
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False, **kwargs)
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(v.shape, generator=g)) for k, v in model.state_dict().items())


def timm_vit(name: str = "vit_small_patch16_224", seed: int = 0, **kwargs: Any) -> "OrderedDict[str, torch.Tensor]":
    """Random tensors of a timm ViT (num_classes 0 unless given), every tensor different."""
    kwargs = {**TINY, "num_classes": 0, **kwargs}
    return OrderedDict(_random_vit(name, seed, tuple(sorted(kwargs.items()))))


def _dino_head(in_dim: int, seed: int, hidden: int = 32, bottleneck: int = 16, out_dim: int = 64) -> "OrderedDict[str, torch.Tensor]":
    """DINOHead (dino vision_transformer.py): mlp Linear/GELU x3 -> mlp.0/2/4, weight-normed last_layer."""
    sd = _module_state(nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                     nn.Linear(hidden, bottleneck)), "mlp.", seed)
    sd["last_layer.weight_g"] = torch.ones(out_dim, 1)
    sd["last_layer.weight_v"] = torch.randn(out_dim, bottleneck)
    return sd


def _args(**kwargs: Any) -> argparse.Namespace:
    base = dict(arch="vit_small", patch_size=16, out_dim=64, norm_last_layer=True, momentum_teacher=0.996, use_fp16=True,
                weight_decay=0.04, weight_decay_end=0.4, clip_grad=3.0, batch_size_per_gpu=64, epochs=100, lr=0.0005,
                warmup_epochs=10, min_lr=1e-6, optimizer="adamw", drop_path_rate=0.1, global_crops_scale=(0.4, 1.0),
                local_crops_number=8, data_path="/path/to/imagenet/train", output_dir=".", seed=0, world_size=8)
    return argparse.Namespace(**{**base, **kwargs})


# ---------------------------------------------------------------------------------------- layouts


def dino_backbone(vit: dict) -> dict:
    """dino_deitsmall16_pretrain.pth: the teacher backbone's state dict (no head: DINO's ViT head is Identity)."""
    return OrderedDict(vit)


def dino_full(vit: dict, student: dict) -> dict:
    """main_dino.py save_dict; a ViT has no BatchNorm, so only the student is DDP-wrapped."""
    d = vit["cls_token"].shape[-1]
    s = _prefixed(student, "module.backbone.")
    s.update(_prefixed(_dino_head(d, 1), "module.head."))
    t = _prefixed(vit, "backbone.")
    t.update(_prefixed(_dino_head(d, 0), "head."))
    return {"student": s, "teacher": t, "optimizer": _sgd_state(4, numpy_schedules=True), "epoch": 100, "args": _args(),
            "dino_loss": OrderedDict(center=torch.randn(1, 64)), "fp16_scaler": {"scale": 1024.0, "_growth_tracker": 3}}


def _ibot_head(in_dim: int, seed: int) -> "OrderedDict[str, torch.Tensor]":
    """iBOTHead (ibot models/head.py), shared_head False: the DINOHead part plus last_layer2 for patch tokens."""
    sd = _dino_head(in_dim, seed)
    sd["last_layer2.weight_g"] = torch.ones(48, 1)
    sd["last_layer2.weight_v"] = torch.randn(48, 16)
    return sd


def ibot_full(vit: dict, student: dict) -> dict:
    """main_ibot.py save_dict: both networks DDP-wrapped; the student backbone holds masked_embed."""
    d = vit["cls_token"].shape[-1]
    s = _prefixed(student, "module.backbone.")
    s["module.backbone.masked_embed"] = torch.randn(1, d)
    s.update(_prefixed(_ibot_head(d, 1), "module.head."))
    t = _prefixed(vit, "module.backbone.")
    t.update(_prefixed(_ibot_head(d, 0), "module.head."))
    return {"student": s, "teacher": t, "optimizer": _sgd_state(4, numpy_schedules=True), "epoch": 800,
            "args": _args(patch_out_dim=48, shared_head=False), "fp16_scaler": {"scale": 1024.0},
            "ibot_loss": OrderedDict(center=torch.randn(1, 64), center2=torch.randn(1, 1, 48))}


def ibot_backbone(vit: dict) -> dict:
    """extract_backbone_weights.py --checkpoint_key teacher: {state_dict: backbone keys, prefix removed}."""
    return {"state_dict": OrderedDict(vit)}


def _dinov2_layout(vit: dict, registers: int, swiglu: bool, chunks: int = 0, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """DinoVisionTransformer.state_dict(): own parameters first (cls_token, pos_embed, register_tokens,
    mask_token), then patch_embed, blocks (BlockChunk: blocks.<chunk>.<i>), norm."""
    g = torch.Generator().manual_seed(seed + 100)
    d = vit["cls_token"].shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in vit if k.startswith("blocks."))
    out = OrderedDict(cls_token=vit["cls_token"], pos_embed=vit["pos_embed"])
    if registers:
        out["register_tokens"] = torch.randn(1, registers, d, generator=g)
    out["mask_token"] = torch.randn(1, d, generator=g)
    for k, v in vit.items():
        if k in ("cls_token", "pos_embed"):
            continue
        if k.startswith("blocks."):
            _, i, rest = k.split(".", 2)
            if swiglu:
                rest = rest.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.")
            k = f"blocks.{int(i) // (depth // chunks)}.{i}.{rest}" if chunks else f"blocks.{i}.{rest}"
        out[k] = v
    return out


def dinov2_release(vit: dict, registers: int = 0, swiglu: bool = False) -> dict:
    """hub dinov2_vit*14[_reg4]_pretrain.pth: the backbone state dict, block_chunks=0."""
    return _dinov2_layout(vit, registers, swiglu)


def dinov2_teacher(vit: dict, registers: int = 0, swiglu: bool = False) -> dict:
    """train.py do_test: {"teacher": SSLMetaArch.teacher.state_dict()} = backbone (block_chunks 2 here) + heads."""
    d = vit["cls_token"].shape[-1]
    teacher = _prefixed(_dinov2_layout(vit, registers, swiglu, chunks=2), "backbone.")
    teacher.update(_prefixed(_dino_head(d, 0), "dino_head."))
    teacher.update(_prefixed(_dino_head(d, 1, out_dim=48), "ibot_head."))
    return {"teacher": teacher}


def mae_full(vit: dict) -> dict:
    """main_pretrain.py / util/misc.py save_model: model = MaskedAutoencoderViT.state_dict() (own parameters
    cls_token, pos_embed, mask_token, decoder_pos_embed; then patch_embed, blocks, norm, decoder_embed,
    decoder_blocks, decoder_norm, decoder_pred)."""
    d, dd, tokens = vit["cls_token"].shape[-1], 64, vit["pos_embed"].shape[1]
    dec = timm_vit("vit_small_patch16_224", seed=7, embed_dim=dd, depth=1, num_heads=1)
    model = OrderedDict(cls_token=vit["cls_token"], pos_embed=vit["pos_embed"], mask_token=torch.randn(1, 1, dd),
                        decoder_pos_embed=torch.randn(1, tokens, dd))
    model.update((k, v) for k, v in vit.items() if k not in model)
    model.update(_module_state(nn.Linear(d, dd), "decoder_embed.", 3))
    model.update((f"decoder_{k}", v) for k, v in dec.items() if k.startswith("blocks."))
    model.update(_module_state(nn.LayerNorm(dd), "decoder_norm.", 4))
    model.update(_module_state(nn.Linear(dd, 16 * 16 * 3), "decoder_pred.", 5))
    return {"model": model, "optimizer": _sgd_state(4), "epoch": 799, "scaler": {"scale": 65536.0},
            "args": argparse.Namespace(batch_size=64, epochs=800, accum_iter=1, model="mae_vit_base_patch16", input_size=224,
                                       mask_ratio=0.75, norm_pix_loss=True, weight_decay=0.05, blr=1.5e-4, warmup_epochs=40,
                                       data_path="/datasets01/imagenet_full_size/061417/", output_dir="./output_dir")}


def mae_release(vit: dict) -> dict:
    """mae_pretrain_vit_base.pth: {model: encoder}, decoder removed (also what MoCo v3's convert_to_deit.py writes)."""
    return {"model": OrderedDict(vit)}


def moco_v3(vit: dict, momentum: dict, arch: str = "vit_small") -> dict:
    """main_moco.py: {epoch, arch, state_dict, optimizer, scaler}; MoCo_ViT replaces each encoder's head with
    a 3-layer projector MLP and adds a 2-layer predictor; DDP -> module."""
    d = vit["cls_token"].shape[-1]
    sd: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name, tensors, seed in (("base_encoder", vit, 0), ("momentum_encoder", momentum, 1)):
        sd.update(_prefixed(tensors, f"module.{name}."))
        sd.update(_module_state(_mocov3_mlp(3, d, 64, 32), f"module.{name}.head.", seed))
    sd.update(_module_state(_mocov3_mlp(2, 32, 64, 32, last_bn=False), "module.predictor.", 2))
    return {"epoch": 300, "arch": arch, "state_dict": sd, "optimizer": _sgd_state(4), "scaler": {"scale": 65536.0}}


def timm_with_head(vit: dict) -> dict:
    """A timm vit_* model's state_dict(), classifier head included."""
    return OrderedDict(vit)


def timm_train(vit: dict) -> dict:
    """timm train.py CheckpointSaver: {epoch, arch, state_dict, optimizer, version, args, metric}."""
    return {"epoch": 299, "arch": "vit_small_patch16_224", "state_dict": OrderedDict(vit), "optimizer": _sgd_state(2),
            "version": 2, "args": _args(model="vit_small_patch16_224"), "metric": 79.9}


# ------------------------------------------------------------------------------------ the table


@dataclass
class VitRelease:
    """A release layout, the timm model its tensors came from, and what `load_backbone` must report."""

    build: Callable[[], Any]
    filename: str
    timm_name: str  # reference model: timm.create_model(timm_name, **timm_kwargs)
    timm_kwargs: dict
    expected: Callable[[], dict]  # timm-named backbone tensors load_backbone must return
    format: str
    method: str
    arch: str
    dropped: tuple[str, ...] = ()  # keys that must be in info.dropped_keys
    key: str | None = None


def _no_head(sd: dict) -> dict:
    return OrderedDict((k, v) for k, v in sd.items() if not k.startswith("head."))


def _timm_converted(layout: dict, name: str, kwargs: dict) -> dict:
    """What timm's own DINOv2 conversion (checkpoint_filter_fn) makes of a release layout: the reference."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    with torch.device("meta"):
        model = timm.create_model(name, num_classes=0, **kwargs)
    return checkpoint_filter_fn(OrderedDict(layout), model)


def _lazy(fn, *args, **kwargs):
    return lambda: fn(*(a() if callable(a) else a for a in args), **kwargs)


_S16, _S8 = "vit_small_patch16_224", "vit_small_patch8_224"
_D2, _D2R, _D2G = "vit_small_patch14_dinov2", "vit_small_patch14_reg4_dinov2", "vit_giant_patch14_dinov2"
_vit16 = functools.partial(timm_vit, _S16, 0)
_student16 = functools.partial(timm_vit, _S16, 1)
_d2 = functools.partial(timm_vit, _D2, 0)
_d2_224 = functools.partial(timm_vit, _D2, 0, img_size=224)
_d2g = functools.partial(timm_vit, _D2G, 0, mlp_ratio=SWIGLU_RATIO)
_timm_head = functools.partial(timm_vit, _S16, 0, num_classes=10)

VIT_RELEASES: dict[str, VitRelease] = {
    "dino_vits16": VitRelease(_lazy(dino_backbone, _vit16), "dino_deitsmall16_pretrain.pth", _S16, TINY,
                              lambda: _vit16(), "timm_vit", "timm", f"{_S16}:{TINY_ARCH}"),
    "dino_vits8": VitRelease(_lazy(dino_backbone, functools.partial(timm_vit, _S8, 0)), "dino_deitsmall8_pretrain.pth", _S8, TINY,
                             lambda: timm_vit(_S8, 0), "timm_vit", "timm", f"{_S8}:{TINY_ARCH}"),
    "dino_full": VitRelease(_lazy(dino_full, _vit16, _student16), "checkpoint.pth", _S16, TINY, lambda: _vit16(),
                            "dino_full", "dino", f"{_S16}:{TINY_ARCH}",
                            dropped=("teacher/head.mlp.0.weight", "student", "dino_loss", "args"), key="teacher"),
    "ibot_full": VitRelease(_lazy(ibot_full, _vit16, _student16), "checkpoint.pth", _S16, TINY, lambda: _vit16(),
                            "ibot_full", "ibot", f"{_S16}:{TINY_ARCH}",
                            dropped=("teacher/module.head.last_layer2.weight_v", "student", "ibot_loss"), key="teacher"),
    "ibot_backbone": VitRelease(_lazy(ibot_backbone, _vit16), "checkpoint_teacher.pth", _S16, TINY, lambda: _vit16(),
                                "ibot_backbone", "ibot", f"{_S16}:{TINY_ARCH}"),
    "dinov2": VitRelease(_lazy(dinov2_release, _d2), "dinov2_vits14_pretrain.pth", _D2, TINY,
                         lambda: _timm_converted(dinov2_release(_d2()), _D2, TINY), "dinov2", "dinov2",
                         f"{_D2}:{TINY_ARCH}", dropped=("mask_token",)),
    "dinov2_reg4": VitRelease(_lazy(dinov2_release, _d2, registers=4), "dinov2_vits14_reg4_pretrain.pth", _D2R, TINY,
                              lambda: _timm_converted(dinov2_release(_d2(), registers=4), _D2R, TINY), "dinov2", "dinov2",
                              f"{_D2R}:{TINY_ARCH}", dropped=("mask_token",)),
    "dinov2_giant": VitRelease(_lazy(dinov2_release, _d2g, swiglu=True), "dinov2_vitg14_pretrain.pth", _D2G,
                               dict(TINY, mlp_ratio=SWIGLU_RATIO),
                               lambda: _timm_converted(dinov2_release(_d2g(), swiglu=True), _D2G, dict(TINY, mlp_ratio=SWIGLU_RATIO)),
                               "dinov2", "dinov2", f"{_D2G}:{TINY_ARCH},mlp_ratio={SWIGLU_RATIO}", dropped=("mask_token",)),
    "dinov2_teacher": VitRelease(_lazy(dinov2_teacher, _d2_224, registers=4), "teacher_checkpoint.pth", _D2R,
                                 dict(TINY, img_size=224),
                                 lambda: _timm_converted(dinov2_release(_d2_224(), registers=4), _D2R, dict(TINY, img_size=224)),
                                 "dinov2_teacher", "dinov2", f"{_D2R}:{TINY_ARCH},img_size=224",
                                 dropped=("teacher/backbone.mask_token", "teacher/dino_head.mlp.0.weight", "teacher/ibot_head.last_layer.weight_v"),
                                 key="teacher"),
    "mae_full": VitRelease(_lazy(mae_full, _vit16), "checkpoint-799.pth", _S16, TINY, lambda: _vit16(), "mae", "mae",
                           f"{_S16}:{TINY_ARCH}", dropped=("model/decoder_pred.weight", "model/mask_token", "optimizer", "args")),
    "mae_release": VitRelease(_lazy(mae_release, _vit16), "mae_pretrain_vit_base.pth", _S16, TINY, lambda: _vit16(),
                              "mae_encoder", "mae", f"{_S16}:{TINY_ARCH}"),
    "moco_v3": VitRelease(_lazy(moco_v3, _vit16, _student16), "checkpoint_0299.pth.tar", _S16, TINY, lambda: _vit16(),
                          "moco_v3", "moco_v3", f"{_S16}:{TINY_ARCH}", key="base_encoder",
                          dropped=("state_dict/module.base_encoder.head.0.weight", "state_dict/module.momentum_encoder.cls_token",
                                   "state_dict/module.predictor.0.weight", "optimizer", "arch")),
    "timm": VitRelease(_lazy(timm_with_head, _timm_head), "vit_small_patch16_224.bin", _S16, TINY, lambda: _no_head(_timm_head()),
                       "timm_vit", "timm", f"{_S16}:{TINY_ARCH}", dropped=("head.weight", "head.bias")),
    "timm_train": VitRelease(_lazy(timm_train, _timm_head), "model_best.pth.tar", _S16, TINY, lambda: _no_head(_timm_head()),
                             "timm_vit_wrapped", "timm", f"{_S16}:{TINY_ARCH}", dropped=("state_dict/head.weight", "optimizer")),
}


class VitReleaseFiles:
    """Each release checkpoint written once per test session; tests must not modify the files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self._paths:
            release = VIT_RELEASES[name]
            folder = self.root / name
            folder.mkdir()
            torch.save(release.build(), folder / release.filename)
            self._paths[name] = folder / release.filename
        return self._paths[name]


@pytest.fixture(scope="session")
def vit_release_files(tmp_path_factory) -> VitReleaseFiles:
    return VitReleaseFiles(tmp_path_factory.mktemp("vit_releases"))

"""Build checkpoints with the exact layout each release's own training code writes.

Each builder follows the saving code of its release (read from the public repositories; see
docs/checkpoints.md): the same top-level entries, nesting, key prefixes, heads, buffers and extra
Python objects (argparse.Namespace, numpy scalars, function references in optimizer param groups).
Tensor values are random, and every tensor differs, so a mis-mapped key cannot go unnoticed.
Heads use small widths to keep files small; trunks are real torchvision-shaped ResNets.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import pickle
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch
import torch.nn as nn

from vicreg_bench.models import build_resnet

EMBED = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048, "resnet50x2": 4096}


@functools.lru_cache(maxsize=8)
def _random_trunk(arch: str, with_fc: bool, seed: int) -> "OrderedDict[str, torch.Tensor]":
    with torch.device("meta"):
        model = build_resnet(arch, with_fc=with_fc)
    g = torch.Generator().manual_seed(seed)
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for i, (k, v) in enumerate(model.state_dict().items()):
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(1000 + i, dtype=torch.long)
        elif k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g)
    return out


def trunk(arch: str = "resnet18", *, with_fc: bool = False, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """torchvision-named random ResNet tensors (a fresh dict each call; tensors shared and read-only by convention)."""
    return OrderedDict(_random_trunk(arch, with_fc, seed))


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((prefix + k, v) for k, v in sd.items())


def _module_state(module: nn.Module, prefix: str, seed: int) -> "OrderedDict[str, torch.Tensor]":
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.normal_(p)
    return _prefixed(module.state_dict(), prefix)


def _sgd_state(params: int, *, numpy_schedules: bool = False) -> dict[str, Any]:
    """A real `torch.optim.SGD.state_dict()` over `params` tensors, after one step."""
    ps = [nn.Parameter(torch.randn(3)) for _ in range(params)]
    opt = torch.optim.SGD([{"params": ps[: params // 2]}, {"params": ps[params // 2:], "weight_decay": 0.0}],
                          lr=0.1, momentum=0.9, weight_decay=1e-4)
    sum((p ** 2).sum() for p in ps).backward()
    opt.step()
    state = opt.state_dict()
    if numpy_schedules:  # DINO sets lr / weight decay from numpy schedules every step
        for i, group in enumerate(state["param_groups"]):
            group["lr"] = np.float64(0.0123)
            if i == 0:
                group["weight_decay"] = np.float64(1e-4)
    return state


# ---- a function referenced by LARS param groups, pickled as `__main__.exclude_bias_and_norm`
def exclude_bias_and_norm(p: torch.Tensor) -> bool:
    return p.ndim == 1


@contextlib.contextmanager
def _as_main_function(fn) -> Iterator[None]:
    """Make `fn` pickle as `__main__.<name>`, as it does when main_vicreg.py / main.py run as scripts."""
    main = sys.modules["__main__"]
    old_module, had = fn.__module__, hasattr(main, fn.__name__)
    old = getattr(main, fn.__name__, None)
    fn.__module__ = "__main__"
    setattr(main, fn.__name__, fn)
    try:
        yield
    finally:
        fn.__module__ = old_module
        if had:
            setattr(main, fn.__name__, old)
        else:
            delattr(main, fn.__name__)


def _lars_state(groups: list[list[int]], weight_decay: float = 1e-6) -> dict[str, Any]:
    """LARS.state_dict() of facebookresearch/vicreg and barlowtwins: defaults (incl. the filter
    functions) copied into every param group; 'mu' momentum buffers in the state."""
    param_groups = [
        {"lr": 0.2, "weight_decay": weight_decay, "momentum": 0.9, "eta": 0.001,
         "weight_decay_filter": exclude_bias_and_norm, "lars_adaptation_filter": exclude_bias_and_norm, "params": ids}
        for ids in groups
    ]
    state = {i: {"mu": torch.randn(4)} for ids in groups for i in ids[:3]}
    return {"state": state, "param_groups": param_groups}


def save_with_main_functions(obj: Any, path: Path, **kwargs: Any) -> Path:
    with _as_main_function(exclude_bias_and_norm):
        torch.save(obj, path, **kwargs)
    return path


# ------------------------------------------------------------------------------------ releases


def vicreg_backbone_only(arch: str = "resnet18", seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """main_vicreg.py: torch.save(model.module.backbone.state_dict(), 'resnet50.pth'); VICReg's resnet has no fc."""
    return trunk(arch, seed=seed)


def vicreg_full(arch: str = "resnet18", mlp: str = "64-64-64", seed: int = 0, ddp: bool = True) -> dict[str, Any]:
    """main_vicreg.py: state = dict(epoch=epoch + 1, model=model.state_dict(), optimizer=optimizer.state_dict()).

    VICReg.backbone (no fc) + Projector: [Linear(bias), BatchNorm1d, ReLU] x (n-1) + Linear(bias=False);
    the DDP-wrapped model gives `module.` keys.
    """
    dims = [EMBED[arch]] + [int(x) for x in mlp.split("-")]
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1]), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
    pre = "module." if ddp else ""
    model = _prefixed(trunk(arch, seed=seed), f"{pre}backbone.")
    model.update(_module_state(nn.Sequential(*layers), f"{pre}projector.", seed))
    n = len([k for k in model if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))])
    return {"epoch": 10, "model": model, "optimizer": _lars_state([list(range(n))])}


def barlowtwins_full(arch: str = "resnet18", projector: str = "64-64-64", seed: int = 0) -> dict[str, Any]:
    """barlowtwins main.py: state = dict(epoch, model=model.state_dict(), optimizer) -> checkpoint.pth.

    backbone = torchvision resnet with fc = Identity (no fc keys); projector Linears without bias;
    self.bn = BatchNorm1d(sizes[-1], affine=False) (running stats only). Two param groups (weights, biases).
    """
    dims = [EMBED[arch]] + [int(x) for x in projector.split("-")]
    layers: list[nn.Module] = []
    for i in range(len(dims) - 2):
        layers += [nn.Linear(dims[i], dims[i + 1], bias=False), nn.BatchNorm1d(dims[i + 1]), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1], bias=False))
    model = _prefixed(trunk(arch, seed=seed), "module.backbone.")
    model.update(_module_state(nn.Sequential(*layers), "module.projector.", seed))
    model.update(_module_state(nn.BatchNorm1d(dims[-1], affine=False), "module.bn.", seed))
    weights = [k for k, v in model.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")) and v.ndim > 1]
    biases = [k for k, v in model.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")) and v.ndim == 1]
    return {"epoch": 10, "model": model,
            "optimizer": _lars_state([list(range(len(weights))), list(range(len(weights), len(weights) + len(biases)))])}


def moco_v2(arch: str = "resnet18", *, mlp: bool = True, with_key_encoder: bool = True, dim: int = 128, K: int = 64, seed: int = 0) -> dict[str, Any]:
    """moco main_moco.py: save_checkpoint({'epoch', 'arch', 'state_dict': model.state_dict(), 'optimizer'}).

    encoder_q/encoder_k = resnet(num_classes=dim); with --mlp, fc = Sequential(Linear(d, d), ReLU, fc)
    -> fc.0, fc.2. Buffers queue (dim, K) and queue_ptr (1,). DDP -> `module.`.
    """
    def encoder(s: int) -> "OrderedDict[str, torch.Tensor]":
        sd = trunk(arch, seed=s)
        d = EMBED[arch]
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, dim)) if mlp else nn.Linear(d, dim)
        sd.update(_module_state(head, "fc.", s))
        return sd

    sd = _prefixed(encoder(seed), "module.encoder_q.")
    if with_key_encoder:
        sd.update(_prefixed(encoder(seed + 1), "module.encoder_k."))
        sd["module.queue"] = torch.randn(dim, K)
        sd["module.queue_ptr"] = torch.zeros(1, dtype=torch.long)
    return {"epoch": 200, "arch": arch, "state_dict": sd, "optimizer": _sgd_state(6)}


def _mocov3_mlp(num_layers: int, input_dim: int, mlp_dim: int, output_dim: int, last_bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(num_layers):
        d1 = input_dim if i == 0 else mlp_dim
        d2 = output_dim if i == num_layers - 1 else mlp_dim
        layers.append(nn.Linear(d1, d2, bias=False))
        if i < num_layers - 1:
            layers += [nn.BatchNorm1d(d2), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d2, affine=False))
    return nn.Sequential(*layers)


def moco_v3(arch: str = "resnet18", dim: int = 32, mlp_dim: int = 64, seed: int = 0) -> dict[str, Any]:
    """moco-v3 main_moco.py: save_checkpoint({'epoch', 'arch', 'state_dict', 'optimizer', 'scaler'}).

    base_encoder/momentum_encoder: torchvision resnet whose fc is replaced by a 2-layer MLP
    (Linear no bias, BN, ReLU, Linear no bias, BN affine=False); predictor: 2-layer MLP without last BN.
    """
    sd: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for name, s in (("base_encoder", seed), ("momentum_encoder", seed + 1)):
        sd.update(_prefixed(trunk(arch, seed=s), f"module.{name}."))
        sd.update(_module_state(_mocov3_mlp(2, EMBED[arch], mlp_dim, dim), f"module.{name}.fc.", s))
    sd.update(_module_state(_mocov3_mlp(2, dim, mlp_dim, dim, last_bn=False), "module.predictor.", seed))
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 17}
    return {"epoch": 300, "arch": arch, "state_dict": sd, "optimizer": _sgd_state(4), "scaler": scaler}


def swav(arch: str = "resnet18", *, wrapped: bool = True, hidden_mlp: int = 64, feat_dim: int = 32, prototypes: int = 50, seed: int = 0) -> Any:
    """swav main_swav.py: save_dict = {'epoch', 'state_dict': model.state_dict(), 'optimizer'} (+ 'amp').

    SwAV's resnet (padding layer, no fc) + projection_head [Linear, BN, ReLU, Linear] + prototypes
    Linear(bias=False), DDP -> `module.`. The released swav_800ep_pretrain.pth.tar is the flat state dict.
    """
    sd = _prefixed(trunk(arch, seed=seed), "module.")
    head = nn.Sequential(nn.Linear(EMBED[arch], hidden_mlp), nn.BatchNorm1d(hidden_mlp), nn.ReLU(inplace=True), nn.Linear(hidden_mlp, feat_dim))
    sd.update(_module_state(head, "module.projection_head.", seed))
    sd.update(_module_state(nn.Linear(feat_dim, prototypes, bias=False), "module.prototypes.", seed))
    if not wrapped:
        return sd
    amp = {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 11}}
    return {"epoch": 100, "state_dict": sd, "optimizer": _sgd_state(4), "amp": amp}


def dino_full(arch: str = "resnet18", out_dim: int = 64, seed: int = 0, fp16: bool = True) -> dict[str, Any]:
    """dino main_dino.py: save_dict = {'student', 'teacher', 'optimizer', 'epoch', 'args', 'dino_loss'} (+ 'fp16_scaler').

    MultiCropWrapper(backbone with fc = head = Identity, DINOHead); a ResNet has BatchNorm, so both the
    student and the teacher are DDP-wrapped -> `module.backbone.*`, `module.head.*` (mlp 0/2/4 and a
    weight-normed last_layer). args is the argparse.Namespace; param groups hold numpy float64 lr / wd.
    """
    def network(s: int) -> "OrderedDict[str, torch.Tensor]":
        sd = _prefixed(trunk(arch, seed=s), "module.backbone.")
        mlp = nn.Sequential(nn.Linear(EMBED[arch], 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 16))
        sd.update(_module_state(mlp, "module.head.mlp.", s))
        sd["module.head.last_layer.weight_g"] = torch.ones(out_dim, 1)
        sd["module.head.last_layer.weight_v"] = torch.randn(out_dim, 16)
        return sd

    args = argparse.Namespace(
        arch=arch, patch_size=16, out_dim=out_dim, norm_last_layer=True, momentum_teacher=0.996, use_bn_in_head=False,
        warmup_teacher_temp=0.04, teacher_temp=0.04, warmup_teacher_temp_epochs=0, use_fp16=fp16, weight_decay=1e-4,
        weight_decay_end=1e-4, clip_grad=0.0, batch_size_per_gpu=64, epochs=100, freeze_last_layer=1, lr=0.03,
        warmup_epochs=10, min_lr=0.0048, optimizer="sgd", drop_path_rate=0.1, global_crops_scale=(0.14, 1.0),
        local_crops_number=6, local_crops_scale=(0.05, 0.14), data_path="/path/to/imagenet/train", output_dir=".",
        saveckp_freq=20, seed=0, num_workers=10, dist_url="env://", local_rank=0, rank=0, world_size=8, gpu=0,
    )
    save = {
        "student": network(seed + 1),
        "teacher": network(seed),
        "optimizer": _sgd_state(6, numpy_schedules=True),
        "epoch": 100,
        "args": args,
        "dino_loss": OrderedDict(center=torch.randn(1, out_dim)),
    }
    if fp16:
        save["fp16_scaler"] = {"scale": 32768.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 3}
    return save


def vissl_train(arch: str = "resnet18", seed: int = 0) -> dict[str, Any]:
    """VISSL CheckpointHook: {phase_idx, iteration, loss, iteration_num, train_phase_idx, classy_state_dict}
    (+ 'type' from CheckpointWriter); classy_state_dict = task.get_classy_state() with
    base_model.model.{trunk: ResNeXt `_feature_blocks.*`, heads: heads.state_dict()}."""
    trunk_sd = _prefixed(trunk(arch, seed=seed), "_feature_blocks.")
    head = nn.Sequential(nn.Linear(EMBED[arch], 64), nn.BatchNorm1d(64), nn.ReLU(inplace=True), nn.Linear(64, 32))
    heads = _module_state(head, "0.projection_heads.0.", seed)
    heads.update(_module_state(nn.Linear(32, 50, bias=False), "0.prototypes0.", seed))
    classy = {
        "train": True,
        "base_model": {"model": {"trunk": trunk_sd, "heads": heads}},
        "meters": [],
        "optimizer": {"optim": _sgd_state(4), "param_schedulers": {"lr": {"name": "cosine"}}, "num_epochs": 105},
        "phase_idx": 209,
        "train_phase_idx": 104,
        "num_updates": 1_000_000,
        "losses": [],
        "hooks": {},
        "loss": {},
    }
    return {"phase_idx": 209, "iteration": 525_000, "loss": {"queue0": torch.zeros(2, 8)}, "iteration_num": 5000,
            "train_phase_idx": 104, "classy_state_dict": classy, "type": "consolidated"}


def vissl_eval(arch: str = "resnet18", seed: int = 0) -> dict[str, Any]:
    """A VISSL linear-evaluation checkpoint: the trunk is a FeatureExtractorModel, so its keys are
    `base_model._feature_blocks.*`; heads are eval_mlp (channel_bn + clf)."""
    ck = vissl_train(arch, seed)
    base = ck["classy_state_dict"]["base_model"]["model"]
    base["trunk"] = _prefixed(trunk(arch, seed=seed), "base_model._feature_blocks.")
    heads = _module_state(nn.BatchNorm2d(EMBED[arch]), "0.channel_bn.", seed)
    heads.update(_module_state(nn.Sequential(nn.Linear(EMBED[arch], 10)), "0.clf.", seed))
    base["heads"] = heads
    return ck


def simclr_converted(arch: str = "resnet18", seed: int = 0) -> dict[str, Any]:
    """tonylins/simclr-converter convert.py: torch.save({'state_dict': model.state_dict()}) of a torchvision-named resnet with fc."""
    return {"state_dict": trunk(arch, with_fc=True, seed=seed)}


def byol_converted(arch: str = "resnet18", seed: int = 0) -> dict[str, torch.Tensor]:
    """ajtejankar/byol-convert convert.py: a plain dict filled first from the haiku params (conv/bn
    weights and biases, fc), then from the BN states (running_mean/var); no num_batches_tracked."""
    sd = trunk(arch, with_fc=True, seed=seed)
    params = {k: v for k, v in sorted(sd.items()) if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    stats = {k: v for k, v in sorted(sd.items()) if k.endswith(("running_mean", "running_var"))}
    return {**params, **stats}


def lightning_solo_learn(arch: str = "resnet18", *, momentum: bool = True, old: bool = False, seed: int = 0) -> dict[str, Any]:
    """A PyTorch Lightning checkpoint of a solo-learn method: state_dict with backbone.* (fc = Identity),
    projector.*, the online classifier, and momentum_backbone.* for momentum methods (BYOL, MoCo...).
    Old solo-learn named the backbone `encoder`."""
    name = "encoder" if old else "backbone"
    sd = _prefixed(trunk(arch, seed=seed), f"{name}.")
    sd.update(_module_state(nn.Sequential(nn.Linear(EMBED[arch], 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)), "projector.", seed))
    sd.update(_module_state(nn.Linear(EMBED[arch], 10), "classifier.", seed))
    if momentum:
        sd.update(_prefixed(trunk(arch, seed=seed + 1), f"momentum_{name}."))
        sd.update(_module_state(nn.Sequential(nn.Linear(EMBED[arch], 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)), "momentum_projector.", seed))
    return {
        "epoch": 399,
        "global_step": 200_000,
        "pytorch-lightning_version": "1.9.5",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 400, "completed": 399}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0}":
                      {"best_model_score": None, "best_model_path": "", "dirpath": "trained_models/byol/abc", "last_model_path": ""}},
        "optimizer_states": [_sgd_state(4)],
        "lr_schedulers": [{"base_lrs": [0.3, 0.1], "last_epoch": 399, "_step_count": 400, "warmup_epochs": 10}],
        "hparams_name": "kwargs",
        "hyper_parameters": {"backbone": {"name": arch, "kwargs": {}}, "method": "byol", "max_epochs": 400,
                             "optimizer": {"name": "lars", "lr": 1.0, "weight_decay": 1e-5}},
    }


def lightning_lightly(arch: str = "resnet18", seed: int = 0) -> dict[str, Any]:
    """A lightly LightningModule: backbone = nn.Sequential(*list(resnet.children())[:-1]) (children
    0 conv1, 1 bn1, 4..7 layer1..4) + projection_head."""
    index = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
    sd: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in trunk(arch, seed=seed).items():
        top, rest = k.split(".", 1)
        sd[f"backbone.{index[top]}.{rest}"] = v
    sd.update(_module_state(nn.Sequential(nn.Linear(EMBED[arch], 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 32)), "projection_head.layers.", seed))
    return {"epoch": 99, "global_step": 10_000, "pytorch-lightning_version": "2.1.0", "state_dict": sd,
            "loops": {}, "callbacks": {}, "optimizer_states": [_sgd_state(2)], "lr_schedulers": []}


def _d2_name(k: str) -> str:
    """MoCo's convert-pretrain-to-detectron2.py renaming, re-expressed: stem prefix for non-layer keys,
    layerN -> res(N+1), bnK -> convK.norm, downsample.0/1 -> shortcut(.norm)."""
    if "layer" not in k:
        k = "stem." + k
    for n in (1, 2, 3, 4):
        k = k.replace(f"layer{n}", f"res{n + 1}")
    for n in (1, 2, 3):
        k = k.replace(f"bn{n}", f"conv{n}.norm")
    return k.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def detectron2_from_moco(moco_checkpoint: dict[str, Any]) -> dict[str, Any]:
    """MoCo's detection/convert-pretrain-to-detectron2.py: encoder_q keys renamed (fc included, as
    stem.fc.*), values as numpy arrays, {"model", "__author__": "MOCO", "matching_heuristics": True}."""
    model = {}
    for k, v in moco_checkpoint["state_dict"].items():
        if k.startswith("module.encoder_q."):
            model[_d2_name(k[len("module.encoder_q."):])] = v.numpy()
    return {"model": model, "__author__": "MOCO", "matching_heuristics": True}


def write_pickle(obj: Any, path: Path) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f)
    return path


# ----------------------------------------------------------------------- files, written once per session


def _torch_writer(**kwargs: Any):
    def write(obj: Any, path: Path) -> Path:
        torch.save(obj, path, **kwargs)
        return path
    return write


# name -> (builder, file name as the release names it, writer)
RELEASE_FILES = {
    "torchvision": (lambda: trunk(with_fc=True), "resnet18-f37072fd.pth", _torch_writer()),
    "vicreg_resnet50.pth": (vicreg_backbone_only, "resnet50.pth", _torch_writer()),
    "vicreg_full": (vicreg_full, "model.pth", save_with_main_functions),
    "barlowtwins_full": (barlowtwins_full, "checkpoint.pth", save_with_main_functions),
    "moco_v2": (moco_v2, "checkpoint_0199.pth.tar", _torch_writer(_use_new_zipfile_serialization=False)),
    "moco_v1_released": (lambda: moco_v2(mlp=False, with_key_encoder=False), "moco_v1_200ep_pretrain.pth.tar", _torch_writer()),
    "moco_v3": (moco_v3, "checkpoint_0299.pth.tar", _torch_writer()),
    "swav_wrapped": (swav, "checkpoint.pth.tar", _torch_writer()),
    "swav_flat": (lambda: swav(wrapped=False), "swav_800ep_pretrain.pth.tar", _torch_writer()),
    "dino_full": (dino_full, "checkpoint.pth", _torch_writer()),
    "vissl": (vissl_train, "model_final_checkpoint_phase208.torch", _torch_writer()),
    "vissl_eval": (vissl_eval, "model_final_checkpoint_phase27.torch", _torch_writer()),
    "simclr": (simclr_converted, "resnet50-1x.pth", _torch_writer()),
    "byol": (byol_converted, "pretrain_res50x1.pth.tar", _torch_writer()),
    "solo_learn": (lightning_solo_learn, "byol-400ep.ckpt", _torch_writer()),
    "solo_learn_old": (lambda: lightning_solo_learn(old=True, momentum=False), "simclr-old.ckpt", _torch_writer()),
    "lightly": (lightning_lightly, "epoch=99.ckpt", _torch_writer()),
    "detectron2_moco": (lambda: detectron2_from_moco(moco_v2()), "moco_v2_800ep.pkl", write_pickle),
}


class ReleaseFiles:
    """Each release checkpoint written once per test session; tests must not modify the files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self._paths:
            builder, filename, writer = RELEASE_FILES[name]
            folder = self.root / name
            folder.mkdir()
            self._paths[name] = writer(builder(), folder / filename)
        return self._paths[name]


@pytest.fixture(scope="session")
def release_files(tmp_path_factory) -> ReleaseFiles:
    return ReleaseFiles(tmp_path_factory.mktemp("releases"))

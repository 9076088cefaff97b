"""Semi-supervised ImageNet: fine-tune trunk + linear head on 1% or 10% of the labels (SimCLR subset lists).

Protocol (paper B.3; facebookresearch/vicreg evaluate.py with `--weights finetune`):
- model = the pretrained trunk followed by a Linear head (weights N(0, 0.01), bias 0), all trained by the
  one classification loop (`train_loop`, mode `finetune`); the trunk's BatchNorm layers run in training
  mode (batch statistics, no SyncBN), as in evaluate.py;
- SGD, momentum 0.9, no weight decay, batch 256, 20 epochs; two parameter groups:
  1%: backbone lr 0.03, head lr 0.08; 10%: backbone lr 0.01, head lr 0.1;
  both decay with a cosine over the epochs, stepped once per epoch (CosineAnnealingLR);
- train: RandomResizedCrop + flip; test: Resize(256) + CenterCrop(224) through the fine-tuned network,
  evaluated after every epoch (`eval_every` thins this out); headline = final epoch, best kept as extra;
- the subset lists are the user's `imagenet/subsets/{1percent,10percent}.txt` (split `train_1pct` /
  `train_10pct` of the ImageNet reader).
The task saves a checkpoint after every epoch in its work dir and resumes from it. Under torchrun the
model is wrapped in DDP and each process takes its share of every batch of 256. There is no `fast`
variant (fine-tuning needs the images), so `--protocol fast` runs this protocol too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vicreg_bench.errors import UserError
from vicreg_bench.results.entry import protocol_hash
from vicreg_bench.tasks.common import dataset_block, image_sizes, normalize_input, overrides, precision_of, transform_params
from vicreg_bench.tasks.context import TaskContext, TaskOutput
from vicreg_bench.tasks.heads import HEAD_INIT, make_head
from vicreg_bench.tasks.options import TaskOptions, option
from vicreg_bench.tasks.registry import Column, PublishedKey, Resources, register_task
from vicreg_bench.tasks.train_loop import MOMENTUM, Classifier, LoopSpec, evaluate_logits, make_scheduler, summarize, train_epochs

WEIGHT_DECAY = 0.0
# MAE's fine-tuning recipes (FINETUNE.md): --layer_decay 0.65 for ViT-B, 0.75 for ViT-L and ViT-H
VIT_LAYER_DECAY_BASE, VIT_LAYER_DECAY_LARGE, VIT_BASE_WIDTH = 0.65, 0.75, 768


@dataclass(frozen=True)
class SemisupProtocol:
    split: str
    lr_backbone: float
    lr_head: float


SEMISUP_PROTOCOLS = {
    "imagenet_semisup_1pct": SemisupProtocol("train_1pct", lr_backbone=0.03, lr_head=0.08),
    "imagenet_semisup_10pct": SemisupProtocol("train_10pct", lr_backbone=0.01, lr_head=0.1),
}


@dataclass(frozen=True)
class SemisupOptions(TaskOptions):
    epochs: int = option(20, "fine-tuning epochs (cosine schedule over them)", minimum=1)
    batch_size: int = option(256, "global batch size", minimum=2)
    eval_every: int = option(1, "evaluate on val every N epochs (the last epoch always)", minimum=1)
    layer_decay: float | None = option(
        None, "ViTs: layer-wise lr decay as MAE's fine-tuning (util/lr_decay.py): block i gets "
        "lr_backbone * decay^(depth + 1 - layer id); default MAE's 0.65 up to ViT-B, 0.75 above", minimum=0.0)


def protocol_semisup(ctx: TaskContext, task: str) -> tuple[str, dict]:
    from vicreg_bench.data.transforms import linear_train_transform

    p = SEMISUP_PROTOCOLS[task]
    o = ctx.options
    size, _ = image_sizes(ctx)
    params = {
        "dataset": "imagenet", "train_split": p.split, "test_split": "val",
        "epochs": o.epochs, "batch_size": o.batch_size,
        "lr_backbone": p.lr_backbone, "lr_head": p.lr_head, "weight_decay": WEIGHT_DECAY, "momentum": MOMENTUM,
        "nesterov": False, "schedule": "cosine", "lr_step": "per epoch",
        "head": "linear", "head_init": HEAD_INIT, "bn_mode": "train (batch statistics, per process)",
        "train_transform": {"name": "linear_train", "size": size, "normalize": normalize_input(ctx),
                            "repr": repr(linear_train_transform(size=size, normalize=normalize_input(ctx)))},
        "test_transform": transform_params(ctx, "eval"),
        "precision": precision_of(ctx),
        "eval_every": o.eval_every,
        "headline": "final epoch",
        "reference": "paper B.3; facebookresearch/vicreg evaluate.py --weights finetune",
    }
    decay = layer_decay(ctx)
    if decay is not None:
        params["layer_decay"] = decay
        params["lr_groups"] = "layer-wise: head lr_head; block i lr_backbone * decay^(depth + 1 - id) (MAE)"
    if ov := overrides(ctx, ("epochs", "batch_size", "image_size", "resize", "eval_every")):
        params["overrides"] = ov
    return "semisup_finetune", params


def layer_decay(ctx: TaskContext) -> float | None:
    """The layer-wise lr decay of a ViT (None for a ResNet, which has none)."""
    from vicreg_bench.models import is_vit

    if not is_vit(ctx.ckpt_info.arch):
        if ctx.options.layer_decay is not None:
            raise UserError(f"option layer_decay applies to ViT backbones, not to {ctx.ckpt_info.arch}")
        return None
    if ctx.options.layer_decay is not None:
        return ctx.options.layer_decay
    from vicreg_bench.models import feature_dim

    return VIT_LAYER_DECAY_BASE if feature_dim(ctx.ckpt_info.arch) <= VIT_BASE_WIDTH else VIT_LAYER_DECAY_LARGE


def trunk_param_groups(model: Classifier, arch: str, lr_backbone: float, decay: float | None) -> list[dict]:
    """The trunk's SGD parameter groups: one at lr_backbone (ResNets), or one per ViT layer id with MAE's
    layer-wise decay, the last layers first (so group 1 holds the full lr_backbone)."""
    if decay is None:
        return [{"params": model.trunk.parameters(), "lr": lr_backbone}]
    from vicreg_bench.models import vit_layer_id

    depth = len(model.trunk.blocks)
    by_layer: dict[int, list] = {}
    for name, p in model.trunk.named_parameters():
        by_layer.setdefault(vit_layer_id(name, depth), []).append(p)
    return [{"params": by_layer[i], "lr": lr_backbone * decay ** (depth + 1 - i)}
            for i in sorted(by_layer, reverse=True)]


def build_classifier(ctx: TaskContext, num_classes: int, precision: str) -> Classifier:
    """The checkpoint's trunk (loaded strictly, trainable) + a Linear head, on the task's device."""
    from vicreg_bench.models import build_backbone, feature_dim

    trunk = build_backbone(ctx.ckpt_info.arch)
    trunk.load_state_dict(ctx.state_dict, strict=True)
    torch.manual_seed(ctx.seed)
    head = make_head(feature_dim(ctx.ckpt_info.arch), num_classes, "linear")
    model = Classifier(trunk, head, ctx.device, precision, frozen=False).to(ctx.device)
    if str(ctx.device).startswith("cuda"):
        model.trunk.to(memory_format=torch.channels_last)
    return model


def run_semisup(ctx: TaskContext, task: str) -> TaskOutput:
    from vicreg_bench.data.registry import open_classification
    from vicreg_bench.data.transforms import eval_transform, linear_train_transform
    from vicreg_bench.features.extract import default_workers
    from vicreg_bench.tasks.epoch_data import image_batches

    name, params = protocol_semisup(ctx, task)
    device, precision = ctx.device, params["precision"]
    size, resize = image_sizes(ctx)
    bad = ctx.settings.on_bad_image
    train_ds = open_classification("imagenet", ctx.data_root, params["train_split"],
                                   transform=linear_train_transform(size=size, normalize=normalize_input(ctx)),
                                   on_bad_image=bad)
    val_ds = open_classification("imagenet", ctx.data_root, "val",
                                 transform=eval_transform(size=size, resize=resize, interpolation="bilinear",
                                                          normalize=normalize_input(ctx)),
                                 on_bad_image=bad)
    if list(train_ds.classes) != list(val_ds.classes):
        raise ValueError("imagenet: the train subset and val class lists differ")
    if hasattr(ctx.features, "release_model"):
        ctx.features.release_model()  # the frozen copy is not needed while fine-tuning

    model = build_classifier(ctx, len(train_ds.classes), precision)
    optimizer = torch.optim.SGD(
        [{"params": model.head.parameters(), "lr": params["lr_head"]},
         *trunk_param_groups(model, ctx.ckpt_info.arch, params["lr_backbone"], params.get("layer_decay"))],
        lr=0.0, momentum=params["momentum"], weight_decay=params["weight_decay"], nesterov=params["nesterov"])
    scheduler = make_scheduler(optimizer, params["schedule"], params["epochs"])
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    workers = ctx.settings.workers if ctx.settings.workers is not None else default_workers(device)
    spec = LoopSpec(mode="finetune", epochs=params["epochs"], batch_size=params["batch_size"], seed=ctx.seed,
                    device=device, workers=workers, state_file=Path(ctx.work_dir) / "semisup_state.pt",
                    protocol_hash=protocol_hash(name, params), desc=task, eval_every=params["eval_every"],
                    lr_names=("lr_head", "lr_backbone"))

    def evaluate() -> tuple[float, float]:
        top1, top5, _ = evaluate_logits(model, image_batches(val_ds, device, params["batch_size"], workers), device)
        return top1, top5

    result = train_epochs(model, optimizer, scheduler, train_ds, evaluate, spec, scaler=scaler)
    metrics, throughput, extra = summarize(result)
    return TaskOutput(metrics=metrics, protocol_name=name, protocol_params=params,
                      dataset=dataset_block("imagenet", {"train": train_ds, "test": val_ds}),
                      throughput=throughput, extra=extra)


def _register(task: str, summary: str, pct: str, order: int, columns: tuple[Column, ...]) -> None:
    split = SEMISUP_PROTOCOLS[task].split

    def protocol(ctx: TaskContext) -> tuple[str, dict]:
        return protocol_semisup(ctx, task)

    def run(ctx: TaskContext) -> TaskOutput:
        return run_semisup(ctx, task)

    register_task(
        name=task, summary=summary, protocol=protocol, options=SemisupOptions,
        data={"imagenet": (("classification", split), ("classification", "val"))},
        metrics=("top1", "top5"), headline=("top1",), result_schema="classification_task", columns=columns,
        paper_settings={"epochs": 20, "batch_size": 256, "weight_decay": WEIGHT_DECAY},
        published=(PublishedKey("vicreg", 1, f"Semi-supervised Top-1 {pct}", "top1"),
                   PublishedKey("vicreg", 1, f"Semi-supervised Top-5 {pct}", "top5")),
        suites=("table1",), order=order,
        resources=Resources(device="gpu", gpus=8, cpus=80, mem_gb=256, hours=12.0),
    )(run)


_register("imagenet_semisup_1pct", "fine-tuning on 1% of the ImageNet labels", "1%", 60,
          (Column("top1", 1, "Semi 1% top-1", 30), Column("top5", 1, "Semi 1% top-5", 50)))
_register("imagenet_semisup_10pct", "fine-tuning on 10% of the ImageNet labels", "10%", 70,
          (Column("top1", 1, "Semi 10% top-1", 40), Column("top5", 1, "Semi 10% top-5", 60)))

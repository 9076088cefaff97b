"""Semi-supervised ImageNet: fine-tune trunk + linear head on 1% or 10% of the labels (SimCLR subset lists).

Protocol (paper B.3; facebookresearch/vicreg evaluate.py with `--weights finetune`):
- model = the pretrained trunk followed by a Linear head (weights N(0, 0.01), bias 0), all trained;
  the trunk's BatchNorm layers run in training mode (batch statistics, no SyncBN), as in evaluate.py;
- SGD, momentum 0.9, no weight decay, batch 256, 20 epochs; two parameter groups:
  1%: backbone lr 0.03, head lr 0.08; 10%: backbone lr 0.01, head lr 0.1;
  both decay with a cosine over the epochs, stepped once per epoch (CosineAnnealingLR);
- train: RandomResizedCrop + flip; test: Resize(256) + CenterCrop(224) through the fine-tuned network,
  evaluated after every epoch (`--eval-every` thins this out); headline = final epoch, best kept as extra;
- the subset lists are the user's `imagenet/subsets/{1percent,10percent}.txt` (split `train_1pct` /
  `train_10pct` of the ImageNet reader).
The task saves a checkpoint after every epoch in its work dir and resumes from it. Under torchrun the
model is wrapped in DDP and each process takes its share of every batch of 256. There is no `fast`
variant (fine-tuning needs the images), so `--protocol fast` runs this protocol too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

from vicreg_bench import distributed as D
from vicreg_bench.tasks.base import TaskContext, TaskOutput
from vicreg_bench.tasks.classification import (
    BATCH_SIZE,
    HEAD_INIT,
    MOMENTUM,
    check_finite,
    dataset_block,
    default_train_workers,
    epoch_loader,
    evaluate_logits,
    global_mean_loss,
    image_sizes,
    load_state,
    make_scheduler,
    normalize_input,
    opt,
    overrides,
    precision_of,
    save_state,
    state_path,
    transform_params,
    unwrap,
)


@dataclass(frozen=True)
class SemisupProtocol:
    split: str
    lr_backbone: float
    lr_head: float


SEMISUP_PROTOCOLS = {
    "imagenet_semisup_1pct": SemisupProtocol("train_1pct", lr_backbone=0.03, lr_head=0.08),
    "imagenet_semisup_10pct": SemisupProtocol("train_10pct", lr_backbone=0.01, lr_head=0.1),
}
EPOCHS = 20
WEIGHT_DECAY = 0.0


def protocol_semisup(ctx: TaskContext, task: str) -> tuple[str, dict]:
    from vicreg_bench.data.transforms import linear_train_transform

    p = SEMISUP_PROTOCOLS[task]
    size, _ = image_sizes(ctx)
    epochs = int(opt(ctx, "epochs", EPOCHS))
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    params = {
        "dataset": "imagenet", "train_split": p.split, "test_split": "val",
        "epochs": epochs, "batch_size": int(opt(ctx, "batch_size", BATCH_SIZE)),
        "lr_backbone": p.lr_backbone, "lr_head": p.lr_head, "weight_decay": WEIGHT_DECAY, "momentum": MOMENTUM,
        "nesterov": False, "schedule": "cosine", "lr_step": "per epoch",
        "head": "linear", "head_init": HEAD_INIT, "bn_mode": "train (batch statistics, per process)",
        "train_transform": {"name": "linear_train", "size": size, "normalize": normalize_input(ctx),
                            "repr": repr(linear_train_transform(size=size, normalize=normalize_input(ctx)))},
        "test_transform": transform_params(ctx, "eval"),
        "precision": precision_of(ctx),
        "eval_every": int(opt(ctx, "eval_every", 1)),
        "headline": "final epoch",
        "reference": "paper B.3; facebookresearch/vicreg evaluate.py --weights finetune",
    }
    if ov := overrides(ctx, ("epochs", "batch_size", "image_size", "resize", "eval_every")):
        params["overrides"] = ov
    return "semisup_finetune", params


def protocol_imagenet_semisup_1pct(ctx: TaskContext) -> tuple[str, dict]:
    return protocol_semisup(ctx, "imagenet_semisup_1pct")


def protocol_imagenet_semisup_10pct(ctx: TaskContext) -> tuple[str, dict]:
    return protocol_semisup(ctx, "imagenet_semisup_10pct")


def run_imagenet_semisup_1pct(ctx: TaskContext) -> TaskOutput:
    return run_semisup(ctx, "imagenet_semisup_1pct")


def run_imagenet_semisup_10pct(ctx: TaskContext) -> TaskOutput:
    return run_semisup(ctx, "imagenet_semisup_10pct")


class Classifier(nn.Module):
    """Trunk + head; the trunk runs under autocast (bf16 on GPUs), the head in float32."""

    def __init__(self, trunk: nn.Module, head: nn.Linear, device: str, precision: str):
        super().__init__()
        self.trunk, self.head = trunk, head
        self.device, self.precision = device, precision

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from vicreg_bench.features import trunk_forward

        return self.head(trunk_forward(self.trunk, images, self.device, self.precision))


def build_classifier(ctx: TaskContext, num_classes: int, precision: str) -> Classifier:
    from vicreg_bench.models import build_resnet, feature_dim

    trunk = build_resnet(ctx.ckpt_info.arch)
    trunk.load_state_dict(ctx.state_dict, strict=True)
    dim = feature_dim(ctx.ckpt_info.arch)
    torch.manual_seed(ctx.seed)
    head = nn.Linear(dim, num_classes)
    head.weight.data.normal_(mean=0.0, std=0.01)
    head.bias.data.zero_()
    model = Classifier(trunk, head, ctx.device, precision).to(ctx.device)
    if str(ctx.device).startswith("cuda"):
        model.trunk.to(memory_format=torch.channels_last)
    return model


def image_batches(dataset, device: str, batch_size: int, workers: int):
    """This process's share of a dataset as (images, labels) batches (for evaluation)."""
    from vicreg_bench.data.base import collate_skipping_bad

    idx = list(range(D.get_rank(), len(dataset), D.get_world_size()))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, idx), batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=str(device).startswith("cuda"), collate_fn=collate_skipping_bad)
    for good, _bad in loader:
        if good is not None:
            images, targets, _ = good
            yield images, targets


def run_semisup(ctx: TaskContext, task: str) -> TaskOutput:
    from tqdm import tqdm

    from vicreg_bench.data.registry import open_classification
    from vicreg_bench.data.transforms import eval_transform, linear_train_transform
    from vicreg_bench.results import protocol_hash

    name, params = protocol_semisup(ctx, task)
    device, precision = ctx.device, params["precision"]
    size, resize = image_sizes(ctx)
    bad = opt(ctx, "on_bad_image", "error")
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
         {"params": model.trunk.parameters(), "lr": params["lr_backbone"]}],
        lr=0.0, momentum=params["momentum"], weight_decay=params["weight_decay"], nesterov=params["nesterov"])
    scheduler = make_scheduler(optimizer, params["schedule"], params["epochs"])
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    phash = protocol_hash(name, params)
    spath = state_path(ctx, "semisup")
    state = load_state(spath, phash)
    start, history = 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start, history = int(state["epoch"]), list(state["history"])
    ddp = nn.parallel.DistributedDataParallel(model) if D.is_distributed() else model
    D.split_batch(params["batch_size"])
    workers = default_train_workers(ctx)
    rates: list[float] = []
    skipped: list[dict] = []
    for epoch in range(start, params["epochs"]):
        ddp.train()
        loader = epoch_loader(train_ds, batch_size=params["batch_size"], seed=ctx.seed, epoch=epoch,
                              workers=workers, device=device)
        t0, seen, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(loader, desc=f"{task} epoch {epoch + 1}/{params['epochs']}", disable=not D.is_main(),
                   unit="batch", dynamic_ncols=True, mininterval=2.0)
        for (good, bad_items), global_size in zip(bar, loader.batch_sampler.global_sizes):
            skipped += [{"index": b.index, "path": b.path, "error": b.error} for b in bad_items]
            if good is None:
                continue
            images, targets, _ = good
            loss = global_mean_loss(ddp(images), targets.to(device), global_size)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(targets)
            loss_sum += loss.item() / D.get_world_size()
            steps += 1
        loss_sum = float(D.all_reduce_sum(torch.tensor([loss_sum], dtype=torch.float64))[0])
        check_finite(loss_sum, "training loss")
        seconds = time.perf_counter() - t0
        rate = float(D.all_reduce_sum(torch.tensor([float(seen)]))[0]) / seconds if seconds > 0 else 0.0
        rates.append(rate)
        lrs = {"lr_head": optimizer.param_groups[0]["lr"], "lr_backbone": optimizer.param_groups[1]["lr"]}
        scheduler.step()
        entry = {"epoch": epoch + 1, **lrs, "loss": loss_sum / max(1, steps), "train_images_per_s": round(rate, 2)}
        last = epoch + 1 == params["epochs"]
        if last or (epoch + 1) % params["eval_every"] == 0:
            model.eval()
            top1, top5, _ = evaluate_logits(model, image_batches(val_ds, device, params["batch_size"], workers), device)
            entry.update(top1=top1, top5=top5)
        history.append(entry)
        save_state(spath, {"protocol_hash": phash, "epoch": epoch + 1, "model": unwrap(ddp).state_dict(),
                           "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict(), "history": history})

    evaluated = [h for h in history if "top1" in h]
    final, best = evaluated[-1], max(evaluated, key=lambda h: h["top1"])
    all_skipped = [s for part in D.all_gather_objects(skipped) for s in part]
    throughput = {"train_images_per_s": round(float(np.mean(rates)), 2)} if rates else {}
    return TaskOutput(
        metrics={"top1": float(final["top1"]), "top5": float(final["top5"])},
        protocol_name=name, protocol_params=params,
        dataset=dataset_block("imagenet", {"train": train_ds, "test": val_ds}),
        throughput=throughput,
        extra={"best_top1": float(best["top1"]), "best_top5": float(best["top5"]), "best_epoch": int(best["epoch"]),
               "history": history, "resumed_from_epoch": start, "skipped_files": all_skipped},
    )

"""The linear probes on a frozen trunk: `imagenet_linear` (Table 1), `places205_linear`, `inat18_linear` (Table 2).

Protocol `paper` (PROTOCOLS.md, paper appendix B.3/B.4): augmented training images (RandomResizedCrop +
flip) go through the frozen trunk in eval mode every epoch; a head is trained with SGD (momentum 0.9, batch
256) on the table's schedule by the one classification loop (`train_loop`, mode `freeze`), and top-1/top-5
are measured on the val set after every epoch. The final epoch is the headline, the best one is kept as
extra. The head is BatchNorm1d + Linear (PROTOCOLS.md; VISSL `eval_mlp`), the Linear initialised N(0, 0.01)
with bias 0 (vicreg evaluate.py). ImageNet: lr 0.02, wd 1e-6, cosine over 100 epochs stepped per epoch
(evaluate.py, whose head is a plain Linear: `--linear-head linear` reproduces that); Places205 / iNat18: the
paper's B.4 schedules. Because the trunk is frozen and the test transform deterministic, the per-epoch
evaluation reads cached centre-crop val features: the same numbers as pushing the val images through the
trunk every epoch, without the cost. A per-epoch checkpoint in the work dir makes the task resumable.

Protocol `fast`: the same heads and schedules trained on cached centre-crop features of the train set (no
augmentation) by `linear_fast.train_linear_on_features`; labelled `linear_fast`, never the paper's number.

Under torchrun the paper protocol is data-parallel (DDP on the head, each process takes its share of every
batch, BatchNorm over the global batch); the fast head runs on rank 0 and its output is broadcast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from vicreg_bench.errors import UserError
from vicreg_bench.results.entry import protocol_hash
from vicreg_bench.tasks.common import (
    dataset_block,
    extraction_throughput,
    image_sizes,
    need_features,
    normalize_input,
    on_main,
    overrides,
    precision_of,
    skipped_files,
    transform_params,
)
from vicreg_bench.tasks.context import TaskContext, TaskOutput
from vicreg_bench.tasks.heads import HEAD_INIT, make_head
from vicreg_bench.tasks.options import TaskOptions, option
from vicreg_bench.tasks.registry import Column, PublishedKey, Resources, register_task
from vicreg_bench.tasks.train_loop import (
    MOMENTUM,
    Classifier,
    LoopSpec,
    evaluate_logits,
    make_scheduler,
    summarize,
    train_epochs,
)

BATCH_SIZE = 256


@dataclass(frozen=True)
class LinearProtocol:
    dataset: str
    lr: float
    weight_decay: float
    schedule: str | tuple[int, ...]  # "cosine" (per epoch, to 0) or milestone epochs (lr /10 at each)
    reference: str
    train_split: str = "train"
    test_split: str = "val"


LINEAR_PROTOCOLS: dict[str, LinearProtocol] = {
    "imagenet_linear": LinearProtocol(
        "imagenet", 0.02, 1e-6, "cosine",
        "paper B.3; facebookresearch/vicreg evaluate.py --weights freeze --lr-head 0.02 (its head is a plain "
        "Linear: --linear-head linear)"),
    "places205_linear": LinearProtocol(
        "places205", 0.003, 1e-4, (4, 8, 12), "paper B.4 (head: VISSL eval_mlp, BatchNorm + Linear)"),
    "inat18_linear": LinearProtocol(
        "inat2018", 0.005, 1e-4, (24, 48, 72), "paper B.4 (head: VISSL eval_mlp, BatchNorm + Linear)"),
}


@dataclass(frozen=True)
class LinearOptions(TaskOptions):
    """ImageNet's schedule; the other linear tasks change the number of epochs only."""

    epochs: int = option(100, "training epochs (lr milestones move in proportion when shortened)", minimum=1)
    batch_size: int = option(BATCH_SIZE, "global batch size of the head's training", minimum=2)
    linear_head: Literal["bn_linear", "linear"] = option(
        "bn_linear", "bn_linear: BatchNorm1d + Linear (PROTOCOLS.md, VISSL); linear: plain Linear (evaluate.py; "
        "paper protocol only)")
    n_last_blocks: int | None = option(
        None, "ViTs: the CLS tokens of the last n blocks, concatenated, are the feature (DINO eval_linear; "
        "default 4 for ViT-S, 1 for ViT-B and wider)", minimum=1)
    avgpool_patchtokens: bool | None = option(
        None, "ViTs: add the mean of the last block's patch tokens to the feature (DINO eval_linear; default off "
        "for ViT-S, on for ViT-B and wider)")


@dataclass(frozen=True)
class Places205LinearOptions(LinearOptions):
    epochs: int = option(28, "training epochs (lr milestones move in proportion when shortened)", minimum=1)


@dataclass(frozen=True)
class Inat18LinearOptions(LinearOptions):
    epochs: int = option(84, "training epochs (lr milestones move in proportion when shortened)", minimum=1)


def scaled_milestones(milestones: tuple[int, ...], paper_epochs: int, epochs: int) -> list[int]:
    """The table's lr drops moved proportionally when --epochs shortens the schedule."""
    if epochs == paper_epochs:
        return list(milestones)
    scaled = {int(round(m * epochs / paper_epochs)) for m in milestones}
    return sorted(m for m in scaled if 1 <= m < epochs)


def linear_settings(ctx: TaskContext, task: str) -> dict:
    """The effective optimisation settings of a linear task: the table's, with the user's options."""
    p = LINEAR_PROTOCOLS[task]
    o = ctx.options
    paper_epochs = type(o)().epochs
    schedule: Any = "cosine" if p.schedule == "cosine" else {
        "milestones": scaled_milestones(p.schedule, paper_epochs, o.epochs), "gamma": 0.1}
    return {
        "dataset": p.dataset, "train_split": p.train_split, "test_split": p.test_split,
        "epochs": o.epochs, "lr": p.lr, "weight_decay": p.weight_decay, "momentum": MOMENTUM, "nesterov": False,
        "batch_size": o.batch_size, "schedule": schedule, "lr_step": "per epoch",
        "head": o.linear_head, "head_init": HEAD_INIT, "loss": "cross_entropy",
        "headline": "final epoch", "reference": p.reference,
    }


def feature_layer(ctx: TaskContext) -> tuple[str, dict]:
    """The layer the linear probe reads, and what to record of it: res5avg for ResNets; for ViTs DINO's
    eval_linear input (the last n CLS tokens, optionally with the pooled patch tokens), recorded with n and
    the pooling, and with `overrides` when they differ from DINO's choice for that width."""
    from vicreg_bench.features.layers import linear_layer, vit_depth, vit_linear_defaults
    from vicreg_bench.models import is_vit

    arch, o = ctx.ckpt_info.arch, ctx.options
    if not is_vit(arch):
        if o.n_last_blocks is not None or o.avgpool_patchtokens is not None:
            raise UserError(f"options n_last_blocks / avgpool_patchtokens apply to ViT backbones, not to {arch}")
        return "res5avg", {}
    n0, avg0 = vit_linear_defaults(arch)
    n = o.n_last_blocks if o.n_last_blocks is not None else n0
    if n > vit_depth(arch):
        raise UserError(f"option n_last_blocks={n}: {arch} has only {vit_depth(arch)} blocks")
    avg = o.avgpool_patchtokens if o.avgpool_patchtokens is not None else avg0
    record = {"layer": linear_layer(arch, n, avg), "n_last_blocks": n, "avgpool_patchtokens": avg,
              "feature": "DINO eval_linear: CLS tokens of the last n blocks (+ mean patch token)"}
    changed = {k: v for k, v, d in (("n_last_blocks", n, n0), ("avgpool_patchtokens", avg, avg0)) if v != d}
    return record["layer"], {**record, **({"vit_overrides": changed} if changed else {})}


def protocol_linear(ctx: TaskContext, task: str) -> tuple[str, dict]:
    params = linear_settings(ctx, task)
    _, vit = feature_layer(ctx)
    params.update(vit)
    params["precision"] = precision_of(ctx)
    params["test_transform"] = transform_params(ctx, "eval")
    if ctx.protocol == "fast":
        if params["head"] != "bn_linear":
            raise UserError("--linear-head linear is not available with --protocol fast (its head is BN + Linear)")
        params["train_features"] = transform_params(ctx, "eval")
        params["augmentation"] = "none (cached centre-crop features)"
        name = "linear_fast"
    else:
        from vicreg_bench.data.transforms import linear_train_transform

        size, _ = image_sizes(ctx)
        params["train_transform"] = {"name": "linear_train", "size": size, "normalize": normalize_input(ctx),
                                     "repr": repr(linear_train_transform(size=size, normalize=normalize_input(ctx)))}
        params["trunk"] = "frozen, eval mode"
        name = "linear_paper"
    if ov := overrides(ctx, ("epochs", "batch_size", "image_size", "resize", "linear_head")):
        params["overrides"] = ov
    return name, params


def run_linear(ctx: TaskContext, task: str) -> TaskOutput:
    name, params = protocol_linear(ctx, task)
    if ctx.protocol == "fast":
        return _linear_fast(ctx, name, params)
    return _linear_paper(ctx, name, params)


def _linear_fast(ctx: TaskContext, name: str, params: dict) -> TaskOutput:
    from vicreg_bench.tasks.linear_fast import train_linear_on_features

    feats = need_features(ctx)
    layer, _ = feature_layer(ctx)
    train = feats(params["dataset"], params["train_split"], "eval", layer=layer)
    test = feats(params["dataset"], params["test_split"], "eval", layer=layer)
    schedule = "cosine" if params["schedule"] == "cosine" else list(params["schedule"]["milestones"])
    num_classes = max(len(train.class_names), int(train.labels.max()) + 1, int(test.labels.max()) + 1)

    def compute():
        t0 = time.perf_counter()
        r = train_linear_on_features(
            train.features, train.labels, test.features, test.labels, epochs=params["epochs"], lr=params["lr"],
            weight_decay=params["weight_decay"], schedule=schedule, batch_size=params["batch_size"],
            momentum=params["momentum"], nesterov=params["nesterov"], seed=ctx.seed, device=ctx.device,
            num_classes=num_classes)
        return dict(r), time.perf_counter() - t0

    r, seconds = on_main(compute)
    extra = {k: v for k, v in r.items() if k not in ("top1", "top5")}
    extra["skipped_files"] = skipped_files(train, test)
    throughput = extraction_throughput(train, test)
    throughput["train_seconds"] = round(seconds, 3)
    throughput["epochs_per_s"] = round(params["epochs"] / seconds, 3) if seconds > 0 else None
    return TaskOutput(metrics={"top1": float(r["top1"]), "top5": float(r["top5"])}, protocol_name=name,
                      protocol_params=params, dataset=dataset_block(params["dataset"], {"train": train, "test": test}),
                      throughput=throughput, extra=extra)


def _linear_paper(ctx: TaskContext, name: str, params: dict) -> TaskOutput:
    from vicreg_bench.data.registry import open_classification
    from vicreg_bench.data.transforms import linear_train_transform
    from vicreg_bench.features.extract import build_frozen_trunk, default_workers
    from vicreg_bench.tasks.epoch_data import feature_batches

    device = ctx.device
    feats = need_features(ctx)
    layer, _ = feature_layer(ctx)
    test = feats(params["dataset"], params["test_split"], "eval", layer=layer)
    size, _ = image_sizes(ctx)
    train_ds = open_classification(
        params["dataset"], ctx.data_root, params["train_split"],
        transform=linear_train_transform(size=size, normalize=normalize_input(ctx)),
        on_bad_image=ctx.settings.on_bad_image)
    num_classes = len(train_ds.classes)
    if test.class_names and list(test.class_names) != list(train_ds.classes):
        raise ValueError(f"{params['dataset']}: train and {params['test_split']} class lists differ")
    trunk = (feats.model(layer) if hasattr(feats, "model")
             else build_frozen_trunk(ctx.state_dict, ctx.ckpt_info.arch, device, layer))
    dim = test.features.shape[1]

    torch.manual_seed(ctx.seed)
    head = make_head(dim, num_classes, params["head"]).to(device)
    model = Classifier(trunk, head, device, params["precision"], frozen=True)
    optimizer = torch.optim.SGD(head.parameters(), lr=params["lr"], momentum=params["momentum"],
                                weight_decay=params["weight_decay"], nesterov=params["nesterov"])
    scheduler = make_scheduler(optimizer, params["schedule"], params["epochs"])
    workers = ctx.settings.workers if ctx.settings.workers is not None else default_workers(device)
    spec = LoopSpec(mode="freeze", epochs=params["epochs"], batch_size=params["batch_size"], seed=ctx.seed,
                    device=device, workers=workers, state_file=Path(ctx.work_dir) / "linear_state.pt",
                    protocol_hash=protocol_hash(name, params), desc=f"{params['dataset']} linear")

    def evaluate() -> tuple[float, float]:
        top1, top5, _ = evaluate_logits(head, feature_batches(test, device), device)
        return top1, top5

    result = train_epochs(model, optimizer, scheduler, train_ds, evaluate, spec)
    metrics, throughput, extra = summarize(result, extraction_throughput(test), skipped_files(test))
    return TaskOutput(metrics=metrics, protocol_name=name, protocol_params=params,
                      dataset=dataset_block(params["dataset"], {"train": train_ds, "test": test}),
                      throughput=throughput, extra=extra)


def _register(task: str, summary: str, options: type[LinearOptions], columns: tuple[Column, ...],
              published: tuple[PublishedKey, ...], suite: str, order: int, hours: float) -> None:
    dataset = LINEAR_PROTOCOLS[task].dataset

    def protocol(ctx: TaskContext) -> tuple[str, dict]:
        return protocol_linear(ctx, task)

    def run(ctx: TaskContext) -> TaskOutput:
        return run_linear(ctx, task)

    register_task(
        name=task, summary=summary, protocol=protocol, options=options,
        data={dataset: (("classification", "train"), ("classification", "val"))},
        metrics=("top1", "top5"), headline=("top1",), result_schema="classification_task", columns=columns,
        paper_settings={"epochs": options().epochs, "lr": LINEAR_PROTOCOLS[task].lr,
                        "weight_decay": LINEAR_PROTOCOLS[task].weight_decay, "batch_size": BATCH_SIZE},
        published=published, suites=(suite,), order=order, has_fast=True,
        resources=Resources(device="gpu", gpus=8, cpus=80, mem_gb=256, hours=hours),
    )(run)


_register("imagenet_linear", "ImageNet linear probe", LinearOptions,
          (Column("top1", 1, "Linear top-1", 10), Column("top5", 1, "Linear top-5", 20)),
          (PublishedKey("vicreg", 1, "Linear Classification Top-1", "top1"),
           PublishedKey("vicreg", 1, "Linear Classification Top-5", "top5"),
           PublishedKey("dino", 2, "Linear", "top1"), PublishedKey("dinov2", "models", "ImageNet linear", "top1"),
           PublishedKey("mae", "ImageNet-1K", "Linear probing", "top1"),
           PublishedKey("moco_v3", "ViT linear", "linear acc", "top1")), "table1", 30, 24.0)
_register("places205_linear", "Places205 linear probe", Places205LinearOptions,
          (Column("top1", 2, "Places205", 70),), (PublishedKey("vicreg", 2, "Places205", "top1"),), "table2", 40, 24.0)
_register("inat18_linear", "iNaturalist 2018 linear probe", Inat18LinearOptions,
          (Column("top1", 2, "iNat18", 90),), (PublishedKey("vicreg", 2, "iNat18", "top1"),), "table2", 50, 24.0)

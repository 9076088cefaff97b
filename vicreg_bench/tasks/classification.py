"""The classification tasks on a frozen trunk: ImageNet k-NN, VOC07 SVM, and the three linear probes.

Protocols (PROTOCOLS.md, paper appendix B.3/B.4):
- `imagenet_knn`: DINO's weighted k-NN (k in 10/20/100/200, T 0.07) on Resize(256, bicubic) +
  CenterCrop(224) features.
- `voc07_svm`: VISSL's per-class LIBLINEAR SVMs with cross-validated costs, on the VISSL "squash" image
  variant (headline) and, by default, also on the paper's centre-crop variant (`center_crop_mAP`).
- `imagenet_linear`, `places205_linear`, `inat18_linear`, protocol `paper`: augmented training images
  (RandomResizedCrop + flip) go through the frozen trunk in eval mode every epoch, a linear head is
  trained with SGD (momentum 0.9, batch 256) on the table's schedule, and top-1/top-5 are measured on the
  val set after every epoch. The final epoch is the headline, the best epoch is kept as extra.
  The head is BatchNorm1d + Linear (PROTOCOLS.md; VISSL `eval_mlp`), the Linear initialised N(0, 0.01)
  with bias 0 (vicreg evaluate.py). ImageNet: lr 0.02, wd 1e-6, cosine over 100 epochs stepped per epoch
  (evaluate.py, whose head is a plain Linear: `--linear-head linear` reproduces that); Places205 /
  iNat18: the paper's B.4 schedules. Because the trunk is frozen and the test transform is
  deterministic, the per-epoch evaluation reads the cached centre-crop val features: the same numbers
  as pushing the val images through the trunk every epoch, without the cost. A per-epoch checkpoint in
  the task's work dir makes the task resumable.
- protocol `fast`: the same heads and schedules trained on cached centre-crop features of the train
  set (no augmentation) with `vicreg_bench.tasks.linear.train_linear_on_features`. Labelled `linear_fast`.

Under torchrun the paper-protocol linear training is data-parallel (DDP on the head, each process takes
its share of every batch); k-NN, SVM and the fast head run on rank 0 and their output is broadcast.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vicreg_bench import distributed as D
from vicreg_bench.tasks.base import TaskContext, TaskOutput

BATCH_SIZE = 256
MOMENTUM = 0.9
HEAD_INIT = "weight N(0, 0.01), bias 0"


@dataclass(frozen=True)
class LinearProtocol:
    dataset: str
    train_split: str
    test_split: str
    epochs: int
    lr: float
    weight_decay: float
    schedule: str | tuple[int, ...]  # "cosine" (per epoch, to 0) or milestone epochs (lr /10 at each)
    head: str  # "linear" | "bn_linear"
    reference: str


LINEAR_PROTOCOLS: dict[str, LinearProtocol] = {
    "imagenet_linear": LinearProtocol(
        "imagenet", "train", "val", 100, 0.02, 1e-6, "cosine", "bn_linear",
        "paper B.3; facebookresearch/vicreg evaluate.py --weights freeze --lr-head 0.02 (its head is a plain "
        "Linear: --linear-head linear)"),
    "places205_linear": LinearProtocol(
        "places205", "train", "val", 28, 0.003, 1e-4, (4, 8, 12), "bn_linear",
        "paper B.4 (head: VISSL eval_mlp, BatchNorm + Linear)"),
    "inat18_linear": LinearProtocol(
        "inat2018", "train", "val", 84, 0.005, 1e-4, (24, 48, 72), "bn_linear",
        "paper B.4 (head: VISSL eval_mlp, BatchNorm + Linear)"),
}

KNN_KS = (10, 20, 100, 200)
KNN_TEMPERATURE = 0.07
SVM_VARIANTS = ("squash", "center_crop")


# ------------------------------------------------------------------------------------------ shared helpers


def opt(ctx: TaskContext, key: str, default: Any = None) -> Any:
    """A run option, or `default` when the user left it unset (None)."""
    value = ctx.options.get(key)
    return default if value is None else value


def image_sizes(ctx: TaskContext) -> tuple[int, int]:
    """(crop size, resize) of the transforms: paper 224 / 256 unless --image-size / --resize scale them down."""
    size = int(opt(ctx, "image_size", 224))
    resize = opt(ctx, "resize")
    return size, int(resize) if resize is not None else int(round(size * 256 / 224))


def normalize_input(ctx: TaskContext) -> bool:
    return bool(getattr(ctx.ckpt_info, "normalize_input", True))


def precision_of(ctx: TaskContext) -> str:
    from vicreg_bench.features import resolve_precision

    return resolve_precision(opt(ctx, "precision", "auto"), ctx.device)


def transform_params(ctx: TaskContext, name: str) -> dict:
    """The cache transform's parameters, without the repr (kept in the cache key only)."""
    from vicreg_bench.features import build_transform

    size, resize = image_sizes(ctx)
    _, params = build_transform(name, size=size, resize=resize, normalize=normalize_input(ctx))
    return {k: v for k, v in params.items() if k != "repr"}


def overrides(ctx: TaskContext, keys: tuple[str, ...]) -> dict:
    """The scaling flags the user set (recorded so a scaled-down run never passes for the paper's)."""
    return {k: ctx.options[k] for k in keys if ctx.options.get(k) is not None}


def dataset_block(name: str, sets: dict[str, Any]) -> dict:
    """results JSON `dataset`: role -> split, image count and manifest, for FeatureSets or datasets."""
    def count(x: Any) -> int:
        return int(x.num_images) if hasattr(x, "num_images") else len(x)

    def manifest(x: Any) -> str:
        m = x.manifest_sha256
        return m() if callable(m) else m

    return {
        "name": name,
        "splits": {role: x.split for role, x in sets.items()},
        "num_images": {role: count(x) for role, x in sets.items()},
        "manifest_sha256": {role: manifest(x) for role, x in sets.items()},
    }


def skipped_files(*sets: Any) -> list[dict]:
    out: list[dict] = []
    for x in sets:
        out += list(getattr(x, "skipped", []) or [])
    return out


def extraction_throughput(*sets: Any) -> dict:
    """Images/s of the extraction behind each FeatureSet (the original one when it came from the cache)."""
    out = {}
    for fs in sets:
        tp = dict(fs.throughput or {})
        tp["from_cache"] = bool(fs.from_cache)
        out[f"{fs.dataset}/{fs.split}/{fs.transform.get('name')}"] = tp
    return {"extract": out}


def on_main(fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 only and give its result to every rank (a failure fails every rank)."""
    if not D.is_distributed():
        return fn()
    result, error, exc = None, None, None
    if D.is_main():
        try:
            result = fn()
        except Exception as e:  # re-raised below, after the other ranks heard about it
            error, exc = f"{type(e).__name__}: {e}", e
    result, error = D.broadcast_object((result, error))
    if error is not None:
        if exc is not None:
            raise exc
        raise RuntimeError(f"failed on rank 0: {error}")
    return result


def need_features(ctx: TaskContext) -> Callable:
    if ctx.features is None:
        raise RuntimeError("this task needs a feature extractor (ctx.features)")
    return ctx.features


# --------------------------------------------------------------------------------------------------- k-NN


def protocol_imagenet_knn(ctx: TaskContext) -> tuple[str, dict]:
    from vicreg_bench.tasks.knn import knn_protocol_params

    ks = tuple(opt(ctx, "knn_ks", KNN_KS))
    temperature = float(opt(ctx, "knn_temperature", KNN_TEMPERATURE))
    params = {
        **knn_protocol_params(ks, temperature),
        "dataset": "imagenet", "train_split": "train", "test_split": "val",
        "transform": transform_params(ctx, "knn"),
        "precision": precision_of(ctx),
        "layer": "res5avg",
        "reference": "facebookresearch/dino eval_knn.py",
    }
    if ov := overrides(ctx, ("image_size", "resize")):
        params["overrides"] = ov
    return "knn_dino", params


def run_imagenet_knn(ctx: TaskContext) -> TaskOutput:
    from vicreg_bench.tasks.knn import knn_classify, knn_notes

    name, params = protocol_imagenet_knn(ctx)
    feats = need_features(ctx)
    train = feats("imagenet", "train", "knn")
    test = feats("imagenet", "val", "knn")
    num_classes = max(len(train.class_names), int(train.labels.max()) + 1, int(test.labels.max()) + 1)

    def compute():
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # a k above the train size is clamped; knn_notes records it
            warnings.simplefilter("ignore", UserWarning)
            m = knn_classify(train.features, train.labels, test.features, test.labels, ks=params["ks"],
                             temperature=params["temperatures"][0], num_classes=num_classes, device=ctx.device)
        return m, time.perf_counter() - t0

    metrics, seconds = on_main(compute)
    throughput = extraction_throughput(train, test)
    throughput["knn_seconds"] = round(seconds, 3)
    return TaskOutput(
        metrics=metrics, protocol_name=name, protocol_params=params,
        dataset=dataset_block("imagenet", {"train": train, "test": test}), throughput=throughput,
        extra={"notes": knn_notes(train.num_images, params["ks"], ctx.device),
               "skipped_files": skipped_files(train, test)},
    )


# ---------------------------------------------------------------------------------------------------- SVM


def svm_variants(ctx: TaskContext) -> list[str]:
    """--svm-variant squash | center_crop | both (default): the first one is the headline."""
    v = opt(ctx, "svm_variant", "both")
    if v == "both":
        return ["squash", "center_crop"]
    if v not in SVM_VARIANTS:
        raise ValueError(f"svm variant must be squash, center_crop or both, got {v!r}")
    return [v]


def svm_costs(ctx: TaskContext) -> list[float]:
    """VISSL's costs, unless `--option svm_costs=[...]` narrows the search (quick runs; recorded)."""
    from vicreg_bench.tasks.svm import VISSL_COSTS

    costs = opt(ctx, "svm_costs", VISSL_COSTS)
    if isinstance(costs, (int, float)):
        costs = [costs]
    return [float(c) for c in costs]


def protocol_voc07_svm(ctx: TaskContext) -> tuple[str, dict]:
    from vicreg_bench.tasks import svm as svm_mod

    variants = svm_variants(ctx)
    params = {
        "dataset": "voc2007", "train_split": "trainval", "test_split": "test",
        "image_variant": variants[0],
        "extra_variants": variants[1:],
        "transforms": {v: transform_params(ctx, f"svm_{v}") for v in variants},
        "precision": precision_of(ctx),
        "layer": "res5avg",
        "reference": "VISSL tools/train_svm.py, vissl/utils/svm_utils",
    }
    params["svm"] = svm_mod.svm_protocol_params(svm_costs(ctx))
    if ov := overrides(ctx, ("image_size", "resize", "svm_costs")):
        params["overrides"] = ov
    return "svm_vissl", params


def run_voc07_svm(ctx: TaskContext) -> TaskOutput:
    from vicreg_bench.data.voc import VOC_CLASSES
    from vicreg_bench.tasks.svm import train_eval_voc07_svm

    name, params = protocol_voc07_svm(ctx)
    feats = need_features(ctx)
    sets = {v: (feats("voc2007", "trainval", f"svm_{v}"), feats("voc2007", "test", f"svm_{v}"))
            for v in [params["image_variant"], *params["extra_variants"]]}

    def compute():
        out = {}
        for v, (train, test) in sets.items():
            t0 = time.perf_counter()
            r = train_eval_voc07_svm(train.features, train.labels, test.features, test.labels,
                                     class_names=list(VOC_CLASSES), costs=params["svm"]["costs"],
                                     n_jobs=opt(ctx, "svm_jobs"), seed=ctx.seed, image_variant=v)
            r = dict(r)
            r["seconds"] = round(time.perf_counter() - t0, 3)
            out[v] = r
        return out

    results = on_main(compute)
    head = results[params["image_variant"]]
    metrics = {"mAP": float(head["mAP"]), "per_class_AP": {k: float(x) for k, x in head["per_class_AP"].items()}}
    for v in params["extra_variants"]:
        metrics[f"{v}_mAP"] = float(results[v]["mAP"])
    extra = {
        "variants": {v: {k: x for k, x in r.items()} for v, r in results.items()},
        "skipped_files": skipped_files(*[s for pair in sets.values() for s in pair]),
    }
    train, test = sets[params["image_variant"]]
    throughput = extraction_throughput(*[s for pair in sets.values() for s in pair])
    throughput["svm_seconds"] = {v: r["seconds"] for v, r in results.items()}
    return TaskOutput(metrics=metrics, protocol_name=name, protocol_params=params,
                      dataset=dataset_block("voc2007", {"train": train, "test": test}),
                      throughput=throughput, extra=extra)


# ------------------------------------------------------------------------------------------- linear probes


def scaled_milestones(milestones: tuple[int, ...], paper_epochs: int, epochs: int) -> list[int]:
    """The table's lr drops moved proportionally when --epochs shortens the schedule."""
    if epochs == paper_epochs:
        return list(milestones)
    scaled = {int(round(m * epochs / paper_epochs)) for m in milestones}
    return sorted(m for m in scaled if 1 <= m < epochs)


def linear_settings(ctx: TaskContext, task: str) -> dict:
    """The effective optimisation settings of a linear task: the table's, with the user's overrides."""
    p = LINEAR_PROTOCOLS[task]
    epochs = int(opt(ctx, "epochs", p.epochs))
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    schedule: Any = "cosine" if p.schedule == "cosine" else {
        "milestones": scaled_milestones(p.schedule, p.epochs, epochs), "gamma": 0.1}
    return {
        "dataset": p.dataset, "train_split": p.train_split, "test_split": p.test_split,
        "epochs": epochs, "lr": p.lr, "weight_decay": p.weight_decay, "momentum": MOMENTUM, "nesterov": False,
        "batch_size": int(opt(ctx, "batch_size", BATCH_SIZE)), "schedule": schedule, "lr_step": "per epoch",
        "head": opt(ctx, "linear_head", p.head), "head_init": HEAD_INIT, "loss": "cross_entropy",
        "headline": "final epoch", "reference": p.reference,
    }


def protocol_linear(ctx: TaskContext, task: str) -> tuple[str, dict]:
    params = linear_settings(ctx, task)
    params["precision"] = precision_of(ctx)
    params["test_transform"] = transform_params(ctx, "eval")
    if ctx.protocol == "fast":
        if params["head"] != "bn_linear":
            raise ValueError("--linear-head linear is not available with --protocol fast (its head is BN + Linear)")
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


def protocol_imagenet_linear(ctx: TaskContext) -> tuple[str, dict]:
    return protocol_linear(ctx, "imagenet_linear")


def protocol_places205_linear(ctx: TaskContext) -> tuple[str, dict]:
    return protocol_linear(ctx, "places205_linear")


def protocol_inat18_linear(ctx: TaskContext) -> tuple[str, dict]:
    return protocol_linear(ctx, "inat18_linear")


def run_imagenet_linear(ctx: TaskContext) -> TaskOutput:
    return run_linear(ctx, "imagenet_linear")


def run_places205_linear(ctx: TaskContext) -> TaskOutput:
    return run_linear(ctx, "places205_linear")


def run_inat18_linear(ctx: TaskContext) -> TaskOutput:
    return run_linear(ctx, "inat18_linear")


def run_linear(ctx: TaskContext, task: str) -> TaskOutput:
    name, params = protocol_linear(ctx, task)
    if ctx.protocol == "fast":
        return _linear_fast(ctx, name, params)
    return _linear_paper(ctx, name, params)


def _linear_fast(ctx: TaskContext, name: str, params: dict) -> TaskOutput:
    from vicreg_bench.tasks.linear import train_linear_on_features

    feats = need_features(ctx)
    train = feats(params["dataset"], params["train_split"], "eval")
    test = feats(params["dataset"], params["test_split"], "eval")
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


# ----------------------------------------------------------------------- paper protocol: training machinery


class EpochBatches(torch.utils.data.Sampler):
    """This process's part of each global batch of one epoch's seeded permutation.

    Every process draws the same permutation (seed, epoch) and takes a strided slice of each global batch,
    so 1 or N processes see the same global batches. A last batch too small to give every process at least
    2 images (BatchNorm in training mode needs 2) is dropped. `global_sizes` lists the global batch sizes,
    so a loss can be normalised by the global batch whatever its split between processes.
    """

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed, self.epoch = n, batch_size, seed, epoch
        self.rank, self.world_size = rank, world_size
        g = torch.Generator().manual_seed(epoch_seed(seed, epoch))
        perm = torch.randperm(n, generator=g).tolist()
        self.global_batches: list[list[int]] = []
        for b in range(0, n, batch_size):
            chunk = perm[b:b + batch_size]
            if len(chunk) < 2 * world_size and b > 0:
                break
            self.global_batches.append(chunk)
        self.global_sizes = [len(c) for c in self.global_batches]

    def __iter__(self):
        return iter([c[self.rank::self.world_size] for c in self.global_batches])

    def __len__(self) -> int:
        return len(self.global_batches)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    return (int(seed) * 1_000_003 + epoch * 1009 + rank) % (2**63 - 1)


class SeededAugmentation(torch.utils.data.Dataset):
    """Seeds the augmentation RNG from (seed, epoch, image index) before each image is transformed.

    So an image gets the same random crop and flip whichever process or DataLoader worker loads it:
    1 or N processes, 0 or 8 workers, a fresh or a resumed run all train on the same augmented images.
    """

    def __init__(self, dataset, seed: int, epoch: int):
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        torch.manual_seed((epoch_seed(self.seed, self.epoch) * 7_919 + int(i) * 104_729 + 1) % (2**63 - 1))
        return self.dataset[i]


def epoch_loader(dataset, *, batch_size: int, seed: int, epoch: int, workers: int, device: str):
    """DataLoader over this process's share of an epoch; `.batch_sampler.global_sizes` has the global batches."""
    from vicreg_bench.data.base import collate_skipping_bad

    sampler = EpochBatches(len(dataset), batch_size, seed, epoch, D.get_rank(), D.get_world_size())
    return torch.utils.data.DataLoader(
        SeededAugmentation(dataset, seed, epoch),
        batch_sampler=sampler,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        collate_fn=collate_skipping_bad,
        prefetch_factor=4 if workers > 0 else None,
    )


def global_mean_loss(logits: torch.Tensor, targets: torch.Tensor, global_size: int) -> torch.Tensor:
    """Cross-entropy summed over this process's images / the global batch size, times the number of
    processes: after DDP averages the gradients they equal the single-process mean over the global batch."""
    return F.cross_entropy(logits, targets, reduction="sum") * (D.get_world_size() / global_size)


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span the global batch of all processes, on any backend.

    torch's SyncBatchNorm needs CUDA; this one all-reduces (with autograd) the per-feature sums of every
    process, so N gloo or NCCL processes normalise exactly like one process holding the whole batch.
    With one process, or in eval mode, it is a plain BatchNorm1d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and D.is_distributed()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        n = all_reduce(torch.full((1,), float(x.shape[0]), device=x.device, dtype=x.dtype))
        mean = all_reduce(x.sum(0)) / n
        var = all_reduce(((x - mean) ** 2).sum(0)) / n  # biased, as BatchNorm normalises with
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp(min=1)), alpha=m)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


def make_head(dim: int, num_classes: int, kind: str) -> nn.Module:
    """Linear head, N(0, 0.01) weights and zero bias (vicreg evaluate.py); optionally after BatchNorm1d (VISSL)."""
    linear = nn.Linear(dim, num_classes)
    linear.weight.data.normal_(mean=0.0, std=0.01)
    linear.bias.data.zero_()
    if kind == "linear":
        return nn.Sequential(linear)
    if kind == "bn_linear":
        return nn.Sequential(GlobalBatchNorm1d(dim, eps=1e-5, affine=True), linear)
    raise ValueError(f"linear head must be 'linear' or 'bn_linear', got {kind!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Any, epochs: int):
    """Per-epoch lr schedule: cosine to 0 over the epochs (evaluate.py), or /10 at each milestone."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(schedule["milestones"]),
                                                gamma=float(schedule.get("gamma", 0.1)))


@torch.no_grad()
def evaluate_logits(model: nn.Module, batches, device: str) -> tuple[float, float, int]:
    """(top-1, top-5, n) over batches of (inputs, labels), counts summed over processes."""
    from vicreg_bench.metrics import topk_accuracy

    correct1 = correct5 = 0.0
    n = 0
    for x, y in batches:
        logits = model(x).float().cpu()
        acc = topk_accuracy(logits, y, ks=(1, 5))
        correct1 += acc[1] * len(y) / 100.0
        correct5 += acc[5] * len(y) / 100.0
        n += len(y)
    t = D.all_reduce_sum(torch.tensor([correct1, correct5, float(n)], dtype=torch.float64))
    total = max(1.0, float(t[2]))
    return float(t[0]) * 100.0 / total, float(t[1]) * 100.0 / total, int(t[2])


def feature_batches(fs, device: str, batch_size: int = 4096, shard: bool = False):
    """(features on device, labels) batches of a FeatureSet; with `shard`, only this process's share."""
    idx = np.arange(fs.num_images)
    if shard:
        idx = idx[D.get_rank()::D.get_world_size()]
    for b in range(0, len(idx), batch_size):
        sel = idx[b:b + batch_size]
        yield torch.from_numpy(fs.features[sel]).to(device), torch.from_numpy(fs.labels[sel])


def state_path(ctx: TaskContext, stem: str) -> Path:
    return Path(ctx.work_dir) / f"{stem}_state.pt"


def load_state(path: Path, protocol_hash: str) -> dict | None:
    """The per-epoch checkpoint of this protocol, or None (missing, or written by another protocol)."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("protocol_hash") != protocol_hash:
        return None
    return state


def save_state(path: Path, state: dict) -> None:
    from vicreg_bench.fileio import atomic_torch_save

    if D.is_main():
        atomic_torch_save(state, path)
    D.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def default_train_workers(ctx: TaskContext) -> int:
    from vicreg_bench.features import default_workers

    w = opt(ctx, "workers")
    return int(w) if w is not None else default_workers(ctx.device)


def _linear_paper(ctx: TaskContext, name: str, params: dict) -> TaskOutput:
    from tqdm import tqdm

    from vicreg_bench.data.registry import open_classification
    from vicreg_bench.data.transforms import linear_train_transform
    from vicreg_bench.features import build_frozen_trunk, trunk_forward
    from vicreg_bench.results import protocol_hash

    device, precision = ctx.device, params["precision"]
    feats = need_features(ctx)
    test = feats(params["dataset"], params["test_split"], "eval")
    size, _ = image_sizes(ctx)
    train_ds = open_classification(
        params["dataset"], ctx.data_root, params["train_split"],
        transform=linear_train_transform(size=size, normalize=normalize_input(ctx)),
        on_bad_image=opt(ctx, "on_bad_image", "error"))
    num_classes = len(train_ds.classes)
    if test.class_names and list(test.class_names) != list(train_ds.classes):
        raise ValueError(f"{params['dataset']}: train and {params['test_split']} class lists differ")
    trunk = feats.model() if hasattr(feats, "model") else build_frozen_trunk(ctx.state_dict, ctx.ckpt_info.arch, device)
    dim = test.features.shape[1]

    torch.manual_seed(ctx.seed)
    head = make_head(dim, num_classes, params["head"]).to(device)
    optimizer = torch.optim.SGD(head.parameters(), lr=params["lr"], momentum=params["momentum"],
                                weight_decay=params["weight_decay"], nesterov=params["nesterov"])
    scheduler = make_scheduler(optimizer, params["schedule"], params["epochs"])
    phash = protocol_hash(name, params)
    spath = state_path(ctx, "linear")
    state = load_state(spath, phash)
    start, history = 0, []
    if state is not None:
        head.load_state_dict(state["head"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history = int(state["epoch"]), list(state["history"])
    model = nn.parallel.DistributedDataParallel(head) if D.is_distributed() else head
    D.split_batch(params["batch_size"])  # the global batch must divide between the processes
    workers = default_train_workers(ctx)
    train_rates = []
    skipped: list[dict] = []
    for epoch in range(start, params["epochs"]):
        head.train()
        loader = epoch_loader(train_ds, batch_size=params["batch_size"], seed=ctx.seed, epoch=epoch,
                              workers=workers, device=device)
        t0, seen, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(loader, desc=f"{params['dataset']} linear epoch {epoch + 1}/{params['epochs']}",
                   disable=not D.is_main(), unit="batch", dynamic_ncols=True, mininterval=2.0)
        for (good, bad), global_size in zip(bar, loader.batch_sampler.global_sizes):
            skipped += [{"index": b.index, "path": b.path, "error": b.error} for b in bad]
            if good is None:
                continue
            images, targets, _ = good
            with torch.no_grad():
                x = trunk_forward(trunk, images, device, precision)
            loss = global_mean_loss(model(x), targets.to(device), global_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(targets)
            loss_sum += loss.item() / D.get_world_size()
            steps += 1
        loss_sum = float(D.all_reduce_sum(torch.tensor([loss_sum], dtype=torch.float64))[0])
        check_finite(loss_sum, "training loss")
        seconds = time.perf_counter() - t0
        rate = float(D.all_reduce_sum(torch.tensor([float(seen)]))[0]) / seconds if seconds > 0 else 0.0
        train_rates.append(rate)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        head.eval()
        top1, top5, _ = evaluate_logits(head, feature_batches(test, device), device)
        history.append({"epoch": epoch + 1, "top1": top1, "top5": top5, "lr": lr,
                        "loss": loss_sum / max(1, steps), "train_images_per_s": round(rate, 2)})
        save_state(spath, {"protocol_hash": phash, "epoch": epoch + 1, "head": head.state_dict(),
                           "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "history": history})
    return _linear_output(name, params, history, test, train_ds, train_rates, skipped, resumed_from=start)


def _linear_output(name: str, params: dict, history: list[dict], test, train_ds, train_rates: list[float],
                   skipped: list[dict], resumed_from: int) -> TaskOutput:
    final = history[-1]
    best = max(history, key=lambda h: h["top1"])
    throughput = extraction_throughput(test)
    if train_rates:
        throughput["train_images_per_s"] = round(float(np.mean(train_rates)), 2)
    all_skipped = skipped_files(test) + [s for part in D.all_gather_objects(skipped) for s in part]
    return TaskOutput(
        metrics={"top1": float(final["top1"]), "top5": float(final["top5"])},
        protocol_name=name, protocol_params=params,
        dataset=dataset_block(params["dataset"], {"train": train_ds, "test": test}),
        throughput=throughput,
        extra={"best_top1": float(best["top1"]), "best_top5": float(best["top5"]), "best_epoch": int(best["epoch"]),
               "history": history, "resumed_from_epoch": resumed_from, "skipped_files": all_skipped},
    )


def check_finite(x: float, what: str) -> None:
    if not math.isfinite(x):
        raise FloatingPointError(f"{what} is not finite ({x})")

"""The one resumable epoch loop of the classification protocols: frozen trunk (linear probe) or fine-tuning.

As facebookresearch/vicreg's evaluate.py does with `--weights freeze|finetune`, one loop trains a
`Classifier` (trunk + head) in either mode:
- `freeze`: the trunk stays in eval mode and runs under no_grad; only the head learns (the linear probes
  with the paper protocol);
- `finetune`: trunk and head learn, the trunk's BatchNorm layers use batch statistics per process, as in
  evaluate.py (semi-supervised fine-tuning on 1% / 10% of the ImageNet labels).

Every epoch: this process's share of seeded global batches (`epoch_data`), SGD steps with the loss
normalised by the global batch (DDP averages the gradients), one scheduler step, an evaluation every
`eval_every` epochs and at the last, and a checkpoint in the task's work dir. A run that stops resumes
from the last finished epoch, provided the protocol hash is the same.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vicreg_bench import distributed as D
from vicreg_bench.tasks.epoch_data import epoch_loader

Mode = Literal["freeze", "finetune"]
MOMENTUM = 0.9


class Classifier(nn.Module):
    """Trunk + head; the trunk runs under autocast (bf16 on GPUs), the head in float32. A frozen trunk
    stays in eval mode and computes no gradients whatever mode the classifier is put in."""

    def __init__(self, trunk: nn.Module, head: nn.Module, device: str, precision: str, frozen: bool):
        super().__init__()
        self.trunk, self.head = trunk, head
        self.device, self.precision, self.frozen = device, precision, frozen

    def features(self, images: torch.Tensor) -> torch.Tensor:
        from vicreg_bench.features.extract import trunk_forward

        if self.frozen:
            with torch.no_grad():
                return trunk_forward(self.trunk, images, self.device, self.precision)
        return trunk_forward(self.trunk, images, self.device, self.precision)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.frozen:
            self.trunk.eval()
        return self


def global_mean_loss(logits: torch.Tensor, targets: torch.Tensor, global_size: int) -> torch.Tensor:
    """Cross-entropy summed over this process's images / the global batch size, times the number of
    processes: after DDP averages the gradients they equal the single-process mean over the global batch."""
    return F.cross_entropy(logits, targets, reduction="sum") * (D.get_world_size() / global_size)


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: Any, epochs: int):
    """Per-epoch lr schedule: cosine to 0 over the epochs (evaluate.py), or /10 at each milestone."""
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(schedule["milestones"]),
                                                gamma=float(schedule.get("gamma", 0.1)))


@torch.no_grad()
def evaluate_logits(model: Callable[[torch.Tensor], torch.Tensor], batches, device: str) -> tuple[float, float, int]:
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


def check_finite(x: float, what: str) -> None:
    if not math.isfinite(x):
        raise FloatingPointError(f"{what} is not finite ({x})")


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


@dataclass
class LoopSpec:
    """How to train: mode, schedule length, batches, evaluation cadence, and where the state lives."""

    mode: Mode
    epochs: int
    batch_size: int
    seed: int
    device: str
    workers: int
    state_file: Path
    protocol_hash: str
    desc: str  # progress-bar prefix
    eval_every: int = 1
    lr_names: tuple[str, ...] = ("lr",)  # history name of each optimizer param group's lr


@dataclass
class LoopResult:
    history: list[dict]  # per epoch: epoch, lrs, loss, train_images_per_s, and top1/top5 when evaluated
    train_rates: list[float]
    skipped: list[dict]  # undecodable training images of every process
    resumed_from: int

    def evaluated(self) -> list[dict]:
        return [h for h in self.history if "top1" in h]


def train_epochs(model: Classifier, optimizer: torch.optim.Optimizer, scheduler, train_ds,
                 evaluate: Callable[[], tuple[float, float]], spec: LoopSpec,
                 scaler: torch.amp.GradScaler | None = None) -> LoopResult:
    """Train `model` for the remaining epochs of `spec`, resuming from its state file when there is one.

    `evaluate()` returns (top-1, top-5) of the model in eval mode; it is called after every
    `eval_every` epochs and after the last.
    """
    from tqdm import tqdm

    frozen = spec.mode == "freeze"
    scaler = scaler or torch.amp.GradScaler("cuda", enabled=False)
    state_key = "head" if frozen else "model"
    trained = model.head if frozen else model
    state = load_state(spec.state_file, spec.protocol_hash)
    start, history = 0, []
    if state is not None:
        trained.load_state_dict(state[state_key])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start, history = int(state["epoch"]), list(state["history"])
    ddp = nn.parallel.DistributedDataParallel(trained) if D.is_distributed() else trained
    D.split_batch(spec.batch_size)  # the global batch must divide between the processes
    rates: list[float] = []
    skipped: list[dict] = []
    for epoch in range(start, spec.epochs):
        ddp.train()
        loader = epoch_loader(train_ds, batch_size=spec.batch_size, seed=spec.seed, epoch=epoch,
                              workers=spec.workers, device=spec.device)
        t0, seen, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(loader, desc=f"{spec.desc} epoch {epoch + 1}/{spec.epochs}", disable=not D.is_main(),
                   unit="batch", dynamic_ncols=True, mininterval=2.0)
        for (good, bad), global_size in zip(bar, loader.batch_sampler.global_sizes):
            skipped += [{"index": b.index, "path": b.path, "error": b.error} for b in bad]
            if good is None:
                continue
            images, targets, _ = good
            logits = ddp(model.features(images)) if frozen else ddp(images)
            loss = global_mean_loss(logits, targets.to(spec.device), global_size)
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
        lrs = {name: group["lr"] for name, group in zip(spec.lr_names, optimizer.param_groups)}
        scheduler.step()
        entry = {"epoch": epoch + 1, **lrs, "loss": loss_sum / max(1, steps), "train_images_per_s": round(rate, 2)}
        if epoch + 1 == spec.epochs or (epoch + 1) % spec.eval_every == 0:
            model.eval()
            top1, top5 = evaluate()
            entry.update(top1=top1, top5=top5)
        history.append(entry)
        save_state(spec.state_file, {"protocol_hash": spec.protocol_hash, "epoch": epoch + 1,
                                     state_key: trained.state_dict(), "optimizer": optimizer.state_dict(),
                                     "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                                     "history": history})
    all_skipped = [s for part in D.all_gather_objects(skipped) for s in part]
    return LoopResult(history, rates, all_skipped, start)


def summarize(result: LoopResult, throughput: dict | None = None,
              skipped_before: list[dict] | None = None) -> tuple[dict, dict, dict]:
    """(metrics, throughput, extra) of a finished loop: the final epoch's top-1/5 is the headline, the best
    epoch and the history are kept as extra. `skipped_before`: undecodable images found before training."""
    evaluated = result.evaluated()
    final, best = evaluated[-1], max(evaluated, key=lambda h: h["top1"])
    throughput = dict(throughput or {})
    if result.train_rates:
        throughput["train_images_per_s"] = round(float(np.mean(result.train_rates)), 2)
    extra = {"best_top1": float(best["top1"]), "best_top5": float(best["top5"]), "best_epoch": int(best["epoch"]),
             "history": result.history, "resumed_from_epoch": result.resumed_from,
             "skipped_files": list(skipped_before or []) + result.skipped}
    return {"top1": float(final["top1"]), "top5": float(final["top5"])}, throughput, extra

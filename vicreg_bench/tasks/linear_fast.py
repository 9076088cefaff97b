"""Linear probe on cached frozen features (`--protocol fast`): BatchNorm1d + Linear, SGD.

The head and optimiser are the paper protocol's (PROTOCOLS.md): BatchNorm1d (affine, eps 1e-5) on
the res5avg feature, then Linear, initialised N(0, 0.01) with bias 0 (vicreg evaluate.py); SGD with
momentum 0.9, batch 256, cross-entropy; the learning rate follows the task's schedule, set once per
epoch (cosine over all epochs for ImageNet, /10 at milestone epochs for Places205 and iNat18).
The final epoch is the headline; the best epoch is kept as extra information.

What makes it "fast", and different from the paper protocol: the features are computed once from
center-cropped images (no RandomResizedCrop/flip augmentation per epoch), kept as one tensor on the
device, and shuffled by index each epoch (no DataLoader). Numbers are therefore NOT the paper's
linear-probe numbers: results record the protocol as `linear_fast`.

`vicreg-bench linear` runs it on feature files; the linear tasks run it with `--protocol fast`.
"""

from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np

from vicreg_bench.errors import UserError

# Settings of the linear protocols (PROTOCOLS.md table; the *_vissl rows are VISSL's benchmark configs).
LINEAR_PRESETS: dict[str, dict] = {
    "imagenet": {"lr": 0.02, "weight_decay": 1e-6, "epochs": 100, "schedule": "cosine", "nesterov": False, "bn_weight_decay": True},
    "places205": {"lr": 0.003, "weight_decay": 1e-4, "epochs": 28, "schedule": [4, 8, 12], "nesterov": False, "bn_weight_decay": True},
    "inat18": {"lr": 0.005, "weight_decay": 1e-4, "epochs": 84, "schedule": [24, 48, 72], "nesterov": False, "bn_weight_decay": True},
    "places205_vissl": {"lr": 0.01, "weight_decay": 5e-4, "epochs": 14, "schedule": [4, 8, 12], "nesterov": True, "bn_weight_decay": False},
    "inat18_vissl": {"lr": 0.01, "weight_decay": 5e-4, "epochs": 84, "schedule": [24, 48, 72], "nesterov": True, "bn_weight_decay": False},
}


def learning_rate(base_lr: float, epoch: int, epochs: int, schedule: str | Sequence[int]) -> float:
    """LR used during `epoch` (0-based): cosine annealing to 0 over `epochs` (torch's
    CosineAnnealingLR stepped per epoch, as in vicreg evaluate.py), or base_lr / 10 per milestone passed."""
    if isinstance(schedule, str):
        if schedule != "cosine":
            raise UserError(f"--schedule {schedule!r}: expected 'cosine' or milestone epochs")
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    return base_lr * 0.1 ** sum(epoch >= m for m in schedule)


def build_head(dim: int, num_classes: int):
    """BatchNorm1d(dim, eps 1e-5, affine) -> Linear(dim, num_classes) with weight N(0, 0.01), bias 0: the
    classification protocols' head (`vicreg_bench.tasks.heads.make_head`), trained here on one process."""
    from vicreg_bench.tasks.heads import make_head

    return make_head(dim, num_classes, "bn_linear", sync_across_processes=False)


class _cpu_threads:
    """Use fewer CPU threads for small heads: with tiny matrices, OpenMP synchronisation costs more than it
    saves (and on a busy machine a spinning 2-thread barrier can make each step 20x slower)."""

    def __init__(self, device, work_per_step: float):
        self.active = device.type == "cpu" and work_per_step < 5e7

    def __enter__(self):
        import torch

        self.saved = torch.get_num_threads()
        if self.active:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.saved)


def _evaluate(model, x, y, chunk: int = 16384) -> tuple[float, float, float]:
    import torch
    import torch.nn.functional as F

    from vicreg_bench.metrics import topk_accuracy

    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
        loss = float(F.cross_entropy(logits, y))
        acc = topk_accuracy(logits, y, ks=(1, 5))
    return acc[1], acc[5], loss


def _train_epochs(model, optimizer, x, y, xt, yt, bar, lr, epochs, schedule, batch_size, generator, history) -> None:
    """The epoch loop: set the epoch's lr, one pass over a fresh permutation, evaluate, record."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    for epoch in bar:
        epoch_lr = learning_rate(lr, epoch, epochs, schedule)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr
        model.train()
        perm = torch.randperm(n, generator=generator).to(x.device)
        total_loss = torch.zeros((), device=x.device)
        seen = 0
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            if idx.numel() < 2:  # BatchNorm cannot train on a single sample: skip a last batch of one
                continue
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * idx.numel()
            seen += idx.numel()
        top1, top5, test_loss = _evaluate(model, xt, yt)
        history.append({"epoch": epoch + 1, "lr": epoch_lr, "train_loss": float(total_loss) / seen,
                        "top1": top1, "top5": top5, "test_loss": test_loss})
        bar.set_postfix(top1=f"{top1:.2f}")


def train_linear_on_features(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    schedule: str | Sequence[int],
    batch_size: int = 256,
    momentum: float = 0.9,
    nesterov: bool = False,
    seed: int = 0,
    device: str = "cpu",
    num_classes: int | None = None,
    bn_weight_decay: bool = True,
    progress: bool = False,
) -> dict:
    """Train the BN + linear head on features and evaluate after every epoch.

    Returns `top1`, `top5` (percent, final epoch), `best_top1`, `best_epoch` (1-based), `history`
    (per epoch: epoch, lr, train_loss, top1, top5, test_loss), `seconds`, `epochs_per_second`.
    Same seed, same inputs, same device -> same numbers.
    """
    import torch
    from tqdm import tqdm

    if epochs < 1:
        raise UserError(f"--epochs must be >= 1, got {epochs}")
    if batch_size < 2:
        raise UserError(f"--batch-size must be >= 2 (BatchNorm needs 2 samples), got {batch_size}")
    if lr <= 0 or weight_decay < 0:
        raise UserError(f"need lr > 0 and weight decay >= 0, got lr {lr}, wd {weight_decay}")
    if not isinstance(schedule, str) and any(int(m) < 1 for m in schedule):
        raise UserError(f"--schedule milestones must be epochs >= 1, got {list(schedule)}")
    train_y = np.asarray(train_y, dtype=np.int64).reshape(-1)
    test_y = np.asarray(test_y, dtype=np.int64).reshape(-1)
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise UserError("features and labels have different numbers of rows")
    if train_x.shape[1] != test_x.shape[1]:
        raise UserError(f"train features are {train_x.shape[1]}-d but test features {test_x.shape[1]}-d")
    if train_x.shape[0] < 2:
        raise UserError("the linear probe needs at least 2 train features (BatchNorm)")
    needed = int(max(train_y.max(), test_y.max())) + 1
    num_classes = needed if num_classes is None else int(num_classes)
    if num_classes < needed:
        raise UserError(f"num_classes {num_classes} is smaller than the largest label + 1 ({needed})")

    start = time.perf_counter()
    dev = torch.device(device)
    torch.manual_seed(seed)
    model = build_head(train_x.shape[1], num_classes).to(dev)
    x = torch.as_tensor(np.ascontiguousarray(train_x, dtype=np.float32), device=dev)
    y = torch.as_tensor(train_y, device=dev)
    xt = torch.as_tensor(np.ascontiguousarray(test_x, dtype=np.float32), device=dev)
    yt = torch.as_tensor(test_y, device=dev)
    bn_params = list(model[0].parameters())
    groups = [{"params": list(model[1].parameters()), "weight_decay": weight_decay},
              {"params": bn_params, "weight_decay": weight_decay if bn_weight_decay else 0.0}]
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    generator = torch.Generator(device="cpu").manual_seed(seed)

    history = []
    bar = tqdm(range(epochs), desc="linear probe", unit="epoch", disable=not progress, leave=False)
    with _cpu_threads(dev, float(batch_size) * x.shape[1] * num_classes):
        _train_epochs(model, optimizer, x, y, xt, yt, bar, lr, epochs, schedule, batch_size, generator, history)
    seconds = time.perf_counter() - start
    best = max(history, key=lambda h: (h["top1"], -h["epoch"]))  # earliest epoch among equal bests
    return {
        "top1": history[-1]["top1"], "top5": history[-1]["top5"], "best_top1": best["top1"],
        "best_epoch": best["epoch"], "history": history, "seconds": seconds, "epochs_per_second": epochs / seconds,
    }


def linear_protocol_params(epochs, lr, weight_decay, schedule, batch_size=256, momentum=0.9, nesterov=False,
                           bn_weight_decay=True) -> dict:
    """Every setting that changes the fast linear numbers (for the results JSON protocol hash)."""
    return {
        "head": "BatchNorm1d(eps=1e-5, affine) + Linear, N(0, 0.01) init", "features": "cached center-crop",
        "epochs": int(epochs), "lr": float(lr), "weight_decay": float(weight_decay),
        "schedule": schedule if isinstance(schedule, str) else [int(m) for m in schedule],
        "batch_size": int(batch_size), "momentum": float(momentum), "nesterov": bool(nesterov),
        "bn_weight_decay": bool(bn_weight_decay),
    }

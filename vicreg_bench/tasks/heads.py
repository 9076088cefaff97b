"""The one linear head of the classification protocols, and the BatchNorm that spans all processes.

The head is a Linear layer initialised N(0, 0.01) with bias 0 (vicreg evaluate.py), optionally after a
BatchNorm1d (VISSL's eval_mlp, PROTOCOLS.md). Under torchrun its BatchNorm normalises with the statistics
of the global batch, so N processes train exactly like one holding the whole batch.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vicreg_bench import distributed as D

HEAD_INIT = "weight N(0, 0.01), bias 0"
HEAD_KINDS = ("bn_linear", "linear")


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span the global batch of all processes, on any backend.

    torch's SyncBatchNorm needs CUDA; this one all-reduces (with autograd) the per-feature sums of every
    process, so N gloo or NCCL processes normalise exactly like one process holding the whole batch.
    With one process, in eval mode, or with `sync_across_processes` False, it is a plain BatchNorm1d.
    """

    sync_across_processes = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.sync_across_processes and D.is_distributed()):
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


def make_head(dim: int, num_classes: int, kind: str, sync_across_processes: bool = True) -> nn.Sequential:
    """Linear head, N(0, 0.01) weights and zero bias (vicreg evaluate.py); with kind "bn_linear", after a
    BatchNorm1d (affine, eps 1e-5) whose training statistics span every process unless
    `sync_across_processes` is False (a head trained on one rank only)."""
    linear = nn.Linear(dim, num_classes)
    linear.weight.data.normal_(mean=0.0, std=0.01)
    linear.bias.data.zero_()
    if kind == "linear":
        return nn.Sequential(linear)
    if kind == "bn_linear":
        bn = GlobalBatchNorm1d(dim, eps=1e-5, affine=True)
        bn.sync_across_processes = sync_across_processes
        return nn.Sequential(bn, linear)
    raise ValueError(f"linear head must be one of {', '.join(HEAD_KINDS)}, got {kind!r}")

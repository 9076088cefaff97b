"""BatchNorm for detection fine-tuning: trainable BN with one process, synchronised BN across processes.

The protocol (MoCo's detectron2 configs, FREEZE_AT 0) fine-tunes every BN layer with batch statistics and
synchronises them over GPUs with detectron2's "naiveSyncBN": per-channel mean and mean of squares averaged
over processes (one all-reduce), var = E[x^2] - E[x]^2, gradients flowing through the all-reduce. We implement
the same here because torch's SyncBatchNorm refuses CPU tensors (gloo), and so that CPU and CUDA agree.

`precise_bn` is detectron2's TEST.PRECISE_BN: before evaluation, replace the running statistics by the plain
average of the batch statistics of `num_iters` training batches (BN momentum set to None = cumulative average).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn as nn

from vicreg_bench.distributed import all_reduce_sum_with_grad


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class NaiveSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are averaged over all processes (equal weight per process)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        world = _world_size()
        if not self.training or world == 1:
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        if x.numel() > 0:
            stats = torch.cat([xf.mean(dim=[0, 2, 3]), (xf * xf).mean(dim=[0, 2, 3])])
        else:  # an empty batch on this process still takes part in the all-reduce
            stats = xf.sum(dim=[0, 2, 3]).repeat(2) * 0.0
        stats = all_reduce_sum_with_grad(stats) / world
        mean, meansqr = stats[:c], stats[c:]
        var = (meansqr - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.add_(momentum * (mean.detach() - self.running_mean))
            self.running_var.add_(momentum * (var.detach() - self.running_var))
        invstd = torch.rsqrt(var + self.eps)
        scale = self.weight * invstd
        shift = self.bias - mean * scale
        return (xf * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)).to(x.dtype)


def convert_to_sync_bn(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d (not frozen ones) by NaiveSyncBatchNorm, keeping parameters and statistics."""
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, NaiveSyncBatchNorm):
        out = NaiveSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.to(next(iter(module.state_dict().values())).device)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_to_sync_bn(child))
    return out


def bn_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]


@torch.no_grad()
def precise_bn(model: nn.Module, batches: Iterable, forward: Callable[[object], None], num_iters: int) -> int:
    """Recompute BN running statistics as the average over `num_iters` batches; returns the batches used."""
    was_training = model.training
    model.train()
    bns = bn_modules(model)
    if not bns or num_iters <= 0:
        model.train(was_training)
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean of the batch statistics
    used = 0
    for batch in batches:
        if used >= num_iters:
            break
        forward(batch)
        used += 1
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.train(was_training)
    return used


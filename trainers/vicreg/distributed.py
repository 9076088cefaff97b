"""Process-group setup and the collectives the VICReg loss and batch norm need.

One code path serves every scale: a single process (no process group), `torchrun` on one or several
machines (it sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT), and SLURM (`srun`, or
submitit through `trainers.vicreg.slurm`, which exports the same variables).

The gathers here have a gradient-correct backward: every rank computes the variance and covariance
terms on the gathered global batch, so the gradient reaching rank r's slice is the sum over ranks of
the gradients of their losses. DDP then averages the parameter gradients over ranks, which makes the
distributed step equal to one process that sees the whole global batch.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from vicreg_bench.distributed import all_reduce_sum_with_grad, is_distributed
from vicreg_bench.errors import UserError


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None


def _slurm_master_addr() -> str | None:
    """First host of the SLURM allocation (what `scontrol show hostnames` lists first)."""
    nodelist = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST")
    if not nodelist:
        return None
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return None


def resolve_device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible to torch (use --device cpu or auto)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested == "cpu":
        return torch.device("cpu")
    raise UserError(f"--device: expected auto, cpu or cuda, got {requested!r}")


def init_distributed(device: str = "auto", dist_url: str = "env://", backend: str | None = None) -> DistEnv:
    """Read the launcher's environment; start a process group only when there are several processes."""
    rank, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if rank is None and _env_int("SLURM_PROCID") is not None and (_env_int("SLURM_NTASKS") or 1) > 1:
        # Plain `srun vicreg-train ...` (one task per GPU) without torchrun.
        rank, world, local = _env_int("SLURM_PROCID"), _env_int("SLURM_NTASKS"), _env_int("SLURM_LOCALID")
        if dist_url == "env://":
            os.environ.setdefault("MASTER_ADDR", _slurm_master_addr() or "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(29500 + (_env_int("SLURM_JOB_ID") or 0) % 20000))
    rank = rank or 0
    world = world or 1
    local = local if local is not None else rank
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, init_method=dist_url, world_size=world, rank=rank)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


class _GatherWithGrad(torch.autograd.Function):
    """Concatenate every rank's tensor along dim 0; backward sums the incoming gradients over ranks
    and hands each rank the rows it contributed."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ws = dist.get_world_size()
        ctx.rows = x.shape[0]
        out = x.new_empty((ws * x.shape[0], *x.shape[1:]))
        dist.all_gather_into_tensor(out, x.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All-gather rows from every rank (rank order), differentiable; identity with one process."""
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over ranks, no gradient (logging and diagnostics)."""
    if not is_distributed():
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / dist.get_world_size()


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose statistics cover the global batch, for CPU process groups (gloo).

    torch's SyncBatchNorm only runs on accelerators; this one builds the same computation from
    differentiable all-reduces (two passes: mean, then centred variance), so a 2-process CPU run equals
    one process with the global batch. Running statistics follow torch's BatchNorm (unbiased variance).
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and is_distributed()):
            return super().forward(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        dims = [0] + list(range(2, input.dim()))
        shape = [1, -1] + [1] * (input.dim() - 2)
        x = input.float()
        local_count = x.numel() // x.shape[1]
        count = float(local_count * dist.get_world_size())
        mean = all_reduce_sum_with_grad(x.sum(dim=dims)) / count
        centred = x - mean.view(shape)
        var = all_reduce_sum_with_grad(centred.pow(2).sum(dim=dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                unbiased = var * (count / max(count - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """torch's SyncBatchNorm on accelerators; CPUSyncBatchNorm on CPU. Parameters and buffers carry over."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


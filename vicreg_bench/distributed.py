"""torchrun / gloo helpers for the harness: one code path for 1 process, N GPUs, or N CPU processes.

`vicreg-bench run` works unchanged under `torchrun --nproc_per_node N`: `init_from_env` joins the process
group that torchrun describes in the environment (NCCL on CUDA, gloo on CPU); with one process every helper
here degrades to a no-op, so the single-process path is the same code. Feature extraction splits images
between ranks with `shard`, training splits each batch between ranks, and only rank 0 writes results.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    backend: str | None  # None when running as a single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """World size announced by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str = "cpu", timeout_min: float = 60.0) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Backend: NCCL when the device is CUDA, else gloo. On CUDA each process takes GPU `LOCAL_RANK`.
    The timeout is long because rank 0 alone runs k-NN / SVM while the others wait at a barrier.
    """
    world = env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1:
        return DistInfo(0, 1, 0, None)
    if str(device).startswith("cuda"):
        torch.cuda.set_device(local_rank)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_min))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shard(items: Sequence[Any], rank: int | None = None, world_size: int | None = None) -> list[Any]:
    """This rank's share of `items`: every world_size-th item starting at `rank` (no padding, no duplicates)."""
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    return list(items[rank::world_size])


def split_batch(batch_size: int, world_size: int | None = None) -> int:
    """Per-process batch of a global batch, which must divide evenly (as in the reference scripts)."""
    world_size = get_world_size() if world_size is None else world_size
    if batch_size % world_size:
        raise ValueError(f"batch size {batch_size} is not divisible by the {world_size} processes")
    return batch_size // world_size


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (any picklable object)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's `obj` on rank 0 (in rank order); None on the other ranks."""
    gathered = all_gather_objects(obj)
    return gathered if is_main() else None


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank (so all ranks take the same decision)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks in place (counts of correct predictions, losses).

    NCCL reduces only CUDA tensors: a CPU tensor makes a round trip through this rank's GPU.
    """
    if not is_distributed():
        return t
    if dist.get_backend() == "nccl" and not t.is_cuda:
        on_gpu = t.to(f"cuda:{torch.cuda.current_device()}")
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        t.copy_(on_gpu.cpu())
        return t
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


class _AllReduceSumWithGrad(torch.autograd.Function):
    """y = sum over ranks of x; the gradient w.r.t. x is the sum over ranks of dL/dy (each rank's loss
    depends on every rank's x), so the backward is an all-reduce too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (synchronised batch norms); identity with one process."""
    if not is_distributed():
        return x
    return _AllReduceSumWithGrad.apply(x)


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (used to fail all ranks together)."""
    if not is_distributed():
        return bool(flag)
    return any(all_gather_objects(bool(flag)))


def cleanup() -> None:
    """Leave the process group together: a barrier first, so that no rank tears its gloo connections down
    while a peer still uses them (seen under load as a peer's SIGABRT, "terminate called without an active
    exception", after the work had finished)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()

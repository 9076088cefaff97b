"""Training and inference loop of the torchvision engine: detectron2's solver semantics in plain PyTorch.

- SGD with the protocol's WarmupMultiStepLR (`schedule.Schedule`), no weight decay on BN parameters.
- One process, or several under torchrun (gloo on CPU, NCCL on CUDA): each process takes an equal share of the
  global batch (detectron2's per-GPU batch), BN is synchronised across processes (`sync_bn`), gradients
  through DistributedDataParallel.
- Data order: an infinite, seeded stream (a new permutation per epoch, shared by all processes, each taking
  every world_size-th image), grouped into batches of images of the same orientation (detectron2's
  ASPECT_RATIO_GROUPING). Each image's augmentation draws from its own seed, so a run is reproducible and a
  resumed run sees exactly the batches it would have seen.
- Checkpoint every `checkpoint_period` iterations (model, optimizer, RNG states), written atomically;
  a restarted run with the same settings resumes from it.
- TEST.PRECISE_BN before evaluation; AMP (bf16 or fp16) and channels_last on CUDA.
- Iteration time and images/s are measured (median after the first iterations) and returned.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from vicreg_bench.detection.schedule import Schedule
from vicreg_bench.detection.sync_bn import convert_to_sync_bn, precise_bn
from vicreg_bench.detection.tv_data import (
    ConcatDetection,
    GroupedInfiniteBatches,
    TestView,
    TrainView,
    collate,
    trainable_indices,
)
from vicreg_bench.detection.transforms import InputSizes
from vicreg_bench.fileio import atomic_torch_save

CHECKPOINT_NAME = "checkpoint_last.pth"


@dataclass
class EngineSettings:
    schedule: Schedule
    sizes: InputSizes
    checkpoint_period: int = 5000
    precise_bn_iters: int = 200  # detectron2 TEST.PRECISE_BN.NUM_ITER; 0 turns it off
    num_workers: int = 4
    amp: str = "off"  # "off" | "bf16" | "fp16" (CUDA only)
    channels_last: bool = False
    log_period: int = 20
    seed: int = 0
    box_offset: float = 0.0  # 1 for VOC (1-based pixel boxes), 0 for COCO
    with_masks: bool = False
    drop_crowd: bool = False
    stop_after: int | None = None  # stop (as if interrupted) once this iteration is reached; for tests
    fingerprint: str = ""  # identifies the settings + initial weights; a checkpoint resumes only when equal

    def as_dict(self) -> dict:
        return {
            "schedule": self.schedule.as_dict(),
            "input_sizes": self.sizes.as_dict(),
            "checkpoint_period": self.checkpoint_period,
            "precise_bn_iters": self.precise_bn_iters,
            "amp": self.amp,
            "channels_last": self.channels_last,
            "box_offset": self.box_offset,
            "with_masks": self.with_masks,
            "drop_crowd": self.drop_crowd,
            "seed": self.seed,
        }


@dataclass
class TrainResult:
    completed: bool
    iterations_done: int
    resumed_from: int
    iter_time_s: float | None
    data_time_s: float | None
    train_images_per_s: float | None
    loss_history: list[dict] = field(default_factory=list)
    precise_bn_batches: int = 0
    seconds: float = 0.0


def dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_optimizer(model: nn.Module, schedule: Schedule) -> torch.optim.SGD:
    """SGD; normalisation parameters get WEIGHT_DECAY_NORM (0), every other parameter WEIGHT_DECAY."""
    norm_types = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)
    norm_params, other = [], []
    seen: set[int] = set()
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (norm_params if isinstance(module, norm_types) else other).append(p)
    groups = [{"params": other, "weight_decay": schedule.weight_decay}]
    if norm_params:
        groups.append({"params": norm_params, "weight_decay": schedule.weight_decay_norm})
    return torch.optim.SGD(groups, lr=schedule.lr_at(0), momentum=schedule.momentum)


def _autocast(device: torch.device, amp: str):
    if device.type != "cuda" or amp == "off":
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _to_device(images, targets, device, channels_last: bool):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]
    return images, targets


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def train_detector(
    model: nn.Module,
    data: ConcatDetection,
    settings: EngineSettings,
    work_dir: Path,
    device: str | torch.device,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, TrainResult]:
    """Fine-tune `model` on `data`; returns the trained (unwrapped) model and what happened."""
    t_start = time.perf_counter()
    device = torch.device(device)
    rank, world = dist_info()
    s = settings
    sched = s.schedule
    if sched.ims_per_batch % world:
        raise ValueError(f"the global batch {sched.ims_per_batch} is not divisible by the {world} processes")
    per_rank = sched.ims_per_batch // world
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    if world > 1:
        model = convert_to_sync_bn(model)
    model.to(device)
    if s.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, sched)
    scaler = torch.amp.GradScaler("cuda", enabled=(device.type == "cuda" and s.amp == "fp16"))

    start_iter = 0
    ckpt_path = work_dir / CHECKPOINT_NAME
    if ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") == s.fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if "scaler" in state and scaler.is_enabled():
                scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng_cpu"])
            if device.type == "cuda" and "rng_cuda" in state:
                torch.cuda.set_rng_state(state["rng_cuda"], device)
            start_iter = int(state["iteration"])
            log(f"resuming detection training from {ckpt_path} at iteration {start_iter}")
        else:
            log(f"{ckpt_path} was written for other settings or weights; starting from iteration 0")

    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    indices = trainable_indices(data, s.drop_crowd)
    landscape = np.array([data.target(i).width >= data.target(i).height for i in range(len(data))], dtype=bool)
    batches = GroupedInfiniteBatches(indices, landscape, per_rank, rank, world, s.seed, start_batch=start_iter)
    loader = torch.utils.data.DataLoader(
        TrainView(data, s),
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=s.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(s.seed),  # keep the global RNG untouched (exact resume)
        persistent_workers=False,
    )

    history: list[dict] = []
    iter_times: list[float] = []
    data_times: list[float] = []
    it = start_iter
    completed = start_iter >= sched.max_iter
    ddp_model.train()
    batch_iter = iter(loader)
    window: list[float] = []
    while it < sched.max_iter:
        t0 = time.perf_counter()
        images, targets = next(batch_iter)
        t1 = time.perf_counter()
        if not images:
            continue  # every image of this batch was undecodable and skipped
        images, targets = _to_device(images, targets, device, s.channels_last)
        lr = sched.lr_at(it)
        for g in optimizer.param_groups:
            g["lr"] = lr
        with _autocast(device, s.amp):
            losses = ddp_model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"detection loss became {loss.item()} at iteration {it}: {({k: float(v) for k, v in losses.items()})}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        it += 1
        if device.type == "cuda" and (it % s.log_period == 0 or it <= 5 or it == sched.max_iter):
            torch.cuda.synchronize(device)
        t2 = time.perf_counter()
        iter_times.append(t2 - t0)
        data_times.append(t1 - t0)
        window.append(float(loss.detach()))
        if it % s.log_period == 0 or it == sched.max_iter:
            entry = {"iter": it, "lr": lr, "loss": statistics.fmean(window), **{k: float(v.detach()) for k, v in losses.items()}}
            history.append(entry)
            window = []
            if rank == 0:
                log(f"iter {it}/{sched.max_iter} loss {entry['loss']:.4f} lr {lr:.5f} {iter_times[-1]:.3f}s/it")
        if it % s.checkpoint_period == 0 or it == sched.max_iter:
            _save_checkpoint(model, optimizer, scaler, it, s.fingerprint, ckpt_path, device, rank, world)
        if s.stop_after is not None and it >= s.stop_after and it < sched.max_iter:
            break
    else:
        completed = True
    del batch_iter

    used_bn = 0
    if completed and s.precise_bn_iters > 0:
        used_bn = _run_precise_bn(ddp_model, data, indices, landscape, per_rank, rank, world, s, device)
        if rank == 0:
            log(f"precise BN: statistics recomputed over {used_bn} batches")

    timed = iter_times[5:] if len(iter_times) > 10 else iter_times
    iter_time = statistics.median(timed) if timed else None
    data_time = statistics.median(data_times[5:] if len(data_times) > 10 else data_times) if data_times else None
    result = TrainResult(
        completed=completed,
        iterations_done=it,
        resumed_from=start_iter,
        iter_time_s=iter_time,
        data_time_s=data_time,
        train_images_per_s=(sched.ims_per_batch / iter_time) if iter_time else None,
        loss_history=history,
        precise_bn_batches=used_bn,
        seconds=time.perf_counter() - t_start,
    )
    return _unwrap(ddp_model), result


def _save_checkpoint(model, optimizer, scaler, it, fingerprint, path, device, rank, world):
    if rank == 0:
        state = {
            "iteration": it,
            "fingerprint": fingerprint,
            "model": _unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if scaler.is_enabled():
            state["scaler"] = scaler.state_dict()
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        atomic_torch_save(state, path)
    if world > 1:
        dist.barrier()


def _run_precise_bn(model, data, indices, landscape, per_rank, rank, world, s: EngineSettings, device) -> int:
    # a separate, fixed stream of training batches (detectron2 draws them from the training loader)
    batches = GroupedInfiniteBatches(indices, landscape, per_rank, rank, world, s.seed + 7919)
    loader = torch.utils.data.DataLoader(
        TrainView(data, s), batch_sampler=batches, collate_fn=collate, num_workers=s.num_workers,
        generator=torch.Generator().manual_seed(s.seed),
    )

    def forward(batch):
        images, targets = batch
        if images:
            images, targets = _to_device(images, targets, device, s.channels_last)
            with _autocast(device, s.amp):
                model(images, targets)

    return precise_bn(model, iter(loader), forward, s.precise_bn_iters)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Any,
    sizes: InputSizes,
    device: str | torch.device,
    *,
    with_masks: bool = False,
    amp: str = "off",
    channels_last: bool = False,
    max_images: int | None = None,
    num_workers: int = 2,
) -> tuple[list[dict] | None, dict]:
    """Detections of every image (1 image per batch, as detectron2's test loader), on rank 0 (None elsewhere).

    Each prediction: `{index, boxes (N x 4, original image pixels, 0-based continuous), scores, labels (class
    index), masks (list of RLE, when with_masks)}`. Boxes are mapped back, clipped and empty ones dropped as in
    detectron2's detector_postprocess; masks are pasted into the original image and thresholded at 0.5.
    """
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from vicreg_bench.detection.coco_eval import mask_to_rle

    device = torch.device(device)
    rank, world = dist_info()
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    mine = list(range(n))[rank::world]
    model.to(device).eval()
    loader = torch.utils.data.DataLoader(
        TestView(dataset, sizes, mine), batch_size=None, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    out: list[dict] = []
    skipped: list[int] = []
    times: list[float] = []
    for i, image, orig_hw in loader:
        if image is None:
            skipped.append(i)
            continue
        t0 = time.perf_counter()
        with _autocast(device, amp):
            pred = model([image.to(device, non_blocking=True)])[0]
        oh, ow = orig_hw
        h, w = image.shape[-2:]
        boxes = pred["boxes"].float() * torch.tensor([ow / w, oh / h, ow / w, oh / h], device=device)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, ow)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, oh)
        keep = ((boxes[:, 2] - boxes[:, 0]) > 0) & ((boxes[:, 3] - boxes[:, 1]) > 0)
        rec = {
            "index": i,
            "boxes": boxes[keep].cpu().numpy(),
            "scores": pred["scores"][keep].float().cpu().numpy(),
            "labels": (pred["labels"][keep] - 1).cpu().numpy(),
        }
        if with_masks:
            probs = pred["masks"][keep].float()
            if len(probs):
                pasted = paste_masks_in_image(probs, boxes[keep], (oh, ow)) > 0.5
                rec["masks"] = [mask_to_rle(m[0].cpu().numpy()) for m in pasted]
            else:
                rec["masks"] = []
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        out.append(rec)
    stats = {"images": len(out), "skipped": skipped, "model_time_s": statistics.median(times[3:] if len(times) > 6 else times) if times else None}
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, (out, stats))
        if rank != 0:
            return None, stats
        out = [r for part, _ in gathered for r in part]
        stats = {
            "images": sum(st["images"] for _, st in gathered),
            "skipped": sorted(x for _, st in gathered for x in st["skipped"]),
            "model_time_s": stats["model_time_s"],
        }
    out.sort(key=lambda r: r["index"])
    if stats["model_time_s"]:
        stats["test_images_per_s"] = world / stats["model_time_s"] if not math.isnan(stats["model_time_s"]) else None
    return out, stats

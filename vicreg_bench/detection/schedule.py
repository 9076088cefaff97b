"""The detection solver schedules (paper B.4) and the linear-scaling rule used when the batch differs from 16.

Both engines use the same numbers: detectron2's WarmupMultiStepLR (linear warmup from `warmup_factor` x lr,
then x0.1 at each step), SGD momentum 0.9, weight decay 1e-4 except on normalisation parameters
(SOLVER.WEIGHT_DECAY_NORM = 0).

Linear scaling (Goyal et al.; detectron2's `DefaultTrainer.auto_scale_workers` does the same): for a global
batch B instead of 16, lr x B/16, and iterations, steps, warmup and the checkpoint period x 16/B, so that the
number of epochs and the lr per image stay those of the protocol. Results record the schedule that ran.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Schedule:
    max_iter: int
    ims_per_batch: int
    base_lr: float
    steps: tuple[int, ...]
    warmup_iters: int
    warmup_factor: float
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_norm: float = 0.0

    def lr_at(self, iteration: int) -> float:
        """lr of the update made at `iteration` (0-based), as detectron2's WarmupMultiStepLR."""
        factor = 1.0
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            factor = self.warmup_factor * (1 - alpha) + alpha
        return self.base_lr * factor * self.gamma ** bisect.bisect_right(self.steps, iteration)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = list(self.steps)
        return d


# paper appendix B.4 (VICReg), MoCo / Barlow Twins detectron2 configs
VOC07_12_C4 = Schedule(max_iter=24000, ims_per_batch=16, base_lr=0.05, steps=(18000, 22000), warmup_iters=1000, warmup_factor=0.333)
COCO_FPN_1X = Schedule(max_iter=90000, ims_per_batch=16, base_lr=0.04, steps=(60000, 80000), warmup_iters=50, warmup_factor=0.001)


def linear_scaled(schedule: Schedule, ims_per_batch: int) -> Schedule:
    """The schedule for a global batch of `ims_per_batch` images by the linear-scaling rule."""
    if ims_per_batch <= 0:
        raise ValueError(f"batch size must be positive, got {ims_per_batch}")
    if ims_per_batch == schedule.ims_per_batch:
        return schedule
    k = schedule.ims_per_batch / ims_per_batch  # > 1 for smaller batches: more iterations
    return replace(
        schedule,
        ims_per_batch=ims_per_batch,
        base_lr=schedule.base_lr / k,
        max_iter=int(round(schedule.max_iter * k)),
        steps=tuple(int(round(s * k)) for s in schedule.steps),
        warmup_iters=int(round(schedule.warmup_iters * k)),
    )


def shortened(schedule: Schedule, max_iter: int) -> Schedule:
    """The same schedule compressed to `max_iter` iterations (steps and warmup keep their share of the run).
    For quick checks only: such a run is not the protocol, and its results say so.

    A step that rounds to `max_iter` or beyond would never apply, and detectron2's solver (fvcore's
    MultiStepParamScheduler) refuses it ("Milestone must be smaller than total number of updates"), as it
    refuses a step equal to an earlier one: those are dropped, so very short runs have fewer steps."""
    if max_iter <= 0:
        raise ValueError(f"iterations must be positive, got {max_iter}")
    r = max_iter / schedule.max_iter
    steps = sorted({max(1, int(round(s * r))) for s in schedule.steps})
    return replace(
        schedule,
        max_iter=max_iter,
        steps=tuple(s for s in steps if s < max_iter),
        warmup_iters=min(int(round(schedule.warmup_iters * r)), max_iter),
    )


def scaled_period(period: int, schedule: Schedule, reference: Schedule) -> int:
    """A period in iterations (checkpoints) scaled like the iterations."""
    return max(1, int(round(period * schedule.max_iter / reference.max_iter)))

"""LARS and the learning-rate schedule of facebookresearch/vicreg `main_vicreg.py`.

LARS, per parameter p with gradient g (official semantics):
    dp = g + wd * p                      unless weight_decay_filter(p)
    q  = eta * ||p|| / ||dp||            unless lars_adaptation_filter(p); q = 1 where either norm is 0
    dp = dp * q
    mu = momentum * mu + dp
    p  = p - lr * mu
The official run filters both with `exclude_bias_and_norm` (p.ndim == 1: biases and BN affine
parameters get neither weight decay nor adaptation).

This implementation does the same arithmetic, in the same order, with `torch._foreach_*` kernels (one
launch per operation for all parameters instead of several per parameter); `foreach=False` runs a
plain per-parameter loop. Both are tested step for step against an independent reference.

The schedule: peak = base_lr * batch_size / 256, linear warmup from 0 over `warmup_epochs`, then cosine
from the peak down to `end_factor * peak`. The official code's end value is 0.001 times the *scaled*
peak (base_lr * batch_size / 256 * 0.001), not 0.001 * base_lr; this follows the code. (Paper B.1
quotes a final value of 0.002 for base_lr 0.2 at batch 2048, where the code gives 0.0016.)
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

ParamFilter = Callable[[torch.Tensor], bool]


def exclude_bias_and_norm(p: torch.Tensor) -> bool:
    """True for 1-d parameters (biases, batch-norm weights): excluded from weight decay and LARS adaptation."""
    return p.ndim == 1


# Filters are stored in optimizer state dicts by name, so checkpoints hold no code references and load
# with torch.load(weights_only=True).
KNOWN_FILTERS: dict[str, ParamFilter] = {"exclude_bias_and_norm": exclude_bias_and_norm}
_FILTER_KEYS = ("weight_decay_filter", "lars_adaptation_filter")


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling, step-for-step equal to the official VICReg optimizer."""

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.0,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.001,
        weight_decay_filter: ParamFilter | None = None,
        lars_adaptation_filter: ParamFilter | None = None,
        *,
        foreach: bool | None = None,
    ):
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            eta=eta,
            weight_decay_filter=weight_decay_filter,
            lars_adaptation_filter=lars_adaptation_filter,
        )
        super().__init__(params, defaults)
        self.foreach = True if foreach is None else foreach

    # --- state dict without callables -------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = super().state_dict()
        for group in sd["param_groups"]:
            for key in _FILTER_KEYS:
                fn = group.get(key)
                if fn is not None and not isinstance(fn, str):
                    group[key] = getattr(fn, "__name__", repr(fn))
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        current = [{k: g[k] for k in _FILTER_KEYS} for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, filters in zip(self.param_groups, current):
            for key in _FILTER_KEYS:
                saved = group.get(key)
                if isinstance(saved, str):
                    group[key] = KNOWN_FILTERS.get(saved, filters[key])

    # --- the update ----------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if self.foreach:
                self._step_foreach(group, params)
            else:
                self._step_loop(group, params)
        return loss

    def _momentum_buffers(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        bufs = []
        for p in params:
            state = self.state[p]
            if "mu" not in state:
                state["mu"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            bufs.append(state["mu"])
        return bufs

    @staticmethod
    def _applies(filter_fn: ParamFilter | None, p: torch.Tensor) -> bool:
        return filter_fn is None or not filter_fn(p)

    def _step_loop(self, group: dict, params: list[torch.Tensor]) -> None:
        wd, eta, lr, m = group["weight_decay"], group["eta"], group["lr"], group["momentum"]
        for p, mu in zip(params, self._momentum_buffers(params)):
            dp = p.grad
            if self._applies(group["weight_decay_filter"], p):
                dp = dp.add(p, alpha=wd)
            if self._applies(group["lars_adaptation_filter"], p):
                pn, un = torch.linalg.vector_norm(p), torch.linalg.vector_norm(dp)
                ratio = torch.where((pn > 0) & (un > 0), eta * pn / un, torch.ones_like(pn))
                dp = dp.mul(ratio)
            mu.mul_(m).add_(dp)
            p.add_(mu, alpha=-lr)

    def _step_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        wd, eta, lr, m = group["weight_decay"], group["eta"], group["lr"], group["momentum"]
        mus = self._momentum_buffers(params)
        dps = [p.grad for p in params]

        decay = [i for i, p in enumerate(params) if self._applies(group["weight_decay_filter"], p)]
        if decay:
            decayed = torch._foreach_add([dps[i] for i in decay], [params[i] for i in decay], alpha=wd)
            for i, d in zip(decay, decayed):
                dps[i] = d

        adapt = [i for i, p in enumerate(params) if self._applies(group["lars_adaptation_filter"], p)]
        if adapt:
            pn = torch.stack(torch._foreach_norm([params[i] for i in adapt]))
            un = torch.stack(torch._foreach_norm([dps[i] for i in adapt]))
            ratio = torch.where((pn > 0) & (un > 0), eta * pn / un, torch.ones_like(pn))
            scaled = torch._foreach_mul([dps[i] for i in adapt], list(ratio.unbind()))
            for i, d in zip(adapt, scaled):
                dps[i] = d

        torch._foreach_mul_(mus, m)
        torch._foreach_add_(mus, dps)
        torch._foreach_add_(params, mus, alpha=-lr)


def learning_rate(
    step: int,
    *,
    base_lr: float,
    batch_size: int,
    epochs: int,
    steps_per_epoch: int,
    warmup_epochs: float = 10,
    end_factor: float = 0.001,
) -> float:
    """Learning rate at global step `step` (0-based), as the official `adjust_learning_rate`."""
    peak = base_lr * batch_size / 256
    max_steps = epochs * steps_per_epoch
    warmup_steps = int(round(warmup_epochs * steps_per_epoch))
    if step < warmup_steps:
        return peak * step / warmup_steps
    step -= warmup_steps
    span = max(max_steps - warmup_steps, 1)
    q = 0.5 * (1 + math.cos(math.pi * step / span))
    end_lr = peak * end_factor
    return peak * q + end_lr * (1 - q)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr

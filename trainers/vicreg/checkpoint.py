"""Training checkpoints: the official `{epoch, model, optimizer}` form plus what an exact resume needs.

`<exp-dir>/model.pth` holds
    epoch            epochs completed before the saved position (the official meaning)
    model            state dict with `module.backbone.*`, `module.projector.*` (and `module.predictor.*`)
    optimizer        LARS state (filters stored by name)
    scaler           GradScaler state (fp16 runs), or {}
    global_step      optimizer steps done
    step_in_epoch    steps done inside `epoch` (0 at an epoch boundary)
    data_order       {seed, epoch, step_in_epoch, global_batch, num_samples}: the sampler's position
    rng              python / numpy / torch / cuda generator states
    args             the run's arguments (plain values)
    format           "vicreg-train/1"
Everything is a tensor or plain Python value, so it loads with `torch.load(weights_only=True)`. Writes
go through a temporary file and a rename: a crash never leaves a half-written `model.pth`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from vicreg_bench.fileio import atomic_torch_save

CHECKPOINT_FORMAT = "vicreg-train/1"
MODEL_PREFIX = "module."


def unwrap(model: nn.Module) -> nn.Module:
    """The plain VICReg module under torch.compile / DistributedDataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def official_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict keyed like the official DDP-wrapped model: `module.backbone.*`, `module.projector.*`."""
    return {MODEL_PREFIX + k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}


def load_official_model_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    plain = {k[len(MODEL_PREFIX):] if k.startswith(MODEL_PREFIX) else k: v for k, v in state.items()}
    unwrap(model).load_state_dict(plain, strict=True)


def capture_rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].numpy().astype(np.uint32)
        np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    epoch: int,
    global_step: int,
    step_in_epoch: int,
    data_order: dict[str, int],
    args: dict[str, Any],
) -> None:
    state = {
        "epoch": epoch,
        "model": official_model_state(model),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
        "global_step": global_step,
        "step_in_epoch": step_in_epoch,
        "data_order": dict(data_order),
        "rng": capture_rng_state(),
        "args": args,
        "format": CHECKPOINT_FORMAT,
    }
    atomic_torch_save(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return torch.load(Path(path), map_location="cpu", weights_only=True)

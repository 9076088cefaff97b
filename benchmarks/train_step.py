"""Images/s of one VICReg training step: vicreg-train's step against a baseline written like the
official facebookresearch/vicreg loop, same model, same batch, same device, same process.

Baseline (as main_vicreg.py): NCHW, fp32 weights, `autocast(float16)` around forward *and* loss, a
GradScaler, LARS as a Python loop of per-parameter kernels, `zero_grad()`.
Ours (`trainers.vicreg.step.TrainStep`, what vicreg-train runs): bf16 autocast where the GPU has it
(fp16 + GradScaler otherwise; on a bf16 GPU the same step in fp16 is timed too, to show the
speed-up at the baseline's precision),
channels_last, the loss in float32 with TF32 matmuls, foreach LARS; `--compile` adds a torch.compile'd
variant. On CPU both run in float32 (the figures then only show that the code runs).

Inputs are random tensors already on the device: this measures the step, not the data loader.
The variants are timed in interleaved rounds and the median round is reported.

    python benchmarks/train_step.py --device cuda --arch resnet50 --batch-size 256
    python benchmarks/train_step.py --device cpu --arch resnet18 --mlp 256-256 --batch-size 8 --image-size 64 --steps 3
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers.vicreg.model import VICReg  # noqa: E402
from trainers.vicreg.optim import LARS, exclude_bias_and_norm  # noqa: E402
from trainers.vicreg.step import TrainStep, resolve_precision  # noqa: E402


class LoopLARS(torch.optim.Optimizer):
    """The official optimizer's arithmetic, written the way the official code runs it: one Python
    iteration and a handful of small kernels per parameter."""

    def __init__(self, params, lr=0.0, weight_decay=0.0, momentum=0.9, eta=0.001):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if p.ndim != 1:
                    dp = dp.add(p, alpha=g["weight_decay"])
                    pn, un = torch.norm(p), torch.norm(dp)
                    one = torch.ones_like(pn)
                    q = torch.where(pn > 0.0, torch.where(un > 0, g["eta"] * pn / un, one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                state["mu"].mul_(g["momentum"]).add_(dp)
                p.add_(state["mu"], alpha=-g["lr"])


def official_style_loss(model: VICReg, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Forward and loss as main_vicreg.py's VICReg.forward (run inside autocast by the caller)."""
    x = model.projector(model.backbone(x))
    y = model.projector(model.backbone(y))
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    d = x.shape[1]
    cov_x = (x.T @ x) / (batch_size - 1)
    cov_y = (y.T @ y) / (batch_size - 1)
    # off-diagonal squares without a boolean mask (which would synchronise with the host every step)
    cov_loss = (cov_x.pow(2).sum() - cov_x.diagonal().pow(2).sum()).div(d) + (cov_y.pow(2).sum() - cov_y.diagonal().pow(2).sum()).div(d)
    return 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss


class BaselineStep:
    def __init__(self, model: VICReg, device: torch.device, lr: float):
        self.model, self.device, self.lr = model, device, lr
        self.amp = device.type == "cuda"
        self.optimizer = LoopLARS(model.parameters(), lr=lr, weight_decay=1e-6)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr
        self.optimizer.zero_grad()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            loss = official_style_loss(self.model, x, y, x.shape[0])
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()


class OursStep:
    def __init__(self, model: VICReg, device: torch.device, lr: float, precision: str, compile_model: bool):
        self.lr = lr
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = LARS(model.parameters(), lr=lr, weight_decay=1e-6, weight_decay_filter=exclude_bias_and_norm,
                         lars_adaptation_filter=exclude_bias_and_norm)
        net = torch.compile(model) if compile_model else model
        self.precision = resolve_precision(precision, device)
        self.step = TrainStep(net, optimizer, device, self.precision, self.channels_last)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.step(x, y, self.lr)[0]["loss"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--mlp", default="8192-8192-8192")
    p.add_argument("--batch-size", type=int, default=256, help="images per step on this device (official: 2048 over 8 GPUs)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=10, help="timed steps per round and variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant first (cudnn autotune, compile)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ours-precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"))
    p.add_argument("--compile", action="store_true", help="also time vicreg-train's step with torch.compile")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("error: --device cuda but no CUDA device is visible", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    base_model = VICReg(args.arch, args.mlp)
    variants: dict[str, object] = {
        "baseline: official-style loop": BaselineStep(copy.deepcopy(base_model).to(device), device, args.lr),
        "vicreg-train step": OursStep(copy.deepcopy(base_model).to(device), device, args.lr, args.ours_precision, False),
    }
    if device.type == "cuda" and resolve_precision(args.ours_precision, device) != "fp16":
        # the same step at the baseline's precision: the speed-up that owes nothing to bf16
        variants["vicreg-train step in fp16 + GradScaler"] = OursStep(copy.deepcopy(base_model).to(device), device, args.lr, "fp16", False)
    if args.compile:
        variants["vicreg-train step + torch.compile"] = OursStep(copy.deepcopy(base_model).to(device), device, args.lr, args.ours_precision, True)
    del base_model
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)
    y = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=g).to(device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    ours_precision = variants["vicreg-train step"].precision
    print(f"device: {name}; torch {torch.__version__}; {args.arch}, projector {args.mlp}, batch {args.batch_size} x 2 views "
          f"of {args.image_size}px; ours in {ours_precision}, baseline in {'fp16' if device.type == 'cuda' else 'fp32'}", flush=True)
    peak_mem: dict[str, float] = {}
    for label, step in variants.items():
        t = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            loss = step(x, y)
        sync(device)
        if device.type == "cuda":
            peak_mem[label] = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"  warmed up {label}: {time.perf_counter() - t:.1f} s, loss {float(loss):.3f}", flush=True)

    rates: dict[str, list[float]] = {label: [] for label in variants}
    for r in range(args.rounds):
        for label, step in variants.items():
            sync(device)
            t = time.perf_counter()
            for _ in range(args.steps):
                step(x, y)
            sync(device)
            rates[label].append(args.steps * args.batch_size / (time.perf_counter() - t))
        print(f"  round {r + 1}/{args.rounds} (img/s): " + ", ".join(f"{v[-1]:.1f}" for v in rates.values()), flush=True)

    medians = {label: statistics.median(v) for label, v in rates.items()}
    base_label = next(iter(variants))
    width = max(len(label) for label in variants)
    print(f"\n{'variant':<{width}}  images/s   ratio" + ("   peak GiB" if peak_mem else ""))
    for label, rate in medians.items():
        mem = f"   {peak_mem[label]:8.1f}" if label in peak_mem else ""
        print(f"{label:<{width}}  {rate:8.1f}  {rate / medians[base_label]:5.2f}x{mem}")
    ratio = medians["vicreg-train step"] / medians[base_label]
    print(f"\nspeed-up of vicreg-train's step ({ours_precision}) over the official-style loop on {name}: {ratio:.2f}x")
    same = "vicreg-train step in fp16 + GradScaler"
    ratio_fp16 = medians[same] / medians[base_label] if same in medians else None
    if ratio_fp16 is not None:
        print(f"speed-up at the baseline's precision (fp16 + GradScaler): {ratio_fp16:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": name, "torch": torch.__version__, "arch": args.arch, "mlp": args.mlp, "batch_size": args.batch_size,
            "image_size": args.image_size, "ours_precision": ours_precision, "images_per_s": medians,
            "rounds": rates, "peak_memory_gib": peak_mem, "ratio": ratio, "ratio_fp16": ratio_fp16,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""vicreg-train: VICReg pretraining, from one CPU process to many GPUs on many machines.

    vicreg-train --data DIR [--arch resnet50] [--epochs 100] [--batch-size 2048] [--base-lr 0.2] ...
    torchrun --nproc_per_node 8 -m trainers.vicreg.train --data DIR ...
    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
        -m trainers.vicreg.train --data DIR ...
    vicreg-train --launcher slurm --nodes 4 --gpus-per-node 8 --partition P --data DIR ...

`--batch-size` is the global batch (split over processes), as in the official code. See
docs/training.md for the defaults' sources, the outputs and the log format.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from vicreg_bench.distributed import cleanup
from vicreg_bench.errors import UserError
from vicreg_bench.launch import ignore_requeue_signal

from .augment import AUGMENTATIONS, TwoViewTransform
from .checkpoint import load_checkpoint, load_official_model_state, restore_rng_state, save_checkpoint
from .data import GlobalBatchSampler, TwoViewImageFolder
from .diagnostics import DiagnosticsMeter
from .distributed import DistEnv, all_reduce_mean, convert_sync_batchnorm, init_distributed
from .export import backbone_state_dict, save_backbone, write_initial_backbone
from .loss import VARIANCE_FORMS
from .model import VICReg
from .optim import LARS, exclude_bias_and_norm, learning_rate
from .runlog import RunLog
from .slurm import add_arguments as add_slurm_arguments
from .slurm import submit_training
from .step import LOSS_TERMS, PRECISIONS, LossConfig, TrainStep, make_grad_scaler, resolve_precision

EXIT_DIVERGED = 3
# Arguments that change the network's shape: a checkpoint only resumes under the same values.
STRUCTURAL_ARGS = ("arch", "mlp", "predictor", "no_proj_bn", "standardize")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vicreg-train",
        description="Pretrain a ResNet with VICReg (Bardes, Ponce, LeCun, ICLR 2022), equal to the official "
        "facebookresearch/vicreg main_vicreg.py by default. Same command for one CPU process, torchrun on one "
        "or several machines, or SLURM (--launcher slurm).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", "--data-dir", dest="data", default=None, metavar="DIR",
                   help="ImageFolder root (one subfolder of images per class; labels are not used), or a folder "
                   "holding train/ (e.g. an ImageNet root, or <suite>/imagenet of `vicreg-bench data synth`)")
    g.add_argument("--image-size", type=int, default=224, help="crop size of each view (use e.g. 32-64 for small synthetic images)")
    g.add_argument("--augment", choices=AUGMENTATIONS, default="official",
                   help="official: asymmetric blur/solarize as the official code; paper: the symmetric list of appendix B.2")
    g.add_argument("--crop-min-scale", type=float, default=None,
                   help="lower bound of the RandomResizedCrop area scale (default: 0.08 for official, as its code; 0.2 for paper)")
    g.add_argument("--num-workers", type=int, default=10, help="data loader worker processes per training process")
    g = p.add_argument_group("model")
    g.add_argument("--arch", default="resnet50", help="resnet18, resnet34, resnet50, resnet101, resnet152 or resnet50x2")
    g.add_argument("--mlp", default="8192-8192-8192", help="projector widths: Linear+BN+ReLU blocks, last Linear without bias")
    g.add_argument("--no-proj-bn", action="store_true", help="ablation (Table 4b): no batch norm in the projector (nor predictor)")
    g.add_argument("--standardize", action="store_true", help="ablation (Table 4b): standardise the projections (BN without affine at the projector's end)")
    g.add_argument("--predictor", default=None, metavar="SPEC",
                   help="ablation (Table 3): add a predictor, e.g. 8192-8192 (2 layers); its last width must equal the projection width")
    g = p.add_argument_group("loss")
    g.add_argument("--sim-coeff", type=float, default=25.0, help="invariance coefficient lambda")
    g.add_argument("--std-coeff", type=float, default=25.0, help="variance coefficient mu")
    g.add_argument("--cov-coeff", type=float, default=1.0, help="covariance coefficient nu")
    g.add_argument("--variance-form", choices=VARIANCE_FORMS, default="official",
                   help="official: each view's variance term halved (the code); paper: summed, as Eq. 6 (twice the official term)")
    g.add_argument("--l2-normalize", action="store_true",
                   help="ablation (Table 4b): l2-normalise projections, cosine invariance (Eq. 9), variance target 1/sqrt(d)")
    g.add_argument("--std-target", type=float, default=None, help="variance hinge target gamma (default 1, or 1/sqrt(d) with --l2-normalize)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=100)
    g.add_argument("--batch-size", type=int, default=2048, help="global batch size, split evenly over the processes")
    g.add_argument("--base-lr", type=float, default=0.2, help="peak learning rate = base-lr * batch-size / 256")
    g.add_argument("--wd", type=float, default=1e-6, help="weight decay (not on biases and norm parameters)")
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--eta", type=float, default=0.001, help="LARS trust coefficient")
    g.add_argument("--warmup-epochs", type=float, default=10, help="linear warmup from 0")
    g.add_argument("--end-lr-factor", type=float, default=0.001, help="final learning rate = factor * peak learning rate (official code)")
    g = p.add_argument_group("run")
    g.add_argument("--exp-dir", default="./exp", help="checkpoints, log.jsonl and the exported backbone go here")
    g.add_argument("--resume", action="store_true", help="continue the run saved in <exp-dir>/model.pth (start fresh if there is none)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    g.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: bf16 autocast on GPUs that have it, else fp16 + GradScaler; fp32 on CPU")
    g.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"), help="auto: on for CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (slower start, faster steps)")
    g.add_argument("--seed", type=int, default=0, help="seeds initialisation, data order and augmentations")
    g.add_argument("--log-every", type=int, default=10, help="console line and log flush every N steps (every step is logged)")
    g.add_argument("--checkpoint-every-steps", type=int, default=0, help="also checkpoint every N steps (0: only at epoch ends)")
    g.add_argument("--diag-batches", type=int, default=10, help="batches per epoch used for the std / correlation diagnostics (0: off)")
    g.add_argument("--no-export", action="store_true", help="do not write <exp-dir>/<arch>.pth at the end")
    g.add_argument("--write-init", metavar="PATH", default=None,
                   help="only write the randomly initialised backbone a run with this --arch, --mlp and --seed starts "
                   "from, as a torchvision file (a random-init baseline), then exit; needs no --data")
    g.add_argument("--dist-url", default="env://", help="process-group init method (torchrun sets the env:// variables)")
    add_slurm_arguments(p)
    g = p.add_argument_group("debugging")
    g.add_argument("--stop-after-steps", type=int, default=0,
                   help="exit after N optimiser steps without saving, as if killed (tests resume)")
    g.add_argument("--debug-nan-at-step", type=int, default=-1, help="make the loss NaN at this global step (tests the NaN guard)")
    return p


def args_to_dict(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def check_args(args: argparse.Namespace) -> None:
    for flag, value, minimum in (
        ("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 2), ("--image-size", args.image_size, 8),
        ("--log-every", args.log_every, 1), ("--num-workers", args.num_workers, 0),
        ("--checkpoint-every-steps", args.checkpoint_every_steps, 0), ("--diag-batches", args.diag_batches, 0),
    ):
        if value < minimum:
            raise UserError(f"{flag} {value}: expected an integer >= {minimum}")
    if args.base_lr < 0 or args.wd < 0:
        raise UserError("--base-lr and --wd must be >= 0")
    if args.warmup_epochs < 0:
        raise UserError(f"--warmup-epochs {args.warmup_epochs}: expected >= 0")
    if args.crop_min_scale is not None and not 0 < args.crop_min_scale <= 1:
        raise UserError(f"--crop-min-scale {args.crop_min_scale}: expected a value in (0, 1]")


@dataclass
class PendingStep:
    epoch: int
    step: int
    step_in_epoch: int
    lr: float
    terms: torch.Tensor  # the four loss terms, still on the device


class Trainer:
    """Holds the run's state; `run()` trains to the end (or to --stop-after-steps) and exports."""

    def __init__(self, args: argparse.Namespace, env: DistEnv):
        self.args = args
        self.env = env
        self.exp_dir = Path(args.exp_dir)
        self.ckpt_path = self.exp_dir / "model.pth"
        self.last_saved_step: int | None = None
        self.window: list[PendingStep] = []
        self.epoch_sums = torch.zeros(len(LOSS_TERMS), dtype=torch.float64)
        self.epoch_count = 0
        self._setup()

    # --- construction ---------------------------------------------------------------------------------
    def _setup(self) -> None:
        args, env = self.args, self.env
        if env.is_main:
            self.exp_dir.mkdir(parents=True, exist_ok=True)
        resume_state = None
        if self.ckpt_path.is_file():
            if not args.resume:
                raise UserError(
                    f"--exp-dir {self.exp_dir}: already holds model.pth; pass --resume to continue that run, or choose another --exp-dir"
                )
            try:
                resume_state = load_checkpoint(self.ckpt_path)
            except Exception as exc:
                raise UserError(f"{self.ckpt_path}: cannot be read for --resume ({exc.__class__.__name__}: {exc})") from None
            self._check_resume_args(resume_state)

        self.device = env.device
        self.precision = resolve_precision(args.precision, self.device)
        self.channels_last = args.channels_last == "on" or (args.channels_last == "auto" and self.device.type == "cuda")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)

        transform = TwoViewTransform(args.augment, args.image_size, args.crop_min_scale)
        self.dataset = TwoViewImageFolder(args.data, transform, seed=args.seed)
        self.sampler = GlobalBatchSampler(len(self.dataset), args.batch_size, rank=env.rank, world_size=env.world_size, seed=args.seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        workers = args.num_workers
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            worker_init_fn=ignore_requeue_signal,  # in a SLURM job, only the training process requeues
        )

        model = VICReg(args.arch, args.mlp, proj_bn=not args.no_proj_bn, standardize=args.standardize, predictor=args.predictor)
        if env.distributed:
            model = convert_sync_batchnorm(model, self.device)
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = LARS(
            model.parameters(), lr=0.0, weight_decay=args.wd, momentum=args.momentum, eta=args.eta,
            weight_decay_filter=exclude_bias_and_norm, lars_adaptation_filter=exclude_bias_and_norm,
        )
        self.scaler = make_grad_scaler(self.precision, self.device)

        self.start_epoch, self.start_step_in_epoch = 0, 0
        if resume_state is not None:
            self._load_resume_state(resume_state)

        net: torch.nn.Module = model
        if env.distributed:
            net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[self.device] if self.device.type == "cuda" else None)
        if args.compile:
            net = torch.compile(net)
        loss_cfg = LossConfig(args.sim_coeff, args.std_coeff, args.cov_coeff, args.variance_form, args.l2_normalize, args.std_target)
        self.step_fn = TrainStep(net, self.optimizer, self.device, self.precision, self.channels_last, loss_cfg, self.scaler)
        self.log = RunLog(self.exp_dir / "log.jsonl", enabled=env.is_main)

    def _check_resume_args(self, state: dict) -> None:
        saved = state.get("args", {})
        for key in STRUCTURAL_ARGS:
            if key in saved and saved[key] != getattr(self.args, key):
                flag = "--" + key.replace("_", "-")
                raise UserError(f"--resume: {flag} is {getattr(self.args, key)!r} but the checkpoint was trained with {saved[key]!r}")
        if state.get("step_in_epoch", 0) and saved.get("batch_size", self.args.batch_size) != self.args.batch_size:
            raise UserError(
                f"--resume: --batch-size {self.args.batch_size} differs from the checkpoint's {saved.get('batch_size')} "
                "and the checkpoint is mid-epoch; resume with the same batch size"
            )

    def _load_resume_state(self, state: dict) -> None:
        load_official_model_state(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            restore_rng_state(state["rng"])
        self.start_epoch = int(state["epoch"])
        self.start_step_in_epoch = int(state.get("step_in_epoch", 0))
        self.last_saved_step = int(state.get("global_step", self.start_epoch * self.steps_per_epoch))
        order = state.get("data_order", {})
        if order and order.get("num_samples") not in (None, len(self.dataset)):
            raise UserError(
                f"--resume: the dataset now has {len(self.dataset)} images but the checkpoint's run had {order['num_samples']}; "
                "the data order cannot be continued"
            )

    # --- logging and checkpoints ---------------------------------------------------------------------
    def _flush(self) -> None:
        """One synchronisation for the pending steps: average over processes, check, log."""
        if not self.window:
            return
        values = all_reduce_mean(torch.stack([s.terms for s in self.window]).double()).cpu().tolist()
        now = time.perf_counter()
        images_per_s = len(self.window) * self.args.batch_size / max(now - self.t_window, 1e-9)
        self.t_window = now
        for pending, vals in zip(self.window, values):
            terms = dict(zip(LOSS_TERMS, vals))
            finite = all(math.isfinite(v) for v in vals)
            self.log.write(
                "step", epoch=pending.epoch, step=pending.step, step_in_epoch=pending.step_in_epoch, **terms,
                lr=pending.lr, images_per_s=round(images_per_s, 2), elapsed_s=round(time.time() - self.log.t0, 3), finite=finite,
            )
            if not finite:
                self.window = []
                where = (f"{self.ckpt_path} (after step {self.last_saved_step})" if self.last_saved_step is not None
                         else "none (no checkpoint was written yet)")
                raise TrainingDiverged(
                    f"loss became {terms['loss']} at step {pending.step} (epoch {pending.epoch}); training stopped and "
                    f"the last good checkpoint is kept: {where}. Try a lower --base-lr, --precision fp32 or bf16, or check the data."
                )
            self.epoch_sums += torch.tensor(vals, dtype=torch.float64)
            self.epoch_count += 1
        last, t = self.window[-1], dict(zip(LOSS_TERMS, values[-1]))
        self.log.console(
            f"epoch {last.epoch + 1}/{self.args.epochs} step {last.step + 1}/{self.total_steps} "
            f"loss {t['loss']:.4f} (inv {t['invariance']:.4f} var {t['variance']:.4f} cov {t['covariance']:.4f}) "
            f"lr {last.lr:.5g} {images_per_s:.1f} img/s"
        )
        self.window = []

    def _save(self, epoch: int, step_in_epoch: int, global_step: int) -> None:
        if self.env.is_main:
            save_checkpoint(
                self.ckpt_path, model=self.model, optimizer=self.optimizer, scaler=self.scaler, epoch=epoch,
                global_step=global_step, step_in_epoch=step_in_epoch,
                data_order={"seed": self.args.seed, "epoch": epoch, "step_in_epoch": step_in_epoch,
                            "global_batch": self.args.batch_size, "num_samples": len(self.dataset)},
                args=args_to_dict(self.args),
            )
            self.log.write("checkpoint", path=str(self.ckpt_path), epoch=epoch, step_in_epoch=step_in_epoch, step=global_step)
        self.last_saved_step = global_step

    # --- the loop ------------------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.args.epochs * self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        a = self.args
        return learning_rate(step, base_lr=a.base_lr, batch_size=a.batch_size, epochs=a.epochs,
                             steps_per_epoch=self.steps_per_epoch, warmup_epochs=a.warmup_epochs, end_factor=a.end_lr_factor)

    def run(self) -> dict[str, Any]:
        args, env = self.args, self.env
        resumed = self.last_saved_step
        self.log.start(
            args=args_to_dict(args), world_size=env.world_size, device=str(self.device), precision=self.precision,
            channels_last=self.channels_last, num_images=len(self.dataset), steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps, resumed_from_step=resumed, torch=torch.__version__,
        )
        self.log.console(
            f"vicreg-train: {len(self.dataset)} images from {self.dataset.root}, {env.world_size} process(es) on {self.device}, "
            f"{self.precision}, {self.steps_per_epoch} steps/epoch" + (f", resuming after step {resumed}" if resumed is not None else "")
        )
        diag_every = max(1, self.steps_per_epoch // args.diag_batches) if args.diag_batches else 0
        self.t_window = time.perf_counter()
        for epoch in range(self.start_epoch, args.epochs):
            first = self.start_step_in_epoch if epoch == self.start_epoch else 0
            self.sampler.set_epoch(epoch, first)
            meter = DiagnosticsMeter()
            self.epoch_sums.zero_()
            self.epoch_count = 0
            t_epoch = time.perf_counter()
            bar = tqdm(total=self.steps_per_epoch, initial=first, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False,
                       disable=not (env.is_main and sys.stderr.isatty()))
            for step_in_epoch, (x_a, x_b, _) in enumerate(self.loader, start=first):
                step = epoch * self.steps_per_epoch + step_in_epoch
                lr = self.lr_at(step)
                want = bool(diag_every) and (step_in_epoch + 1) % diag_every == 0
                terms, outputs = self.step_fn(x_a, x_b, lr, want_outputs=want, poison_loss=step == args.debug_nan_at_step)
                if outputs is not None:
                    meter.update(outputs)
                self.window.append(PendingStep(epoch, step, step_in_epoch, lr, torch.stack([terms[k] for k in LOSS_TERMS])))
                bar.update(1)
                done = step + 1
                end_of_epoch = step_in_epoch + 1 == self.steps_per_epoch
                save_now = bool(args.checkpoint_every_steps) and done % args.checkpoint_every_steps == 0 and not end_of_epoch
                stop_now = bool(args.stop_after_steps) and done >= args.stop_after_steps
                if len(self.window) >= args.log_every or save_now or stop_now or end_of_epoch:
                    self._flush()
                if save_now:
                    self._save(epoch, step_in_epoch + 1, done)
                if stop_now:
                    bar.close()
                    self.log.write("end", status="stopped", step=done, reason="--stop-after-steps")
                    self.log.console(f"stopped after step {done} (--stop-after-steps), without saving")
                    return {"status": "stopped", "step": done}
            bar.close()
            self._flush()
            seconds = time.perf_counter() - t_epoch
            means = (self.epoch_sums / max(self.epoch_count, 1)).tolist()
            diagnostics = meter.result(self.device)
            ran = self.steps_per_epoch - first
            self.log.write("epoch", epoch=epoch, step=(epoch + 1) * self.steps_per_epoch, **dict(zip(LOSS_TERMS, means)),
                           **diagnostics, seconds=round(seconds, 3), images_per_s=round(ran * args.batch_size / max(seconds, 1e-9), 2))
            diag_text = " ".join(f"{k} {v:.4g}" for k, v in diagnostics.items())
            self.log.console(f"epoch {epoch + 1}/{args.epochs} done: loss {means[0]:.4f} {diag_text} ({seconds:.1f} s)")
            self._save(epoch + 1, 0, (epoch + 1) * self.steps_per_epoch)
        exports = {}
        if env.is_main and not args.no_export:
            out = save_backbone(backbone_state_dict(self.model), self.exp_dir / f"{args.arch}.pth")
            exports["backbone"] = str(out)
            self.log.console(f"wrote {out} (torchvision-style backbone) and {self.ckpt_path} (official {{epoch, model, optimizer}} form)")
        exports["checkpoint"] = str(self.ckpt_path)
        self.log.write("end", status="finished", step=self.total_steps, exports=exports)
        return {"status": "finished", "step": self.total_steps, "exports": exports}


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run training in this process (one rank of a torchrun / SLURM job, or alone)."""
    check_args(args)
    env = init_distributed(args.device, args.dist_url)
    trainer = None
    try:
        trainer = Trainer(args, env)
        return trainer.run()
    except TrainingDiverged as exc:
        if trainer is not None:
            trainer.log.write("end", status="diverged", message=str(exc))
        raise
    finally:
        if trainer is not None:
            trainer.log.close()
        cleanup()


def train_from_argv(argv: list[str]) -> dict[str, Any]:
    """What a SLURM job of `--launcher slurm` runs: this command line, in the job's process."""
    return train(build_parser().parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.write_init:
            path = write_initial_backbone(args.arch, args.mlp, args.seed, Path(args.write_init))
            print(f"wrote {path}: the random initialisation of --arch {args.arch} --mlp {args.mlp} --seed {args.seed}")
            return 0
        if args.data is None:
            parser.error("the following arguments are required: --data")
        if args.launcher == "slurm":
            return submit_training(args, list(sys.argv[1:] if argv is None else argv), run=train_from_argv)
        train(args)
        return 0
    except UserError as exc:
        print(f"vicreg-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingDiverged as exc:
        print(f"vicreg-train: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED


if __name__ == "__main__":
    sys.exit(main())

"""The demo's pretraining stage: the unlabelled images, the `vicreg-train` command (resumed or reused when
its log says so), and the random-init backbone the pretraining starts from, both through the trainer's
console script (vicreg_bench never imports the trainer)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from vicreg_bench.demo.budget import Budget
from vicreg_bench.demo.jobs import tool
from vicreg_bench.errors import UserError
from vicreg_bench.trainlog import read_records

PRETRAIN_SOURCES = {"imagenet": ("imagenet",), "all": ("imagenet", "places205", "inat2018")}


def pretraining_images(data: Path, out: Path, which: str) -> Path:
    """The unlabelled pretraining images as one ImageFolder for vicreg-train.

    "imagenet" is the synthetic ImageNet train split itself; "all" links the train images of the three
    classification datasets into OUT/pretrain_images/<dataset>_<class>/ (labels are never used)."""
    if which == "imagenet":
        return data / "imagenet"
    from vicreg_bench.data.registry import open_classification

    folder = out / "pretrain_images"
    done = folder / "COMPLETE"
    if done.is_file():
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    n = 0
    for name in PRETRAIN_SOURCES[which]:
        ds = open_classification(name, data, "train")
        for i, (rel, label) in enumerate(ds.samples):
            src = (Path(ds.root) / rel).resolve()
            dst = folder / f"{name}_{int(label):03d}" / f"{i:05d}{src.suffix.lower()}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(src, dst)
            except OSError:  # no symlinks here (some file systems): copy the small JPEG
                shutil.copyfile(src, dst)
            n += 1
    done.write_text(f"{n} images from the train splits of {', '.join(PRETRAIN_SOURCES[which])}\n")
    print(f"{folder}: {n} unlabelled training images ({', '.join(PRETRAIN_SOURCES[which])})")
    return folder


def pretrain_args(b: Budget, images: Path, exp: Path, seed: int, workers: int) -> list[str]:
    return ["--data", str(images), "--exp-dir", str(exp), "--arch", b.arch, "--mlp", b.mlp,
            "--image-size", str(b.pretrain_size), "--crop-min-scale", str(b.crop_min_scale),
            "--epochs", str(b.pretrain_epochs), "--batch-size", str(b.pretrain_batch),
            "--base-lr", str(b.pretrain_lr), "--warmup-epochs", str(b.pretrain_warmup),
            "--num-workers", str(workers), "--device", "cpu", "--seed", str(seed), "--log-every", "4",
            "--diag-batches", "4"]


# vicreg-train arguments that must match for a finished or half-done pretraining to be reused
PRETRAIN_KEYS = ("arch", "mlp", "image_size", "crop_min_scale", "epochs", "batch_size", "base_lr", "warmup_epochs", "seed")


def pretraining_state(exp: Path, wanted: dict) -> str:
    """'finished' (backbone exported with these settings), 'partial' (resumable), 'none' or 'other'."""
    log, _ = read_records(exp / "log.jsonl")
    starts = [r for r in log if r.get("type") == "start"]
    if not starts:
        return "partial" if (exp / "model.pth").is_file() else "none"
    args = starts[0].get("args", {})
    if any(args.get(k) != v for k, v in wanted.items()):
        return "other"
    backbone = exp / f"{wanted['arch']}.pth"
    ends = [r for r in log if r.get("type") == "end"]
    if backbone.is_file() and ends and ends[-1].get("status") == "finished":
        return "finished"
    return "partial" if (exp / "model.pth").is_file() else "none"


def pretrain_command(b: Budget, data: Path, out: Path, seed: int, workers: int) -> tuple[list[str] | None, Path]:
    """(the vicreg-train command to run, or None when a finished pretraining is reused; the backbone path)."""
    exp = out / "pretrain"
    args = pretrain_args(b, pretraining_images(data, out, b.pretrain_data), exp, seed, workers)
    wanted = {"arch": b.arch, "mlp": b.mlp, "image_size": b.pretrain_size, "crop_min_scale": b.crop_min_scale,
              "epochs": b.pretrain_epochs, "batch_size": b.pretrain_batch, "base_lr": b.pretrain_lr,
              "warmup_epochs": b.pretrain_warmup, "seed": seed, "data": args[1]}
    state = pretraining_state(exp, wanted)
    backbone = exp / f"{b.arch}.pth"
    if state == "finished":
        print(f"{backbone}: pretraining already finished with these settings, reused")
        return None, backbone
    if state == "other":
        raise UserError(f"{exp}: holds a pretraining with other settings; use another --out, or --force to start over")
    if state == "partial":
        print(f"{exp / 'model.pth'}: resuming the interrupted pretraining")
        args.append("--resume")
    elif exp.exists():
        shutil.rmtree(exp)  # a start that never reached its first record: nothing worth keeping
    return tool("vicreg-train") + args, backbone



def write_random_init(arch: str, mlp: str, seed: int, path: Path) -> bool:
    """The trainer's initial backbone (same seed, same construction order), as a torchvision file, written
    by `vicreg-train --write-init`. Returns False if the file is there already (reused)."""
    if path.is_file():
        return False
    cmd = tool("vicreg-train") + ["--write-init", str(path), "--arch", arch, "--mlp", mlp, "--seed", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not path.is_file():
        raise UserError(f"writing the random-init backbone failed (exit status {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return True

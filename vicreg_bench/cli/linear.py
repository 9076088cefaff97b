"""`vicreg-bench linear`: the BN + linear probe (fast protocol) on cached feature files.

Example:
    vicreg-bench linear --train in1k_train.npz --test in1k_val.npz --preset imagenet --json lin.json
"""

from __future__ import annotations

import argparse

from vicreg_bench.errors import UserError
from vicreg_bench.tasks.linear_fast import LINEAR_PRESETS, linear_protocol_params, train_linear_on_features



def _parse_schedule(text: str) -> str | list[int]:
    if text == "cosine":
        return "cosine"
    try:
        milestones = [int(m) for m in text.replace(" ", "").split(",") if m]
    except ValueError:
        raise UserError(f"--schedule {text!r}: expected 'cosine' or comma-separated milestone epochs like 4,8,12") from None
    if not milestones:
        raise UserError("--schedule: give 'cosine' or milestone epochs like 4,8,12")
    return milestones


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", required=True, metavar="A.npz", help="train features: 'features' N x D, 'labels' (N,) class indices")
    parser.add_argument("--test", required=True, metavar="B.npz", help="test features, same D")
    parser.add_argument("--preset", choices=sorted(LINEAR_PRESETS), default="imagenet",
                        help="protocol settings to start from (default imagenet: lr 0.02, wd 1e-6, 100 epochs, cosine)")
    parser.add_argument("--epochs", type=int, default=None, help="override the preset's number of epochs")
    parser.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    parser.add_argument("--weight-decay", type=float, default=None, help="override the preset's weight decay")
    parser.add_argument("--schedule", default=None, help="'cosine' or milestone epochs where the lr is divided by 10, e.g. 4,8,12")
    parser.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum (VISSL configs)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--num-classes", type=int, default=None, help="number of classes (default: largest label + 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", metavar="OUT", default=None, help="also write metrics, settings and per-epoch history to this JSON file (atomic)")


def main(args: argparse.Namespace) -> int:
    from vicreg_bench.fileio import atomic_write_json
    from vicreg_bench.features.files import check_compatible, load_feature_file

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: CUDA is not available on this machine (use --device cpu)")
    elif args.device != "cpu":
        raise UserError(f"--device {args.device}: expected cpu, cuda or cuda:N")
    preset = dict(LINEAR_PRESETS[args.preset])
    if args.schedule is not None:
        preset["schedule"] = _parse_schedule(args.schedule)
    for key in ("epochs", "lr", "weight_decay", "nesterov"):
        if getattr(args, key) is not None:
            preset[key] = getattr(args, key)
    train = load_feature_file(args.train, "indices", "--train")
    test = load_feature_file(args.test, "indices", "--test")
    check_compatible(train, test)
    out = train_linear_on_features(
        train.features, train.labels, test.features, test.labels, epochs=preset["epochs"], lr=preset["lr"],
        weight_decay=preset["weight_decay"], schedule=preset["schedule"], batch_size=args.batch_size,
        momentum=args.momentum, nesterov=preset["nesterov"], seed=args.seed, device=args.device,
        num_classes=args.num_classes, bn_weight_decay=preset["bn_weight_decay"], progress=True,
    )
    params = linear_protocol_params(preset["epochs"], preset["lr"], preset["weight_decay"], preset["schedule"],
                                    args.batch_size, args.momentum, preset["nesterov"], preset["bn_weight_decay"])
    print(f"linear probe (fast protocol, preset {args.preset}) on {train.num_samples} train / {test.num_samples} test "
          f"features ({train.dim}-d): {preset['epochs']} epochs in {out['seconds']:.1f} s ({out['epochs_per_second']:.1f} epochs/s)")
    print(f"  {'metric':<12}{'value':>8}")
    for name in ("top1", "top5", "best_top1"):
        print(f"  {name:<12}{out[name]:>8.2f}")
    print(f"  {'best_epoch':<12}{out['best_epoch']:>8d}")
    if args.json:
        atomic_write_json(args.json, {
            "command": "linear", "protocol": "linear_fast", "preset": args.preset, "params": params,
            "train": train.summary(), "test": test.summary(),
            "metrics": {"top1": out["top1"], "top5": out["top5"]},
            "best_top1": out["best_top1"], "best_epoch": out["best_epoch"], "history": out["history"],
            "seconds": out["seconds"], "seed": args.seed,
        })
        print(f"wrote {args.json}")
    return 0

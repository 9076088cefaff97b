"""A detection task on the detectron2 engine: convert the checkpoint, launch training, read the AP back.

Steps: the backbone is saved in detectron2's format (`checkpoints.convert.save_detectron2_pkl`: detectron2
names, numpy arrays, `matching_heuristics`); `d2_train_net` runs with our config in a subprocess through
detectron2's own `launch` (so multi-GPU / multi-machine behave exactly as detectron2's tools); the AP it
writes is mapped to our metric names (VOC: AP, AP50, AP75; COCO: bbox_* and segm_*).

Fewer GPUs than the protocol's 8: the protocol puts 2 images on each of 8 GPUs (batch 16). With N GPUs we keep
2 images per GPU (batch 2N, at most 16) and apply the linear-scaling rule (lr x B/16; iterations, steps,
warmup and checkpoint period x 16/B) unless `det_ims_per_batch` says otherwise. The JSON records what ran.
Without a CUDA GPU in use it runs on the CPU (MODEL.DEVICE cpu, one process): slow, for checks and tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from vicreg_bench.detection.d2_plugin import require_detectron2
from vicreg_bench.detection.d2_train_net import RESULTS_NAME
from vicreg_bench.detection.options import DetOptions
from vicreg_bench.detection.protocols import CONFIG_DIR, DetProtocol, protocol_record, resolve_schedule, resolve_sizes
from vicreg_bench.detection.rcnn_parts import IMAGENET_MEAN, IMAGENET_STD
from vicreg_bench.errors import UserError
from vicreg_bench.tasks.context import TaskContext, TaskOutput

# detectron2 ResNet settings per trunk
D2_ARCHS = {
    "resnet18": {"MODEL.RESNETS.DEPTH": "18", "MODEL.RESNETS.RES2_OUT_CHANNELS": "64"},
    "resnet34": {"MODEL.RESNETS.DEPTH": "34", "MODEL.RESNETS.RES2_OUT_CHANNELS": "64"},
    "resnet50": {"MODEL.RESNETS.DEPTH": "50"},
    "resnet101": {"MODEL.RESNETS.DEPTH": "101"},
    "resnet152": {"MODEL.RESNETS.DEPTH": "152"},
    # VICReg/SwAV x2: every width doubled
    "resnet50x2": {"MODEL.RESNETS.DEPTH": "50", "MODEL.RESNETS.WIDTH_PER_GROUP": "128",
                   "MODEL.RESNETS.STEM_OUT_CHANNELS": "128", "MODEL.RESNETS.RES2_OUT_CHANNELS": "512"},
}
BASIC_BLOCK_ARCHS = ("resnet18", "resnet34")
CPU_WARNING = ("warning: the detectron2 engine runs on the CPU (no CUDA GPU in use): one process, SyncBN/naiveSyncBN act "
               "as plain BN, and an iteration at the protocol's input sizes takes tens of seconds; for checks, not for the paper's numbers")


def arch_overrides(protocol: DetProtocol, arch: str) -> dict[str, str]:
    """The config overrides for `arch`, or a UserError saying why detectron2 cannot build it for this protocol."""
    if arch not in D2_ARCHS:
        raise UserError(f"the detectron2 engine supports {', '.join(D2_ARCHS)} trunks, not {arch!r}; use --det-engine torchvision")
    if arch in BASIC_BLOCK_ARCHS and protocol.config_file.endswith("_C4.yaml"):
        raise UserError(
            f"{protocol.task} on the detectron2 engine needs a bottleneck ResNet (resnet50/101/152/50x2), not {arch}: "
            f"its R50-C4 box head runs res5 built from bottleneck blocks, which a {arch} checkpoint does not have; "
            f"the FPN protocol (Mask R-CNN R50-FPN) takes {arch}, and --det-engine torchvision runs {protocol.task} with it"
        )
    return D2_ARCHS[arch]


def _tuple(values) -> str:
    return "(" + ", ".join(str(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def effective_batch(ims_per_batch: int | None, num_gpus: int, num_machines: int) -> int:
    """det_ims_per_batch when given, else 2 images per GPU as in the protocol (16 on 8 GPUs), at most 16."""
    if ims_per_batch is not None:
        return int(ims_per_batch)
    return min(16, 2 * num_gpus * num_machines)


@dataclass(frozen=True)
class Launch:
    """Where detectron2 runs: MODEL.DEVICE, processes per machine, and the options with the batch resolved."""

    device: str  # "cuda" or "cpu"
    num_gpus: int  # processes per machine (1 on the CPU)
    opts: DetOptions


def resolve_launch(ctx: TaskContext, opts: DetOptions) -> Launch:
    """The device, process count and global batch this run uses (known before it runs, so that the protocol
    `run` plans and hashes can be the one recorded). CUDA when `ctx.device` asks for it and a GPU is visible,
    else the CPU with one process."""
    import torch

    if ctx.world_size > 1:
        raise UserError(
            f"the detectron2 engine starts its own processes (detectron2's launch, det_num_gpus per machine): run "
            f"`vicreg-bench run` as one process, not under torchrun ({ctx.world_size} processes here)"
        )
    visible = torch.cuda.device_count() if str(ctx.device).startswith("cuda") else 0
    if visible == 0:
        asked = [f"{k} {v}" for k, v in (("det_num_gpus", opts.num_gpus or 1), ("det_num_machines", opts.num_machines)) if v > 1]
        if asked:
            raise UserError(f"{', '.join(asked)}: the detectron2 engine on the CPU runs one process "
                            "(detectron2's launch binds each process to a GPU); leave them unset")
        device, num_gpus = "cpu", 1
    else:
        device, num_gpus = "cuda", opts.num_gpus or visible
        if num_gpus > visible:
            raise UserError(f"det_num_gpus {num_gpus}: only {visible} CUDA GPU(s) are visible")
    if opts.num_machines > 1 and opts.dist_url == "auto":
        raise UserError("det_num_machines > 1 needs det_dist_url tcp://HOST:PORT (an address of machine 0 every machine reaches)")
    if opts.machine_rank >= opts.num_machines:
        raise UserError(f"det_machine_rank {opts.machine_rank}: expected 0 .. {opts.num_machines - 1} (det_num_machines {opts.num_machines})")
    batch = effective_batch(opts.ims_per_batch, num_gpus, opts.num_machines)
    workers = num_gpus * opts.num_machines
    if batch % workers:
        raise UserError(f"det_ims_per_batch {batch}: detectron2 splits the batch evenly, so it must be a multiple of "
                        f"the {workers} processes (det_num_gpus x det_num_machines)")
    return Launch(device, num_gpus, replace(opts, ims_per_batch=batch))


def build_command(
    protocol: DetProtocol, opts: DetOptions, *, arch: str, normalize_input: bool, weights: Path, output_dir: Path,
    data_root: Path, num_gpus: int, seed: int, resume: bool, device: str = "cuda", num_classes: int | None = None,
) -> tuple[list[str], list[str]]:
    """The launcher command line and the deviations from the protocol it implies. `num_classes`: the test
    set's categories (the config's 20 / 80 for the real datasets)."""
    arch_config = arch_overrides(protocol, arch)
    config = CONFIG_DIR / protocol.config_file
    if not config.is_file():
        raise UserError(f"{config}: detectron2 config not found (run from a vicreg-bench source checkout)")
    sched, period, notes = resolve_schedule(protocol, opts)
    sizes, size_notes = resolve_sizes(protocol, opts)
    d2 = {
        "MODEL.WEIGHTS": str(weights),
        "OUTPUT_DIR": str(output_dir),
        "SEED": str(seed),
        "SOLVER.IMS_PER_BATCH": str(sched.ims_per_batch),
        "SOLVER.BASE_LR": repr(sched.base_lr),
        "SOLVER.MAX_ITER": str(sched.max_iter),
        "SOLVER.STEPS": _tuple(sched.steps),
        "SOLVER.WARMUP_ITERS": str(sched.warmup_iters),
        "SOLVER.WARMUP_FACTOR": repr(sched.warmup_factor),
        "SOLVER.CHECKPOINT_PERIOD": str(period),
        "INPUT.MIN_SIZE_TRAIN": _tuple(sizes.min_sizes_train),
        "INPUT.MIN_SIZE_TEST": str(sizes.min_size_test),
        "INPUT.MAX_SIZE_TRAIN": str(sizes.max_size),
        "INPUT.MAX_SIZE_TEST": str(sizes.max_size),
        "TEST.PRECISE_BN.ENABLED": str(opts.precise_bn_iters > 0),
        "TEST.PRECISE_BN.NUM_ITER": str(max(opts.precise_bn_iters, 1)),
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": str(opts.roi_per_image),
        "MODEL.RPN.POST_NMS_TOPK_TEST": str(opts.test_proposals),
        "TEST.DETECTIONS_PER_IMAGE": str(opts.detections_per_image),
        "DATALOADER.NUM_WORKERS": str(opts.num_workers),
        "MODEL.DEVICE": device,
        **arch_config,
    }
    if num_classes is not None:
        d2["MODEL.ROI_HEADS.NUM_CLASSES"] = str(num_classes)
    if not normalize_input:  # converted SimCLR: the network expects RGB in [0, 1], unnormalised
        d2["MODEL.PIXEL_MEAN"] = "[0.0, 0.0, 0.0]"
        d2["MODEL.PIXEL_STD"] = "[255.0, 255.0, 255.0]"
    else:
        d2["MODEL.PIXEL_MEAN"] = str([round(255 * m, 3) for m in IMAGENET_MEAN])
        d2["MODEL.PIXEL_STD"] = str([round(255 * s, 3) for s in IMAGENET_STD])
    extra = list(opts.d2_opts)
    for k in extra[0::2]:
        d2.pop(k, None)
    if extra:
        notes.append(f"detectron2 overrides {extra}")
    cmd = [
        sys.executable, "-m", "vicreg_bench.detection.d2_train_net",
        "--config-file", str(config),
        "--num-gpus", str(num_gpus),
        "--num-machines", str(opts.num_machines),
        "--machine-rank", str(opts.machine_rank),
        "--dist-url", opts.dist_url,
        *(["--resume"] if resume else []),
        "--data-root", str(data_root),  # last flag: KEY VALUE config overrides follow
    ]
    for k, v in d2.items():
        cmd += [k, v]
    cmd += extra
    return cmd, notes + size_notes


def parse_results(evaluator: str, results: dict) -> dict:
    """detectron2's evaluator output -> our metric names (percentages already)."""
    if evaluator == "voc":
        box = results.get("bbox") or {}
        missing = [k for k in ("AP", "AP50", "AP75") if k not in box]
        if missing:
            raise RuntimeError(f"detectron2 results lack bbox {missing}: {results}")
        return {k: float(box[k]) for k in ("AP", "AP50", "AP75")}
    out = {}
    for kind in ("bbox", "segm"):
        part = results.get(kind) or {}
        for k in ("AP", "AP50", "AP75"):
            if k not in part:
                raise RuntimeError(f"detectron2 results lack {kind} {k}: {results}")
            out[f"{kind}_{k}"] = float(part[k])
    return out


def read_iteration_times(output_dir: Path) -> dict:
    """Median iteration and data time from detectron2's OUTPUT_DIR/metrics.json (one JSON object per line)."""
    path = output_dir / "metrics.json"
    times, data = [], []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "time" in row:
                times.append(float(row["time"]))
            if "data_time" in row:
                data.append(float(row["data_time"]))
    return {
        "train_iter_s": statistics.median(times) if times else None,
        "train_data_time_s": statistics.median(data) if data else None,
    }


PLAN_NAME = "vicreg_bench_plan.json"


def resume_or_clear(output_dir: Path, fingerprint: str, log: Callable[[str], None] = print) -> bool:
    """Whether detectron2 should resume from OUTPUT_DIR/last_checkpoint: only when that training had the same
    fingerprint (config, overrides, checkpoint, processes). A different one (other schedule, other --ckpt in the
    same --out) is removed rather than resumed from, as the torchvision engine ignores a foreign checkpoint."""
    plan = output_dir / PLAN_NAME
    same = plan.is_file() and json.loads(plan.read_text()).get("fingerprint") == fingerprint
    resume = same and (output_dir / "last_checkpoint").is_file()
    if output_dir.exists() and not same:
        log(f"detectron2: {output_dir} holds a training with other settings; starting afresh")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plan.write_text(json.dumps({"fingerprint": fingerprint}))
    return resume


def run_detectron2(protocol: DetProtocol, ctx: TaskContext, opts: DetOptions, log: Callable[[str], None] = print) -> TaskOutput:
    t0 = time.perf_counter()
    require_detectron2()
    if opts.max_test_images is not None or opts.stop_after_iter is not None:
        raise UserError("det_max_test_images and det_stop_after_iter are options of the torchvision engine only")
    launch_plan = resolve_launch(ctx, opts)
    opts, num_gpus = launch_plan.opts, launch_plan.num_gpus
    if launch_plan.device == "cpu":
        log(CPU_WARNING)
    from vicreg_bench.checkpoints.convert import save_detectron2_pkl
    from vicreg_bench.data.registry import open_detection
    from vicreg_bench.detection.tv_runner import dataset_record

    train = [open_detection(n, ctx.data_root, s) for n, s in protocol.train_sets]
    test = open_detection(protocol.test_set[0], ctx.data_root, protocol.test_set[1])
    work = Path(ctx.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "backbone_detectron2.pkl"
    save_detectron2_pkl(ctx.state_dict, weights, force=True)
    output_dir = work / "d2_output"
    arch = ctx.ckpt_info.arch

    def command(resume: bool) -> tuple[list[str], list[str]]:
        return build_command(
            protocol, opts, arch=arch, normalize_input=bool(getattr(ctx.ckpt_info, "normalize_input", True)),
            weights=weights, output_dir=output_dir, data_root=Path(ctx.data_root), num_gpus=num_gpus, seed=ctx.seed,
            resume=resume, device=launch_plan.device, num_classes=len(test.classes),
        )

    plain, _ = command(False)
    fingerprint = hashlib.sha256(json.dumps({
        "config": protocol.config_file, "overrides": plain[plain.index("--data-root") + 2 :], "num_gpus": num_gpus,
        "num_machines": opts.num_machines, "ckpt": getattr(ctx.ckpt_info, "sha256", "") or "",
        "weights": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }, sort_keys=True).encode()).hexdigest()
    resume = resume_or_clear(output_dir, fingerprint, log)
    cmd, notes = command(resume)
    log("detectron2: " + " ".join(cmd))
    env = dict(os.environ, DETECTRON2_DATASETS=str(Path(ctx.data_root).resolve()))
    with open(work / "d2_log.txt", "a") as logf:
        proc = subprocess.run(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"detectron2 training failed (exit {proc.returncode}); see {work / 'd2_log.txt'}")
    results_path = output_dir / RESULTS_NAME
    if not results_path.is_file():
        raise RuntimeError(f"{results_path}: detectron2 wrote no results (machine rank {opts.machine_rank}; machine 0 reports)")
    results = json.loads(results_path.read_text())["results"]
    metrics = parse_results(protocol.evaluator, results)
    name, params, record_notes = protocol_record(protocol, opts, arch, num_gpus * opts.num_machines)
    # params = exactly the plan `run` hashes before running (so a finished task is skipped next time); every
    # deviation it counts (RoIs, proposals, detections per image) is listed too, so extra and params agree
    notes += [n for n in record_notes if n not in notes]
    launch = {"device": launch_plan.device, "num_gpus": num_gpus, "num_machines": opts.num_machines,
              "config_file": protocol.config_file, "d2_opts": cmd[cmd.index("--data-root") + 2 :]}
    sched = params["schedule"]
    throughput = read_iteration_times(output_dir)
    if throughput["train_iter_s"]:
        throughput["train_images_per_s"] = sched["ims_per_batch"] / throughput["train_iter_s"]
    return TaskOutput(
        metrics=metrics,
        protocol_name=name,
        protocol_params=params,
        dataset=dataset_record(protocol, train, test, len(test)),
        engine="detectron2",
        throughput=throughput,
        extra={"deviations_from_protocol": notes, "paper_protocol": not notes, "detectron2_results": results,
               "launch": launch, "resumed": resume, "total_seconds": round(time.perf_counter() - t0, 3)},
    )

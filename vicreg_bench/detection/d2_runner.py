"""A detection task on the detectron2 engine: convert the checkpoint, launch training, read the AP back.

Steps: the backbone is saved in detectron2's format (`checkpoints.convert.save_detectron2_pkl`: detectron2
names, numpy arrays, `matching_heuristics`); `d2_train_net` runs with our config in a subprocess through
detectron2's own `launch` (so multi-GPU / multi-machine behave exactly as detectron2's tools); the AP it
writes is mapped to our metric names (VOC: AP, AP50, AP75; COCO: bbox_* and segm_*).

Fewer GPUs than the protocol's 8: the protocol puts 2 images on each of 8 GPUs (batch 16). With N GPUs we keep
2 images per GPU (batch 2N, at most 16) and apply the linear-scaling rule (lr x B/16; iterations, steps,
warmup and checkpoint period x 16/B) unless `det_ims_per_batch` says otherwise. The JSON records what ran.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from vicreg_bench.detection.d2_plugin import require_detectron2
from vicreg_bench.detection.d2_train_net import RESULTS_NAME
from vicreg_bench.detection.options import DetOptions
from vicreg_bench.detection.protocols import CONFIG_DIR, DetProtocol, protocol_record, resolve_schedule, resolve_sizes
from vicreg_bench.detection.rcnn_parts import IMAGENET_MEAN, IMAGENET_STD
from vicreg_bench.errors import UserError
from vicreg_bench.tasks.context import TaskContext, TaskOutput

# detectron2 ResNet settings per trunk (its C4 head builds bottleneck blocks only)
D2_ARCHS = {
    "resnet50": {"MODEL.RESNETS.DEPTH": "50"},
    "resnet101": {"MODEL.RESNETS.DEPTH": "101"},
    "resnet152": {"MODEL.RESNETS.DEPTH": "152"},
    # VICReg/SwAV x2: every width doubled
    "resnet50x2": {"MODEL.RESNETS.DEPTH": "50", "MODEL.RESNETS.WIDTH_PER_GROUP": "128",
                   "MODEL.RESNETS.STEM_OUT_CHANNELS": "128", "MODEL.RESNETS.RES2_OUT_CHANNELS": "512"},
}


def _tuple(values) -> str:
    return "(" + ", ".join(str(v) for v in values) + ("," if len(values) == 1 else "") + ")"


def effective_batch(ims_per_batch: int | None, num_gpus: int, num_machines: int) -> int:
    """det_ims_per_batch when given, else 2 images per GPU as in the protocol (16 on 8 GPUs), at most 16."""
    if ims_per_batch is not None:
        return int(ims_per_batch)
    return min(16, 2 * num_gpus * num_machines)


def build_command(
    protocol: DetProtocol, opts: DetOptions, *, arch: str, normalize_input: bool, weights: Path, output_dir: Path,
    data_root: Path, num_gpus: int, seed: int, resume: bool,
) -> tuple[list[str], list[str]]:
    """The launcher command line and the deviations from the protocol it implies."""
    if arch not in D2_ARCHS:
        raise UserError(f"the detectron2 engine supports {', '.join(D2_ARCHS)} trunks, not {arch!r}; use --det-engine torchvision")
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
        **D2_ARCHS[arch],
    }
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


def run_detectron2(protocol: DetProtocol, ctx: TaskContext, opts: DetOptions, log: Callable[[str], None] = print) -> TaskOutput:
    t0 = time.perf_counter()
    require_detectron2()
    import torch

    if opts.max_test_images is not None or opts.stop_after_iter is not None:
        raise UserError("det_max_test_images and det_stop_after_iter are options of the torchvision engine only")
    num_gpus = opts.num_gpus or torch.cuda.device_count()
    if num_gpus < 1:
        raise UserError("the detectron2 engine trains on CUDA GPUs and none is visible; use --det-engine torchvision on CPU")
    opts = replace(opts, ims_per_batch=effective_batch(opts.ims_per_batch, num_gpus, opts.num_machines))
    from vicreg_bench.checkpoints.convert import save_detectron2_pkl

    work = Path(ctx.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "backbone_detectron2.pkl"
    save_detectron2_pkl(ctx.state_dict, weights, force=True)
    output_dir = work / "d2_output"
    resume = (output_dir / "last_checkpoint").is_file()
    arch = ctx.ckpt_info.arch
    cmd, notes = build_command(
        protocol, opts, arch=arch, normalize_input=bool(getattr(ctx.ckpt_info, "normalize_input", True)),
        weights=weights, output_dir=output_dir, data_root=Path(ctx.data_root), num_gpus=num_gpus, seed=ctx.seed, resume=resume,
    )
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
    name, params, _ = protocol_record(protocol, opts, arch, num_gpus * opts.num_machines)
    # params = exactly the plan `run` hashes before running (so a finished task is skipped next time)
    launch = {"num_gpus": num_gpus, "num_machines": opts.num_machines, "config_file": protocol.config_file, "d2_opts": cmd[cmd.index("--data-root") + 2 :]}
    sched = params["schedule"]
    throughput = read_iteration_times(output_dir)
    if throughput["train_iter_s"]:
        throughput["train_images_per_s"] = sched["ims_per_batch"] / throughput["train_iter_s"]
    from vicreg_bench.data.registry import open_detection

    train = [open_detection(n, ctx.data_root, s) for n, s in protocol.train_sets]
    test = open_detection(protocol.test_set[0], ctx.data_root, protocol.test_set[1])
    from vicreg_bench.detection.tv_runner import dataset_record

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

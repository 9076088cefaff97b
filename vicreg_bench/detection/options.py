"""Run options of the detection tasks (`ctx.options`), with the paper protocol as every default.

| option | default | meaning |
|---|---|---|
| det_engine | "detectron2" | "detectron2" (the protocol behind the published numbers) or "torchvision" |
| det_ims_per_batch | 16 | global batch; other values apply the linear-scaling rule (lr, iterations, steps, warmup) |
| det_base_lr | scaled | override the learning rate |
| det_max_iter | scaled | override the iterations (steps and warmup keep their share); not the protocol |
| det_input_scale | 1.0 | multiply every input size (480..800, 800, 1333): small synthetic images in tests/demo |
| det_min_size_train / det_min_size_test / det_max_size | protocol | explicit input sizes |
| det_checkpoint_period | 5000 (scaled) | iterations between checkpoints (detectron2 SOLVER.CHECKPOINT_PERIOD) |
| det_precise_bn_iters | 200 | TEST.PRECISE_BN.NUM_ITER; 0 turns precise BN off |
| det_num_workers | 4 | data-loading processes per training process |
| det_amp | "auto" | torchvision engine: "bf16"/"fp16"/"off"; auto = bf16 (fp16 without bf16 support) on CUDA, off on CPU |
| det_channels_last | false | torchvision engine on CUDA: channels_last memory format |
| det_roi_per_image | 512 | RoIs sampled per training image (ROI_HEADS.BATCH_SIZE_PER_IMAGE); smaller = faster CPU tests |
| det_test_proposals | 1000 | proposals kept per test image (RPN.POST_NMS_TOPK_TEST) |
| det_detections_per_image | 100 | detections kept per test image (TEST.DETECTIONS_PER_IMAGE); smaller = faster CPU mask inference |
| det_max_test_images | all | evaluate on the first N test images only (quick checks; not the protocol) |
| det_stop_after_iter | none | stop training at this iteration as if interrupted (tests of resume) |
| det_num_gpus | all visible | detectron2: GPUs per machine |
| det_num_machines / det_machine_rank / det_dist_url | 1 / 0 / "auto" | detectron2 multi-machine launch |
| det_d2_opts | [] | extra detectron2 config overrides, "KEY VALUE" pairs |
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from vicreg_bench.errors import UserError

ENGINES = ("detectron2", "torchvision")


@dataclass
class DetOptions:
    engine: str = "detectron2"
    ims_per_batch: int = 16
    base_lr: float | None = None
    max_iter: int | None = None
    input_scale: float = 1.0
    min_size_train: tuple[int, ...] | None = None
    min_size_test: int | None = None
    max_size: int | None = None
    checkpoint_period: int | None = None
    precise_bn_iters: int = 200
    num_workers: int = 4
    amp: str = "auto"
    channels_last: bool = False
    roi_per_image: int = 512
    test_proposals: int = 1000
    detections_per_image: int = 100
    max_test_images: int | None = None
    stop_after_iter: int | None = None
    num_gpus: int | None = None
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"
    d2_opts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["min_size_train"] = list(self.min_size_train) if self.min_size_train else None
        return d


def _int(opts: dict, key: str, default, minimum: int = 0):
    v = opts.get(key)
    if v is None:
        return default
    try:
        v = int(v)
    except (TypeError, ValueError):
        raise UserError(f"option {key}: expected an integer, got {opts[key]!r}") from None
    if v < minimum:
        raise UserError(f"option {key}: expected an integer >= {minimum}, got {v}")
    return v


def _bool(opts: dict, key: str, default: bool) -> bool:
    v = opts.get(key)
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("1", "true", "yes", "on"):
        return True
    if str(v).lower() in ("0", "false", "no", "off"):
        return False
    raise UserError(f"option {key}: expected true or false, got {v!r}")


def parse_options(opts: dict[str, Any] | None) -> DetOptions:
    """Validate `ctx.options` for detection; every mistake is a UserError naming the option."""
    opts = dict(opts or {})
    engine = opts.get("det_engine") or "detectron2"
    if engine not in ENGINES:
        raise UserError(f"option det_engine (--det-engine): expected one of {', '.join(ENGINES)}, got {engine!r}")
    scale = opts.get("det_input_scale", 1.0)
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise UserError(f"option det_input_scale: expected a number, got {scale!r}") from None
    if scale <= 0:
        raise UserError(f"option det_input_scale: expected a positive number, got {scale}")
    base_lr = opts.get("det_base_lr")
    if base_lr is not None:
        try:
            base_lr = float(base_lr)
        except (TypeError, ValueError):
            raise UserError(f"option det_base_lr: expected a number, got {base_lr!r}") from None
    mst = opts.get("det_min_size_train")
    if mst is not None:
        if isinstance(mst, (int, str)):
            mst = [mst] if isinstance(mst, int) else [s for s in str(mst).replace(",", " ").split()]
        try:
            mst = tuple(int(s) for s in mst)
        except (TypeError, ValueError):
            raise UserError(f"option det_min_size_train: expected integers, got {opts['det_min_size_train']!r}") from None
        if not mst or min(mst) <= 0:
            raise UserError("option det_min_size_train: expected positive integers")
    amp = str(opts.get("det_amp") or "auto")
    if amp not in ("auto", "bf16", "fp16", "off"):
        raise UserError(f"option det_amp: expected auto, bf16, fp16 or off, got {amp!r}")
    d2_opts = opts.get("det_d2_opts") or []
    if isinstance(d2_opts, str):
        d2_opts = d2_opts.split()
    if len(d2_opts) % 2:
        raise UserError(f"option det_d2_opts: expected KEY VALUE pairs, got {d2_opts!r}")
    return DetOptions(
        engine=engine,
        ims_per_batch=_int(opts, "det_ims_per_batch", 16, 1),
        base_lr=base_lr,
        max_iter=_int(opts, "det_max_iter", None, 1),
        input_scale=scale,
        min_size_train=mst,
        min_size_test=_int(opts, "det_min_size_test", None, 1),
        max_size=_int(opts, "det_max_size", None, 1),
        checkpoint_period=_int(opts, "det_checkpoint_period", None, 1),
        precise_bn_iters=_int(opts, "det_precise_bn_iters", 200, 0),
        num_workers=_int(opts, "det_num_workers", 4, 0),
        amp=amp,
        channels_last=_bool(opts, "det_channels_last", False),
        roi_per_image=_int(opts, "det_roi_per_image", 512, 1),
        test_proposals=_int(opts, "det_test_proposals", 1000, 1),
        detections_per_image=_int(opts, "det_detections_per_image", 100, 1),
        max_test_images=_int(opts, "det_max_test_images", None, 1),
        stop_after_iter=_int(opts, "det_stop_after_iter", None, 1),
        num_gpus=_int(opts, "det_num_gpus", None, 1),
        num_machines=_int(opts, "det_num_machines", 1, 1),
        machine_rank=_int(opts, "det_machine_rank", 0, 0),
        dist_url=str(opts.get("det_dist_url") or "auto"),
        d2_opts=[str(x) for x in d2_opts],
    )

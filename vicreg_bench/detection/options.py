"""Typed options of the detection tasks (`--option det_*=...`), with the paper protocol as every default.

| option | default | meaning |
|---|---|---|
| det_engine | "detectron2" | "detectron2" (the protocol behind the published numbers) or "torchvision" |
| det_ims_per_batch | protocol | global batch (16; detectron2 engine: 2 per GPU up to 16); other values apply the linear-scaling rule (lr, iterations, steps, warmup) |
| det_base_lr | scaled | override the learning rate |
| det_max_iter | scaled | override the iterations (steps and warmup keep their share); not the protocol |
| det_input_scale | 1.0 | multiply every input size (480..800, 800, 1333): small synthetic images in tests/demo |
| det_min_size_train / det_min_size_test / det_max_size | protocol | explicit input sizes |
| det_checkpoint_period | 5000 (scaled) | iterations between checkpoints (detectron2 SOLVER.CHECKPOINT_PERIOD) |
| det_precise_bn_iters | 200 | TEST.PRECISE_BN.NUM_ITER; 0 turns precise BN off |
| det_num_workers | the run's --workers, else 4 | data-loading processes per training process |
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

from dataclasses import asdict, dataclass
from typing import Literal

from vicreg_bench.tasks.options import OptionError, TaskOptions, option

ENGINES = ("detectron2", "torchvision")
PROTOCOL_BATCH = 16


@dataclass(frozen=True)
class DetOptions(TaskOptions):
    engine: Literal["detectron2", "torchvision"] = option(
        "detectron2", "detectron2 (the engine of the published numbers) or torchvision (embedded, runs anywhere)",
        key="det_engine")
    ims_per_batch: int | None = option(
        None, "global batch; other than 16 applies the linear-scaling rule (default: 16; detectron2: 2 per GPU "
        "up to 16)", key="det_ims_per_batch", minimum=1)
    base_lr: float | None = option(None, "learning rate instead of the (scaled) protocol's", key="det_base_lr")
    max_iter: int | None = option(None, "training iterations instead of the protocol's (steps and warmup keep "
                                  "their share)", key="det_max_iter", minimum=1)
    input_scale: float = option(1.0, "multiply every input size (small synthetic images)", key="det_input_scale")
    min_size_train: tuple[int, ...] | None = option(None, "training shorter-side sizes", key="det_min_size_train",
                                                    minimum=1)
    min_size_test: int | None = option(None, "test shorter-side size", key="det_min_size_test", minimum=1)
    max_size: int | None = option(None, "longer-side cap", key="det_max_size", minimum=1)
    checkpoint_period: int | None = option(None, "iterations between checkpoints (default 5000, scaled)",
                                           key="det_checkpoint_period", minimum=1, numbers=False)
    precise_bn_iters: int = option(200, "precise-BN iterations before testing; 0 turns it off",
                                   key="det_precise_bn_iters", minimum=0)
    num_workers: int | None = option(None, "data-loading processes per training process (default: the run's "
                                     "--workers, else 4)", key="det_num_workers", minimum=0, numbers=False)
    amp: Literal["auto", "bf16", "fp16", "off"] = option(
        "auto", "torchvision engine: mixed precision on CUDA (auto: bf16, fp16 without bf16 support)", key="det_amp")
    channels_last: bool = option(False, "torchvision engine on CUDA: channels_last memory format",
                                 key="det_channels_last")
    roi_per_image: int = option(512, "RoIs sampled per training image", key="det_roi_per_image", minimum=1)
    test_proposals: int = option(1000, "proposals kept per test image", key="det_test_proposals", minimum=1)
    detections_per_image: int = option(100, "detections kept per test image", key="det_detections_per_image",
                                       minimum=1)
    max_test_images: int | None = option(None, "evaluate on the first N test images only (not the protocol)",
                                         key="det_max_test_images", minimum=1)
    stop_after_iter: int | None = option(None, "stop training at this iteration as if interrupted (resume tests)",
                                         key="det_stop_after_iter", minimum=1, numbers=False)
    num_gpus: int | None = option(None, "detectron2: GPUs per machine (default: all visible)", key="det_num_gpus",
                                  minimum=1, numbers=False)
    num_machines: int = option(1, "detectron2: machines", key="det_num_machines", minimum=1, numbers=False)
    machine_rank: int = option(0, "detectron2: this machine's rank", key="det_machine_rank", minimum=0,
                               numbers=False)
    dist_url: str = option("auto", "detectron2: rendezvous URL of a multi-machine launch", key="det_dist_url",
                           numbers=False)
    d2_opts: list[str] = option([], "extra detectron2 config overrides, KEY VALUE pairs", key="det_d2_opts")

    def validate(self) -> None:
        if not self.input_scale > 0:
            raise OptionError(f"option det_input_scale: expected a positive number, got {self.input_scale}")
        if self.base_lr is not None and not self.base_lr > 0:
            raise OptionError(f"option det_base_lr: expected a positive number, got {self.base_lr}")
        if self.min_size_train is not None and not self.min_size_train:
            raise OptionError("option det_min_size_train: expected at least one size")
        if len(self.d2_opts) % 2:
            raise OptionError(f"option det_d2_opts: expected KEY VALUE pairs, got {self.d2_opts!r}")

    @property
    def batch(self) -> int:
        """The global batch the torchvision engine and the protocol record use."""
        return self.ims_per_batch if self.ims_per_batch is not None else PROTOCOL_BATCH

    def as_dict(self) -> dict:
        d = asdict(self)
        d["min_size_train"] = list(self.min_size_train) if self.min_size_train else None
        return d

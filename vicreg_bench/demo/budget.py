"""What the demo scales down: the pretraining, and the evaluation settings every task with such an option
shares (epochs, batch size, image size); each task's own scale-down is its registration's demo preset."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Everything the demo scales down; `--size` picks a preset, flags override single fields."""

    arch: str = "resnet18"
    mlp: str = "2048-2048-2048"
    # pretraining (vicreg-train)
    pretrain_epochs: int = 15
    pretrain_batch: int = 32
    pretrain_lr: float = 10.0  # base lr: peak = base * batch / 256, LARS as the official code
    pretrain_warmup: float = 1.0
    pretrain_size: int = 64
    crop_min_scale: float = 0.2
    pretrain_data: str = "imagenet"  # "imagenet": its train images; "all": + places205 and inat2018 train images
    # evaluation (vicreg-bench run): every task option `epochs` / `batch_size` gets these; a task with an
    # `eval_every` option evaluates the final epoch only (the headline)
    image_size: int = 64
    eval_epochs: int = 3
    eval_batch: int = 32


PRESETS: dict[str, Budget] = {
    "small": Budget(),
    "tiny": Budget(mlp="256-256", pretrain_epochs=1, pretrain_batch=16, pretrain_size=32, image_size=32,
                   eval_epochs=1, eval_batch=16),
}

"""What `load_backbone` tells about a checkpoint: `BackboneInfo`, method names and layout names."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Method names of DESIGN.md (also used in `inspect --json` and in the results JSON).
METHODS: tuple[str, ...] = (
    "vicreg", "barlowtwins", "moco_v2", "moco_v3", "swav", "dino", "dinov2", "mae", "ibot", "byol", "simclr",
    "vissl", "solo_learn", "timm", "torchvision", "detectron2",
)

# Layout names (`info.format`) -> what they are. docs/checkpoints.md lists the same table.
FORMATS: dict[str, str] = {
    "torchvision": "flat torchvision-named state dict (torchvision, timm, VICReg/Barlow Twins resnet50.pth, DINO backbone)",
    "torchvision_wrapped": "torchvision names under 'state_dict'/'model' of a training checkpoint (ImageNet example, MoCo lincls, timm train)",
    "vicreg_full": "VICReg model.pth {epoch, model: module.backbone.* + module.projector.*, optimizer}",
    "barlowtwins_full": "Barlow Twins checkpoint.pth {epoch, model: module.backbone.* + module.projector.* + module.bn.*, optimizer}",
    "moco": "MoCo v1/v2 {epoch, arch, state_dict: module.encoder_q.* (+ encoder_k, queue), optimizer}",
    "moco_v3": "MoCo v3 {epoch, arch, state_dict: module.base_encoder.* + momentum_encoder + predictor, optimizer, scaler} (ResNet or ViT)",
    "swav": "SwAV / DeepCluster-v2 / SeLa-v2: module.* + projection_head + prototypes, flat or under 'state_dict'",
    "dino_full": "DINO checkpoint.pth {student, teacher: (module.)backbone.* + (module.)head.*, optimizer, epoch, args, dino_loss} (ResNet or ViT)",
    "ibot_full": "iBOT checkpoint.pth {student, teacher: module.backbone.* + module.head.*, optimizer, epoch, args, ibot_loss}",
    "ibot_backbone": "iBOT extract_backbone_weights.py output {state_dict: ViT backbone} (checkpoint_teacher.pth releases)",
    "dinov2": "DINOv2 backbone release: flat ViT with mask_token (+ register_tokens), layer scale ls1/ls2.gamma",
    "dinov2_teacher": "DINOv2 eval/<iter>/teacher_checkpoint.pth {teacher: backbone.* (block-chunked) + dino_head.* + ibot_head.*}",
    "mae": "MAE checkpoint-N.pth {model: encoder + decoder_* + mask_token, optimizer, epoch, scaler, args}",
    "mae_encoder": "ViT encoder without head under 'model' (MAE mae_pretrain_vit_*.pth; MoCo v3 convert_to_deit.py)",
    "timm_vit": "flat timm-named ViT state dict (timm vit_* weights, maybe head; DINO's ViT backbone release)",
    "timm_vit_wrapped": "timm-named ViT under 'state_dict'/'model'/... of a training checkpoint (timm train.py, DeiT)",
    "vissl": "VISSL {classy_state_dict: base_model.model.trunk: _feature_blocks.* (or base_model._feature_blocks.*), ...}",
    "simclr_converted": "SimCLR converted by simclr-converter: {state_dict: torchvision names + fc}",
    "byol_converted": "BYOL converted from the JAX release: flat torchvision names + fc, no num_batches_tracked",
    "lightning": "PyTorch Lightning checkpoint (solo-learn, lightly): state_dict with backbone.* (old solo-learn: encoder.*)",
    "detectron2": "detectron2 .pkl {model: detectron2 names as numpy arrays, __author__, matching_heuristics}",
    "vicreg_bench": "vicreg-bench export: torchvision (ResNet) or timm (ViT) state dict carrying vicreg-bench metadata",
    "generic": "a single ResNet trunk found under an unrecognised prefix",
}

CONTAINERS: dict[str, str] = {
    "torch_zip": "PyTorch zip archive",
    "torch_legacy": "PyTorch legacy (pre-1.6) pickle",
    "pickle": "plain pickle",
    "safetensors": "safetensors",
}


@dataclass
class BackboneInfo:
    """Where the backbone came from and how to feed it.

    `normalize_input` is False for converted SimCLR weights, which expect images in [0, 1] without
    ImageNet mean/std normalisation; every downstream transform must honour it.
    """

    path: str
    format: str
    method: str
    arch: str
    sha256: str
    num_params: int
    dropped_keys: list[str] = field(default_factory=list)
    normalize_input: bool = True
    notes: list[str] = field(default_factory=list)
    container: str = ""
    reader: str = ""
    source: str = ""  # where in the file the backbone was (entry path and key prefix)
    key: str | None = None  # which branch was taken (teacher/student, encoder_q/encoder_k, ...)
    num_tensors: int = 0

    def to_results_dict(self) -> dict[str, Any]:
        """The results JSON `checkpoint` block."""
        return {"path": self.path, "sha256": self.sha256, "format": self.format, "method": self.method, "arch": self.arch}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

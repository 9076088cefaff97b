"""ResNet trunks with torchvision parameter names, including VICReg's widened resnet50x2.

Every checkpoint is loaded into one of these, strictly, so the whole harness speaks one naming scheme.
The trunk's `fc` is an Identity: `model(x)` returns the res5avg feature (global average pool after layer4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


@dataclass(frozen=True)
class ArchSpec:
    block: type
    layers: tuple[int, int, int, int]
    widen: int = 1

    @property
    def feature_dim(self) -> int:
        return 512 * self.block.expansion * self.widen


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ArchSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ArchSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ArchSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ArchSpec(Bottleneck, (3, 8, 36, 3)),
    # VICReg / SwAV "x2": every channel count doubled (stem 128, res5 out 4096),
    # not torchvision's wide_resnet50_2 (which widens only the bottleneck).
    "resnet50x2": ArchSpec(Bottleneck, (3, 4, 6, 3), widen=2),
}


class WidenedResNet(ResNet):
    """torchvision's ResNet with all widths multiplied by `widen`; parameter names unchanged."""

    def __init__(self, block: type, layers: list[int], widen: int, **kwargs):
        super().__init__(block, layers, **kwargs)
        width = 64 * widen
        norm = self._norm_layer
        self.inplanes = width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm(width)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.fc = nn.Linear(width * 8 * block.expansion, kwargs.get("num_classes", 1000))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if kwargs.get("zero_init_residual"):
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)


def build_resnet(arch: str, *, with_fc: bool = False, num_classes: int = 1000, zero_init_residual: bool = False) -> nn.Module:
    """A randomly initialised trunk. Without `fc` its forward returns res5avg features."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHS)}")
    spec = ARCHS[arch]
    kwargs = dict(num_classes=num_classes, zero_init_residual=zero_init_residual)
    if spec.widen == 1:
        model = ResNet(spec.block, list(spec.layers), **kwargs)
    else:
        model = WidenedResNet(spec.block, list(spec.layers), spec.widen, **kwargs)
    if not with_fc:
        model.fc = nn.Identity()
    return model


def feature_dim(arch: str) -> int:
    return ARCHS[arch].feature_dim

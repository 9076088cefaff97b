"""Architecture inference from shapes alone (meta tensors: no memory, no time)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnext50_32x4d, wide_resnet50_2

from vicreg_bench.checkpoints.arch import complete_and_check, expected_shapes, infer_arch
from vicreg_bench.models import ARCHS, build_resnet


def meta_state(arch: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return dict(build_resnet(arch).state_dict())


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_supported_arch_is_inferred_and_checks(arch: str) -> None:
    sd = meta_state(arch)
    assert infer_arch(sd) == arch
    assert complete_and_check(sd, arch) == []


def test_resnet50x2_doubles_every_width() -> None:
    shapes = expected_shapes("resnet50x2")
    assert shapes["conv1.weight"] == (128, 3, 7, 7)
    assert shapes["layer1.0.conv1.weight"] == (128, 128, 1, 1)
    assert shapes["layer4.2.conv3.weight"] == (4096, 1024, 1, 1)


@pytest.mark.parametrize("factory,expected", [(wide_resnet50_2, "Wide ResNet"), (resnext50_32x4d, "ResNeXt")])
def test_torchvision_variants_that_are_not_supported(factory, expected: str) -> None:
    with torch.device("meta"):
        sd = {k: v for k, v in factory().state_dict().items() if not k.startswith("fc.")}
    with pytest.raises(ValueError, match=expected):
        infer_arch(sd)


def test_counters_are_added_when_absent() -> None:
    sd = {k: v for k, v in meta_state("resnet18").items() if not k.endswith("num_batches_tracked")}
    notes = complete_and_check(sd, "resnet18")
    assert notes and set(sd) == set(expected_shapes("resnet18"))

import pytest
import torch

from vicreg_bench.models import ARCHS, build_resnet, feature_dim


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnet50x2"])
def test_trunk_outputs_res5avg(arch):
    model = build_resnet(arch).eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, feature_dim(arch))
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_resnet50x2_doubles_every_width():
    sd = build_resnet("resnet50x2").state_dict()
    assert sd["conv1.weight"].shape == (128, 3, 7, 7)
    assert sd["layer1.0.conv1.weight"].shape == (128, 128, 1, 1)
    assert sd["layer4.2.conv3.weight"].shape == (4096, 1024, 1, 1)
    assert feature_dim("resnet50x2") == 4096


def test_torchvision_names_match_torchvision():
    import torchvision

    ours = set(build_resnet("resnet50").state_dict())
    theirs = {k for k in torchvision.models.resnet50().state_dict() if not k.startswith("fc.")}
    assert ours == theirs
    assert set(ARCHS) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50x2"}

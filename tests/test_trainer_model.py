"""Network construction, ablation flags, augmentations and data order of the VICReg trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from trainers.vicreg.augment import TwoViewTransform, make_view, view_recipes
from trainers.vicreg.data import GlobalBatchSampler, TwoViewImageFolder, resolve_image_folder
from trainers.vicreg.distributed import CPUSyncBatchNorm, convert_sync_batchnorm
from trainers.vicreg.model import VICReg, build_mlp, parse_mlp_spec
from trainers.vicreg.train import build_parser
from vicreg_bench.errors import UserError


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_default_projector_matches_official_layout():
    with torch.device("meta"):  # shapes and names only: no 150M-parameter initialisation
        proj = build_mlp(2048, parse_mlp_spec("8192-8192-8192"))
    keys = set(proj.state_dict())
    # official model.pth: module.projector.{0,1,3,4,6}; Linear biases except the last
    assert {"0.weight", "0.bias", "1.weight", "1.running_mean", "3.weight", "3.bias", "4.weight", "6.weight"} <= keys
    assert "6.bias" not in keys
    assert [type(m).__name__ for m in proj] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert proj[6].weight.shape == (8192, 8192) and proj[0].weight.shape == (8192, 2048)


@pytest.mark.parametrize("spec,depth", [("256", 1), ("512-256", 2), ("1024-1024-1024-512", 4)])
def test_projector_width_and_depth(spec, depth):
    model = VICReg("resnet18", spec)
    linears = [m for m in model.projector if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    assert linears[0].in_features == 512 and linears[-1].out_features == int(spec.split("-")[-1])
    assert model.num_features == int(spec.split("-")[-1])


@pytest.mark.parametrize("spec", ["", "8192-x", "0-128", "-5"])
def test_bad_mlp_spec_is_a_user_error(spec):
    with pytest.raises(UserError, match="--mlp"):
        VICReg("resnet18", spec)


def test_unknown_arch_is_a_user_error():
    with pytest.raises(UserError, match="--arch"):
        VICReg("vgg16", "64")


def test_no_proj_bn_removes_batch_norm_from_projector_and_predictor():
    model = VICReg("resnet18", "64-64-32", proj_bn=False, predictor="64-32")
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.projector)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.predictor)
    assert any(isinstance(m, nn.BatchNorm1d) for m in VICReg("resnet18", "64-64-32").projector)


def test_standardize_appends_non_affine_batch_norm_that_standardizes():
    torch.manual_seed(0)
    model = VICReg("resnet18", "64-32", standardize=True)
    last = model.projector[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    out = model(torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32))
    z = out["z_a"].detach()
    torch.testing.assert_close(z.mean(0), torch.zeros(32), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(32), atol=1e-2, rtol=0)  # var / (var + eps)


def test_predictor_two_layers_and_outputs():
    model = VICReg("resnet18", "64-32", predictor="48-32")
    assert [type(m).__name__ for m in model.predictor] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    out = model(torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32))
    assert out["p_a"].shape == out["z_a"].shape == (4, 32)
    assert out["y_a"].shape == (4, 512)
    with pytest.raises(UserError, match="--predictor"):
        VICReg("resnet18", "64-32", predictor="48-16")


def test_backbone_is_zero_init_residual_and_torchvision_named():
    model = VICReg("resnet18", "32")
    assert float(model.backbone.layer1[0].bn2.weight.detach().abs().sum()) == 0.0
    assert "fc.weight" not in model.backbone.state_dict()
    assert "layer4.1.conv2.weight" in model.backbone.state_dict()


@pytest.mark.parametrize("arch,dim", [("resnet34", 512), ("resnet50", 2048), ("resnet50x2", 4096)])
def test_other_backbones_build(arch, dim):
    with torch.device("meta"):
        model = VICReg(arch, "16")
    assert model.embedding_dim == dim and model.projector[0].in_features == dim


def test_cpu_sync_batchnorm_conversion_keeps_parameters_and_matches_bn_alone():
    torch.manual_seed(0)
    model = VICReg("resnet18", "32-16")
    converted = convert_sync_batchnorm(model, torch.device("cpu"))
    bns = [m for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, CPUSyncBatchNorm) for m in bns)
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    plain = VICReg("resnet18", "32-16")
    torch.testing.assert_close(converted(x, x)["z_a"], plain(x, x)["z_a"])  # no process group: plain BN


def test_ablation_flags_reach_the_parser():
    a = build_parser().parse_args(["--data", "x", "--no-proj-bn", "--standardize", "--l2-normalize", "--predictor", "8192-8192",
                                   "--sim-coeff", "1", "--std-coeff", "1", "--cov-coeff", "0", "--variance-form", "paper",
                                   "--mlp", "2048-2048", "--augment", "paper"])
    assert (a.no_proj_bn, a.standardize, a.l2_normalize, a.predictor) == (True, True, True, "8192-8192")
    assert (a.sim_coeff, a.std_coeff, a.cov_coeff, a.variance_form, a.mlp, a.augment) == (1.0, 1.0, 0.0, "paper", "2048-2048", "paper")
    d = build_parser().parse_args(["--data-dir", "x"])
    assert (d.data, d.mlp, d.batch_size, d.base_lr, d.wd, d.epochs, d.arch) == ("x", "8192-8192-8192", 2048, 0.2, 1e-6, 100, "resnet50")


# --- augmentations -------------------------------------------------------------------------------

def _image(seed: int = 0, size: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size + 8, 3)) * 255).astype("uint8"))


def test_official_recipes_are_asymmetric_and_paper_symmetric():
    a, b = view_recipes("official", 224)
    assert (a.blur_p, a.solarize_p, b.blur_p, b.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert a.scale == (0.08, 1.0) and (a.brightness, a.contrast, a.saturation, a.hue, a.jitter_p, a.gray_p) == (0.4, 0.4, 0.2, 0.1, 0.8, 0.2)
    p, q = view_recipes("paper", 224)
    assert p == q and (p.blur_p, p.solarize_p, p.scale) == (0.5, 0.1, (0.2, 1.0))
    assert view_recipes("official", 64, min_scale=0.2)[0].scale == (0.2, 1.0)
    with pytest.raises(UserError, match="--augment"):
        view_recipes("simclr")


def test_views_are_deterministic_per_generator_and_sized():
    t = TwoViewTransform("official", size=32)
    img = _image()
    a1, b1 = t(img, np.random.default_rng([0, 1, 2]))
    a2, b2 = t(img, np.random.default_rng([0, 1, 2]))
    a3, _ = t(img, np.random.default_rng([0, 1, 3]))
    assert a1.shape == (3, 32, 32) and b1.shape == (3, 32, 32)
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, a3) and not torch.equal(a1, b1)


def test_view_operations_fire_with_their_probabilities():
    img = _image(1, 40)
    # view 1 of the official recipe always blurs: the blurred view is smoother than an unblurred one
    a, _ = view_recipes("official", 32)
    no_blur = a.__class__(**{**a.__dict__, "blur_p": 0.0})
    rough_blur = rough_plain = 0.0
    for s in range(8):
        va = make_view(img, a, np.random.default_rng(s))
        vp = make_view(img, no_blur, np.random.default_rng(s))
        rough_blur += float((va[:, 1:] - va[:, :-1]).abs().mean())
        rough_plain += float((vp[:, 1:] - vp[:, :-1]).abs().mean())
    assert rough_blur < rough_plain
    # solarize p 1 inverts bright pixels of an all-white image
    white = Image.new("RGB", (16, 16), (255, 255, 255))
    sol = a.__class__(size=8, scale=(1.0, 1.0), jitter_p=0, gray_p=0, blur_p=0, solarize_p=1.0, flip_p=0)
    v = make_view(white, sol, np.random.default_rng(0))
    assert float(v.max()) < -1.5  # 0 after solarization, normalised by ImageNet mean/std


# --- data ----------------------------------------------------------------------------------------

def _folder(tmp_path, classes=3, per_class=5):
    for c in range(classes):
        d = tmp_path / "train" / f"class{c}"
        d.mkdir(parents=True)
        for i in range(per_class):
            _image(c * 100 + i, 24).save(d / f"{i}.png")
    return tmp_path


def test_image_folder_and_train_subfolder_resolution(tmp_path):
    root = _folder(tmp_path)
    assert resolve_image_folder(root) == root / "train"
    assert resolve_image_folder(root / "train") == root / "train"
    ds = TwoViewImageFolder(root, TwoViewTransform("official", 16), seed=0)
    assert len(ds) == 15 and ds.classes == ["class0", "class1", "class2"]
    a, b, label = ds[(3, 0)]
    a2, b2, _ = ds[(3, 0)]
    a3, _, _ = ds[(3, 1)]
    assert torch.equal(a, a2) and not torch.equal(a, a3) and label == 0
    with pytest.raises(UserError, match="--data"):
        TwoViewImageFolder(tmp_path / "missing", TwoViewTransform("official", 16))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        TwoViewImageFolder(empty, TwoViewTransform("official", 16))


def test_flat_folder_of_images_is_accepted(tmp_path):
    for i in range(3):
        _image(i, 20).save(tmp_path / f"{i}.jpg")
    assert len(TwoViewImageFolder(tmp_path, TwoViewTransform("official", 16))) == 3


def test_global_batches_split_contiguously_over_ranks():
    single = GlobalBatchSampler(23, 8, seed=4)
    ranks = [GlobalBatchSampler(23, 8, rank=r, world_size=2, seed=4) for r in range(2)]
    for s in [single, *ranks]:
        s.set_epoch(3)
    assert single.steps_per_epoch == 2  # the incomplete last global batch is dropped
    for global_batch, half0, half1 in zip(single, *ranks):
        assert global_batch == half0 + half1 and len(half0) == 4
        assert all(epoch == 3 for _, epoch in global_batch)
    order = [i for batch in GlobalBatchSampler(23, 8, seed=4) for i, _ in batch]
    assert len(set(order)) == 16
    s = GlobalBatchSampler(23, 8, seed=4)
    s.set_epoch(3, start_step=1)
    assert list(s) == list(single)[1:] and len(s) == 1
    e0, e1 = GlobalBatchSampler(23, 8, seed=4), GlobalBatchSampler(23, 8, seed=4)
    e1.set_epoch(1)
    assert [i for b in e0 for i, _ in b] != [i for b in e1 for i, _ in b]


def test_sampler_errors():
    with pytest.raises(UserError, match="divisible"):
        GlobalBatchSampler(100, 10, rank=0, world_size=4)
    with pytest.raises(UserError, match="larger than the dataset"):
        GlobalBatchSampler(5, 8)


def test_unreadable_image_is_replaced_by_the_next_one_with_a_warning(tmp_path):
    root = _folder(tmp_path, classes=1, per_class=3)
    bad = root / "train" / "class0" / "1.png"
    bad.write_bytes(b"not an image")
    ds = TwoViewImageFolder(root, TwoViewTransform("official", 16))
    with pytest.warns(UserWarning, match="cannot read image"):
        a, _, _ = ds[(1, 0)]
    assert a.shape == (3, 16, 16)
    for p in (root / "train" / "class0").iterdir():
        p.write_bytes(b"broken")
    with pytest.warns(UserWarning), pytest.raises(UserError, match="cannot be read"):
        ds[(0, 0)]

"""Protocol transforms: each pipeline checked against an independent PIL computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vicreg_bench.data import transforms as T


def _image(w: int = 120, h: int = 80, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def _to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(T.IMAGENET_MEAN)[:, None, None]) / torch.tensor(T.IMAGENET_STD)[:, None, None]


def _center_crop(img: Image.Image, size: int) -> Image.Image:
    left = int(round((img.width - size) / 2.0))
    top = int(round((img.height - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def test_eval_transform_is_short_side_resize_then_center_crop():
    img = _image(120, 80)
    # short side 80 -> 64: 120 x 80 becomes 96 x 64 (torchvision truncates the long side)
    expected = _normalize(_to_tensor(_center_crop(img.resize((96, 64), Image.BILINEAR), 56)))
    out = T.eval_transform(size=56, resize=64)(img)
    assert out.shape == (3, 56, 56)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_knn_transform_uses_bicubic():
    img = _image(90, 120, seed=1)
    expected = _normalize(_to_tensor(_center_crop(img.resize((64, 85), Image.BICUBIC), 56)))
    torch.testing.assert_close(T.knn_transform(size=56, resize=64)(img), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(T.build_transform("knn", 56, 64)(img), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(T.eval_transform(56, 64)(img), expected)


def test_svm_squash_ignores_aspect_ratio_and_center_crop_variant_crops():
    img = _image(160, 80, seed=2)
    resized = img.resize((128, 64), Image.BILINEAR)
    squash = _normalize(_to_tensor(resized.resize((56, 56), Image.BILINEAR)))
    torch.testing.assert_close(T.svm_transform("squash", size=56, resize=64)(img), squash, atol=1e-5, rtol=0)
    crop = _normalize(_to_tensor(_center_crop(resized, 56)))
    torch.testing.assert_close(T.svm_transform("center_crop", size=56, resize=64)(img), crop, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="squash"):
        T.svm_transform("bogus")


def test_normalize_false_gives_unit_range_pixels():
    img = _image()
    out = T.eval_transform(size=56, resize=64, normalize=False)(img)
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    torch.testing.assert_close(_normalize(out), T.eval_transform(size=56, resize=64)(img), atol=1e-5, rtol=0)


def test_linear_train_transform_random_crop_and_flip():
    img = _image(100, 70)
    tf = T.linear_train_transform(size=48)
    torch.manual_seed(0)
    a, b = tf(img), tf(img)
    assert a.shape == b.shape == (3, 48, 48)
    assert not torch.equal(a, b)  # random crops differ
    steps = [type(s).__name__ for s in tf.transforms]
    assert steps == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert tf.transforms[0].scale == (0.08, 1.0)


def test_paper_defaults_and_names():
    assert [type(s).__name__ for s in T.eval_transform().transforms] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert T.eval_transform().transforms[0].size == 256 and T.eval_transform().transforms[1].size == (224, 224)
    assert T.svm_transform().transforms[1].size == (224, 224)
    for name in T.TRANSFORM_NAMES:
        out = T.build_transform(name, size=32, resize=36)(_image())
        assert out.shape == (3, 32, 32)
        d = T.describe_transform(name, size=32, resize=36)
        assert d["transform"] == name and d["size"] == 32
    assert T.describe_transform("knn")["interpolation"] == "bicubic"
    assert "mean" not in T.describe_transform("eval", normalize=False)
    with pytest.raises(ValueError):
        T.build_transform("nope")

"""The two-view augmentations, drawing every random number from an explicit per-sample generator.

Recipes:
- "official" (default; facebookresearch/vicreg augmentations.py, the code behind the published numbers):
  both views RandomResizedCrop (torchvision's default scale (0.08, 1.0), ratio (3/4, 4/3), bicubic),
  horizontal flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2; view 1 Gaussian blur
  p 1.0 and no solarization, view 2 blur p 0.1 and solarization p 0.2. Blur sigma ~ U(0.1, 2.0) with
  PIL's GaussianBlur(radius=sigma), solarization at threshold 128 (PIL's default).
- "paper" (paper appendix B.2): the same operations, symmetric, crop scale (0.2, 1.0), blur p 0.5,
  solarization p 0.1.
Then ImageNet mean/std normalisation.

Every random draw comes from the `numpy.random.Generator` passed in; the trainer seeds one per
(seed, epoch, image index), so a sample's views do not depend on which process or loader worker
produces them (that is what makes a 2-process run equal to 1 process, and a resumed run equal to an
uninterrupted one). The random-resized-crop and colour-jitter parameter draws follow torchvision's
algorithms; only the source of randomness differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import InterpolationMode

from vicreg_bench.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
AUGMENTATIONS = ("official", "paper")


@dataclass(frozen=True)
class ViewRecipe:
    size: int = 224
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    gray_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0


def view_recipes(mode: str = "official", size: int = 224, min_scale: float | None = None) -> tuple[ViewRecipe, ViewRecipe]:
    """The two views' recipes for `--augment official|paper` at `--image-size`."""
    if mode == "official":
        scale = (0.08 if min_scale is None else min_scale, 1.0)
        return (
            ViewRecipe(size=size, scale=scale, blur_p=1.0, solarize_p=0.0),
            ViewRecipe(size=size, scale=scale, blur_p=0.1, solarize_p=0.2),
        )
    if mode == "paper":
        scale = (0.2 if min_scale is None else min_scale, 1.0)
        view = ViewRecipe(size=size, scale=scale, blur_p=0.5, solarize_p=0.1)
        return view, view
    raise UserError(f"--augment {mode!r}: expected one of {', '.join(AUGMENTATIONS)}")


def _crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision RandomResizedCrop.get_params: 10 tries at a random area/aspect, else a centre crop."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _color_jitter(img: Image.Image, r: ViewRecipe, rng: np.random.Generator) -> Image.Image:
    """torchvision ColorJitter: factors drawn uniformly, the four adjustments in a random order."""
    b = rng.uniform(max(0.0, 1 - r.brightness), 1 + r.brightness)
    c = rng.uniform(max(0.0, 1 - r.contrast), 1 + r.contrast)
    s = rng.uniform(max(0.0, 1 - r.saturation), 1 + r.saturation)
    h = rng.uniform(-r.hue, r.hue)
    for op in rng.permutation(4):
        if op == 0:
            img = TF.adjust_brightness(img, b)
        elif op == 1:
            img = TF.adjust_contrast(img, c)
        elif op == 2:
            img = TF.adjust_saturation(img, s)
        else:
            img = TF.adjust_hue(img, h)
    return img


def make_view(img: Image.Image, r: ViewRecipe, rng: np.random.Generator) -> torch.Tensor:
    """One augmented, normalised view (3 x size x size float tensor)."""
    top, left, h, w = _crop_box(img.width, img.height, r.scale, r.ratio, rng)
    img = TF.resized_crop(img, top, left, h, w, [r.size, r.size], interpolation=InterpolationMode.BICUBIC, antialias=True)
    if rng.random() < r.flip_p:
        img = TF.hflip(img)
    if rng.random() < r.jitter_p:
        img = _color_jitter(img, r, rng)
    if rng.random() < r.gray_p:
        img = TF.rgb_to_grayscale(img, num_output_channels=3)
    if rng.random() < r.blur_p:
        sigma = rng.uniform(r.blur_sigma[0], r.blur_sigma[1])
        img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
    if rng.random() < r.solarize_p:
        img = ImageOps.solarize(img, threshold=128)
    return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)


class TwoViewTransform:
    """(image, generator) -> (view_a, view_b), as the official TrainTransform but with explicit randomness."""

    def __init__(self, mode: str = "official", size: int = 224, min_scale: float | None = None):
        self.mode = mode
        self.recipe_a, self.recipe_b = view_recipes(mode, size, min_scale)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        img = img.convert("RGB")
        return make_view(img, self.recipe_a, rng), make_view(img, self.recipe_b, rng)

    def __repr__(self) -> str:
        return f"TwoViewTransform(mode={self.mode!r}, a={self.recipe_a}, b={self.recipe_b})"

"""Image transforms of each evaluation protocol (PROTOCOLS.md), in one place so every task uses the same ones.

| name                 | protocol                                   | pipeline (defaults)                               |
|----------------------|--------------------------------------------|---------------------------------------------------|
| `eval`               | linear test (VICReg evaluate.py, VISSL)    | Resize(256) + CenterCrop(224)                     |
| `knn`                | k-NN (DINO eval_knn.py)                    | Resize(256, bicubic) + CenterCrop(224)            |
| `linear_train`       | linear / semi-supervised train             | RandomResizedCrop(224) + RandomHorizontalFlip     |
| `svm_squash`         | VOC07 SVM (VISSL train_svm.py)             | Resize(256) + Resize((224, 224)), no crop         |
| `svm_center_crop`    | VOC07 SVM, the paper's wording             | Resize(256) + CenterCrop(224)                     |

Every pipeline ends with ToTensor and the ImageNet mean/std normalisation, unless `normalize=False`
(converted SimCLR checkpoints expect [0, 1] inputs: `BackboneInfo.normalize_input`).
`size` / `resize` shrink the pipelines for the small synthetic images of the tests and the demo
(e.g. `size=56, resize=64`); the paper's values are the defaults.
"""

from __future__ import annotations

from typing import Callable

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}
SVM_VARIANTS = ("squash", "center_crop")
TRANSFORM_NAMES = ("eval", "knn", "linear_train", "svm_squash", "svm_center_crop")


def _finish(steps: list, normalize: bool) -> T.Compose:
    steps = steps + [T.ToTensor()]
    if normalize:
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(steps)


def _interp(interpolation: str) -> InterpolationMode:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    return INTERPOLATIONS[interpolation]


def eval_transform(
    size: int = 224, resize: int = 256, interpolation: str = "bilinear", normalize: bool = True
) -> T.Compose:
    """Resize the short side to `resize`, center-crop `size` (linear test; k-NN with bicubic)."""
    return _finish([T.Resize(resize, interpolation=_interp(interpolation)), T.CenterCrop(size)], normalize)


def knn_transform(size: int = 224, resize: int = 256, normalize: bool = True) -> T.Compose:
    """DINO's k-NN features: Resize(256, bicubic) + CenterCrop(224)."""
    return eval_transform(size=size, resize=resize, interpolation="bicubic", normalize=normalize)


def linear_train_transform(size: int = 224, normalize: bool = True) -> T.Compose:
    """RandomResizedCrop(size) (scale 0.08-1, bilinear) + horizontal flip, as in VICReg evaluate.py."""
    return _finish([T.RandomResizedCrop(size), T.RandomHorizontalFlip()], normalize)


def svm_transform(variant: str = "squash", size: int = 224, resize: int = 256, normalize: bool = True) -> T.Compose:
    """VOC07 SVM input. "squash": VISSL's Resize(256) then Resize((224, 224)), the aspect ratio is not kept;
    "center_crop": Resize(256) + CenterCrop(224), what the paper's text says (slightly higher mAP)."""
    if variant == "squash":
        steps = [T.Resize(resize), T.Resize((size, size))]
    elif variant == "center_crop":
        steps = [T.Resize(resize), T.CenterCrop(size)]
    else:
        raise ValueError(f"svm variant must be one of {SVM_VARIANTS}, got {variant!r}")
    return _finish(steps, normalize)


def build_transform(name: str, size: int = 224, resize: int = 256, normalize: bool = True) -> Callable:
    """The transform called `name` (one of TRANSFORM_NAMES): what feature caches key their files on."""
    if name == "eval":
        return eval_transform(size, resize, "bilinear", normalize)
    if name == "knn":
        return knn_transform(size, resize, normalize)
    if name == "linear_train":
        return linear_train_transform(size, normalize)
    if name == "svm_squash":
        return svm_transform("squash", size, resize, normalize)
    if name == "svm_center_crop":
        return svm_transform("center_crop", size, resize, normalize)
    raise ValueError(f"unknown transform {name!r}; expected one of {TRANSFORM_NAMES}")


def describe_transform(name: str, size: int = 224, resize: int = 256, normalize: bool = True) -> dict:
    """The settings that change the features, for the results JSON `protocol.params` (and cache keys)."""
    if name not in TRANSFORM_NAMES:
        raise ValueError(f"unknown transform {name!r}; expected one of {TRANSFORM_NAMES}")
    d: dict = {"transform": name, "size": size, "normalize": normalize}
    if name != "linear_train":
        d["resize"] = resize
    d["interpolation"] = "bicubic" if name == "knn" else "bilinear"
    if normalize:
        d["mean"], d["std"] = list(IMAGENET_MEAN), list(IMAGENET_STD)
    return d

"""The named deterministic feature transforms (random training augmentations are never cached).

  eval             Resize(resize) + CenterCrop(size), bilinear: the linear-probe test transform
                   (vicreg evaluate.py), also the fast protocol's training features
  knn              Resize(resize, bicubic) + CenterCrop(size): DINO eval_knn.py
  svm_squash       Resize(resize) then Resize((size, size)), no crop: VISSL's VOC07 SVM
  svm_center_crop  Resize(resize) + CenterCrop(size): the paper's wording for the VOC07 SVM
"""

from __future__ import annotations

from typing import Callable

from vicreg_bench.errors import UserError

TRANSFORM_NAMES = ("eval", "knn", "svm_squash", "svm_center_crop")


def build_transform(name: str, *, size: int = 224, resize: int = 256, normalize: bool = True) -> tuple[Callable, dict]:
    """The named deterministic transform and the parameters that identify it in the cache key."""
    from vicreg_bench.data import transforms as T

    if name == "eval":
        params = {"size": size, "resize": resize, "interpolation": "bilinear"}
        tf = T.eval_transform(size=size, resize=resize, interpolation="bilinear", normalize=normalize)
    elif name == "knn":
        params = {"size": size, "resize": resize, "interpolation": "bicubic"}
        tf = T.eval_transform(size=size, resize=resize, interpolation="bicubic", normalize=normalize)
    elif name in ("svm_squash", "svm_center_crop"):
        variant = name.removeprefix("svm_")
        params = {"size": size, "resize": resize, "variant": variant}
        tf = T.svm_transform(variant=variant, size=size, resize=resize, normalize=normalize)
    else:
        raise UserError(f"--transform: unknown feature transform {name!r}; expected one of {', '.join(TRANSFORM_NAMES)}")
    params = {"name": name, **params, "normalize": bool(normalize)}
    text = repr(tf)
    if " at 0x" not in text:  # a repr naming every parameter makes the key follow any change of the transform
        params["repr"] = text
    return tf, params


def default_resize(image_size: int, resize: int | None) -> int:
    return resize if resize is not None else int(round(image_size * 256 / 224))

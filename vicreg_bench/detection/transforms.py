"""Detection input pipeline with detectron2's semantics: shortest-edge resize, horizontal flip, boxes and masks.

detectron2's DatasetMapper for these protocols: ResizeShortestEdge(MIN_SIZE_TRAIN, MAX_SIZE_TRAIN=1333,
sampling "choice") then RandomFlip(0.5, horizontal); at test time ResizeShortestEdge(MIN_SIZE_TEST=800, 1333).
Output size: scale = short / min(h, w), shrunk further so the long side stays <= max size, then
`int(x + 0.5)`; images resized bilinearly (PIL); boxes scaled per axis, flipped as x -> W - x, clipped to the
image, and boxes with no width or height dropped. Crowd objects are not trained on (COCO); VOC "difficult"
objects are (detectron2 keeps them). VOC boxes are 1-based pixel indices: detectron2 subtracts 1 from
xmin/ymin when loading (`box_offset=1`) and adds it back when writing results.

Synthetic test images are ~64 px, so every size can be multiplied by `scale` (`protocol_sizes`).
Images leave here as uint8 CHW tensors (cheap to pass between processes); the model scales them to [0, 1]
and normalises with the ImageNet mean/std, as detectron2 does with PIXEL_MEAN/STD on 0..255 RGB input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

VOC_MIN_SIZES_TRAIN = tuple(range(480, 801, 32))  # 480, 512, ..., 800 (MoCo / detectron2 VOC configs)
COCO_MIN_SIZES_TRAIN = tuple(range(640, 801, 32))  # 640, ..., 800 (detectron2 Base-RCNN-FPN)
MAX_SIZE = 1333
MIN_SIZE_TEST = 800


@dataclass(frozen=True)
class InputSizes:
    """Shortest-edge sizes sampled in training, the test size, and the long-side cap."""

    min_sizes_train: tuple[int, ...]
    min_size_test: int
    max_size: int

    def as_dict(self) -> dict:
        return {"min_sizes_train": list(self.min_sizes_train), "min_size_test": self.min_size_test, "max_size": self.max_size}


def protocol_sizes(min_sizes_train: Sequence[int], scale: float = 1.0, *, min_size_test: int = MIN_SIZE_TEST, max_size: int = MAX_SIZE) -> InputSizes:
    """The protocol's sizes multiplied by `scale` (1.0 = the paper); duplicates after rounding are dropped."""
    if scale <= 0:
        raise ValueError(f"input scale must be positive, got {scale}")
    train = tuple(dict.fromkeys(max(1, int(round(s * scale))) for s in min_sizes_train))
    return InputSizes(train, max(1, int(round(min_size_test * scale))), max(1, int(round(max_size * scale))))


def resized_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w) of detectron2's ResizeShortestEdge."""
    scale = short / min(h, w)
    new_h, new_w = (short, scale * w) if h < w else (scale * h, short)
    if max(new_h, new_w) > max_size:
        shrink = max_size / max(new_h, new_w)
        new_h, new_w = new_h * shrink, new_w * shrink
    return int(new_h + 0.5), int(new_w + 0.5)


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> uint8 CHW tensor."""
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _rasterize(segmentation: Any, orig_hw: tuple[int, int], new_hw: tuple[int, int], flip: bool) -> np.ndarray:
    """One object's mask at the resized (and flipped) size: polygons are transformed then rasterised
    (as detectron2 transforms polygons), RLE is decoded at the original size and resized (nearest)."""
    from pycocotools import mask as mask_util

    (h, w), (nh, nw) = orig_hw, new_hw
    if isinstance(segmentation, list):
        polys = []
        for p in segmentation:
            xy = np.asarray(p, dtype=np.float64).reshape(-1, 2) * [nw / w, nh / h]
            if flip:
                xy[:, 0] = nw - xy[:, 0]
            polys.append(xy.reshape(-1).tolist())
        rle = mask_util.merge(mask_util.frPyObjects(polys, nh, nw))
        return mask_util.decode(rle).astype(np.uint8)
    rle = mask_util.frPyObjects(segmentation, h, w) if isinstance(segmentation.get("counts"), list) else segmentation
    m = Image.fromarray(mask_util.decode(rle).astype(np.uint8) * 255).resize((nw, nh), Image.NEAREST)
    out = (np.asarray(m) > 127).astype(np.uint8)
    return out[:, ::-1].copy() if flip else out


def train_sample(
    img: Image.Image,
    target: Any,
    rng: np.random.Generator,
    sizes: InputSizes,
    *,
    box_offset: float = 0.0,
    with_masks: bool = False,
    drop_crowd: bool = False,
    flip_prob: float = 0.5,
) -> tuple[torch.Tensor, dict]:
    """A training pair: resized/flipped uint8 image and a torchvision target (labels are class index + 1)."""
    w, h = img.size
    short = int(sizes.min_sizes_train[rng.integers(len(sizes.min_sizes_train))])
    nh, nw = resized_shape(h, w, short, sizes.max_size)
    flip = bool(rng.random() < flip_prob)
    out = img.resize((nw, nh), Image.BILINEAR)
    if flip:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)

    keep = np.ones(len(target.classes), dtype=bool)
    if drop_crowd:
        keep &= ~np.asarray(target.difficult, dtype=bool)
    boxes = np.asarray(target.boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, :2] -= box_offset
    boxes *= [nw / w, nh / h, nw / w, nh / h]
    if flip:
        boxes[:, [0, 2]] = nw - boxes[:, [2, 0]]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, nw)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, nh)
    keep &= (boxes[:, 2] - boxes[:, 0] > 1e-5) & (boxes[:, 3] - boxes[:, 1] > 1e-5)  # detectron2 nonempty()
    idx = np.nonzero(keep)[0]
    out_target = {
        "boxes": torch.as_tensor(boxes[idx], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.as_tensor(np.asarray(target.classes)[idx] + 1, dtype=torch.int64),
    }
    if with_masks:
        masks = [_rasterize(target.masks[k], (h, w), (nh, nw), flip) for k in idx]
        out_target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, nh, nw), dtype=torch.uint8)
    return image_to_tensor(out), out_target


def eval_image(img: Image.Image, sizes: InputSizes) -> tuple[torch.Tensor, tuple[int, int]]:
    """The test-time input (shortest edge = the test size) and the original (h, w) to map predictions back to."""
    w, h = img.size
    nh, nw = resized_shape(h, w, sizes.min_size_test, sizes.max_size)
    return image_to_tensor(img.resize((nw, nh), Image.BILINEAR)), (h, w)

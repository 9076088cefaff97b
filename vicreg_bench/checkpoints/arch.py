"""ResNet architecture inference from tensor shapes, and the strict check against `build_backbone(arch)`.

Checkpoints rarely say which ResNet they hold, and when they do (MoCo's `arch`) it can be wrong after
surgery. The shapes cannot lie: stem width, block type and blocks per stage identify the trunk.
Functions raise ValueError with a readable message; the loader prefixes the file name.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import torch

from vicreg_bench.models import ARCHS, build_backbone

_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in value.shape)


def infer_arch(state_dict: Mapping[str, Any]) -> str:
    """Name in `vicreg_bench.models.ARCHS` of the trunk whose torchvision-named tensors these are."""
    if "conv1.weight" not in state_dict:
        raise ValueError("no stem convolution 'conv1.weight' in the backbone")
    stem = _shape(state_dict["conv1.weight"])
    if len(stem) != 4 or stem[1] != 3:
        raise ValueError(f"'conv1.weight' has shape {stem}; expected (C, 3, 7, 7) of an RGB ResNet stem")
    if stem[2:] != (7, 7):
        raise ValueError(
            f"'conv1.weight' is a {stem[2]}x{stem[3]} stem: a CIFAR-style ResNet, not supported "
            f"(supported: {', '.join(ARCHS)}, all with the ImageNet 7x7 stem)"
        )
    counts = [0, 0, 0, 0]
    for key in state_dict:
        m = _BLOCK_KEY.match(key)
        if m:
            stage, block = int(m[1]) - 1, int(m[2])
            counts[stage] = max(counts[stage], block + 1)
    bottleneck = "layer1.0.conv3.weight" in state_dict
    width = stem[0]
    widen, rest = divmod(width, 64)
    if rest or widen not in (1, 2):
        raise ValueError(f"stem width {width} matches no supported ResNet (64, or 128 for the x2 widening)")
    if "layer1.0.conv2.weight" in state_dict:
        conv2 = _shape(state_dict["layer1.0.conv2.weight"])
        if len(conv2) == 4 and conv2[1] != conv2[0]:
            raise ValueError("grouped 3x3 convolutions (ResNeXt) are not supported")
        if bottleneck and conv2[0] != width:
            raise ValueError(
                f"bottleneck width {conv2[0]} with stem width {width}: a Wide ResNet "
                "(torchvision wide_resnet50_2 widens only the bottlenecks), not supported; "
                "resnet50x2 doubles every width"
            )
    same_kind = {n: s for n, s in ARCHS.items() if s.widen == widen and (s.block.expansion == 4) == bottleneck}
    for name, spec in same_kind.items():
        if list(spec.layers) == counts:
            return name
    # Whole blocks missing: name the smallest trunk that has them all, so the check can list what is absent.
    covering = [n for n, s in same_kind.items() if all(c <= l for c, l in zip(counts, s.layers))]
    if covering and all(counts):
        return min(covering, key=lambda n: sum(ARCHS[n].layers))
    kind = "bottleneck" if bottleneck else "basic"
    raise ValueError(
        f"a ResNet with {kind} blocks {tuple(counts)} per stage and stem width {width} is not one of "
        f"the supported architectures ({', '.join(ARCHS)})"
    )


@functools.lru_cache(maxsize=None)
def expected_shapes(arch: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of `build_backbone(arch).state_dict()`, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_backbone(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def is_parameter_name(name: str) -> bool:
    """Learned parameters, as opposed to BatchNorm statistics."""
    return not name.endswith(_STAT_SUFFIXES)


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def complete_and_check(state_dict: dict[str, torch.Tensor], arch: str) -> list[str]:
    """Check the backbone against `build_backbone(arch)`; add zero `num_batches_tracked` where absent (ResNets).

    Returns notes; raises ValueError naming missing keys, unexpected keys and wrong shapes.
    """
    expected = expected_shapes(arch)
    notes: list[str] = []
    absent_counters = [k for k in expected if k.endswith("num_batches_tracked") and k not in state_dict]
    for k in absent_counters:
        state_dict[k] = torch.tensor(0, dtype=torch.long)
    if absent_counters:
        notes.append(f"added {len(absent_counters)} BatchNorm num_batches_tracked counters (absent from the file; unused in eval)")
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} backbone keys of {arch}: {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} keys that {arch} does not have: {_listing(unexpected)}")
    if wrong:
        problems.append(f"{len(wrong)} tensors with the wrong shape for {arch}: {_listing(wrong, 4)}")
    if problems:
        raise ValueError("; ".join(problems))
    return notes

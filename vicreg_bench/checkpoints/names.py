"""Parameter-name mappings between torchvision ResNet names and the other namings releases use.

Every mapping is an exact bijection on ResNet trunk names, so conversions round-trip bit for bit:

- detectron2 (PROTOCOLS.md): `conv1`/`bn1` -> `stem.conv1`/`stem.conv1.norm`; `layerN` -> `res{N+1}`;
  `bnK` -> `convK.norm`; `downsample.0` -> `shortcut`; `downsample.1` -> `shortcut.norm`.
- VISSL trunks: `_feature_blocks.<torchvision name>`.
- lightly's `nn.Sequential(*list(resnet.children())[:-1])` backbones: child index -> module name.
"""

from __future__ import annotations

import re

VISSL_PREFIX = "_feature_blocks."

_TRUNK_TOP = re.compile(r"^(conv1|bn1|layer\d+)\.")
_TV_STEM = re.compile(r"^(conv1|bn1)\.(\w+)$")
_TV_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.(conv\d+|bn\d+|downsample\.[01])\.(\w+)$")
_D2_STEM = re.compile(r"^stem\.conv1\.(?:(norm)\.)?(\w+)$")
_D2_BLOCK = re.compile(r"^res(\d+)\.(\d+)\.(conv\d+|shortcut)\.(?:(norm)\.)?(\w+)$")
_SEQ = re.compile(r"^(\d+)\.(.+)$")
# torchvision ResNet children order: conv1, bn1, relu, maxpool, layer1..layer4, avgpool, fc
_SEQ_CHILDREN = {0: "conv1", 1: "bn1", 4: "layer1", 5: "layer2", 6: "layer3", 7: "layer4"}


def is_trunk_name(name: str) -> bool:
    """True for names in the torchvision trunk namespace (`conv1`, `bn1`, `layerN.*`); `fc` is not."""
    return _TRUNK_TOP.match(name) is not None


def torchvision_to_detectron2_name(name: str) -> str | None:
    """detectron2 name of a torchvision trunk name, or None for names outside the trunk (e.g. `fc.*`)."""
    m = _TV_STEM.match(name)
    if m:
        return f"stem.conv1.{m[2]}" if m[1] == "conv1" else f"stem.conv1.norm.{m[2]}"
    m = _TV_BLOCK.match(name)
    if not m:
        return None
    stage, block, module, leaf = int(m[1]), m[2], m[3], m[4]
    if module.startswith("bn"):
        module = f"conv{module[2:]}.norm"
    elif module == "downsample.0":
        module = "shortcut"
    elif module == "downsample.1":
        module = "shortcut.norm"
    return f"res{stage + 1}.{block}.{module}.{leaf}"


def detectron2_to_torchvision_name(name: str) -> str | None:
    """torchvision name of a detectron2 ResNet name, or None for names outside the trunk."""
    m = _D2_STEM.match(name)
    if m:
        return f"bn1.{m[2]}" if m[1] else f"conv1.{m[2]}"
    m = _D2_BLOCK.match(name)
    if not m:
        return None
    stage, block, module, norm, leaf = int(m[1]), m[2], m[3], m[4], m[5]
    if stage < 2:
        return None
    if module == "shortcut":
        module = "downsample.1" if norm else "downsample.0"
    elif norm:
        module = f"bn{module[4:]}"
    return f"layer{stage - 1}.{block}.{module}.{leaf}"


def sequential_to_torchvision_name(name: str) -> str | None:
    """torchvision name of a key of `nn.Sequential(*list(resnet.children())[:-1])` (lightly's backbones)."""
    m = _SEQ.match(name)
    if not m or int(m[1]) not in _SEQ_CHILDREN:
        return None
    return f"{_SEQ_CHILDREN[int(m[1])]}.{m[2]}"


def identity_name(name: str) -> str | None:
    return name if is_trunk_name(name) else None


NAMINGS = {
    "torchvision": identity_name,
    "detectron2": detectron2_to_torchvision_name,
    "sequential": sequential_to_torchvision_name,
}

# key that must exist (under a prefix) for a trunk with that naming to be there: (stem, first block)
TRUNK_SIGNATURES = {
    "torchvision": ("conv1.weight", "layer1.0.conv1.weight"),
    "detectron2": ("stem.conv1.weight", "res2.0.conv1.weight"),
    "sequential": ("0.weight", "4.0.conv1.weight"),
}

"""Checkpoints: load any released SSL ResNet checkpoint safely, inspect it, convert it.

`load_backbone(path, method=None, key=None) -> (state_dict, BackboneInfo)` is the entry point used
across vicreg-bench; `convert` writes torchvision, VISSL and detectron2 files.
"""

from vicreg_bench.checkpoints.info import CONTAINERS, FORMATS, METHODS, BackboneInfo
from vicreg_bench.checkpoints.load import load_backbone

__all__ = ["load_backbone", "BackboneInfo", "METHODS", "FORMATS", "CONTAINERS"]

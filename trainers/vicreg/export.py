"""Export a trained VICReg model in the forms the official repository released.

- `<arch>.pth` (e.g. `resnet50.pth`): the backbone state dict alone, flat, torchvision key names, no
  `fc` - the form of the official `resnet50.pth`; loads strictly into torchvision's ResNet minus fc and
  into `vicreg_bench.models.build_resnet(arch)`. Its `_metadata` table (invisible to `load_state_dict`)
  says VICReg trained it, so `load_backbone` reports method `vicreg` without `--method`.
- `model_official.pth`: `{epoch, model, optimizer}` with `module.backbone.*` / `module.projector.*` keys,
  the official full checkpoint (the trainer's `model.pth` is this plus resume state).
Both are recognised by `vicreg_bench.checkpoints.load_backbone` as method `vicreg`.

Command line (any trainer checkpoint, also mid-training):
    python -m trainers.vicreg.export EXP/model.pth [-o OUT.pth] [--official OUT.pth] [--force]
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn

from vicreg_bench import __version__
from vicreg_bench.checkpoints.formats import EXPORT_KEY, EXPORT_VERSION
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_torch_save

from .checkpoint import MODEL_PREFIX, load_checkpoint, unwrap

BACKBONE_PREFIX = MODEL_PREFIX + "backbone."


def tag_as_vicreg(state: dict[str, torch.Tensor], source: str = "vicreg-train") -> "OrderedDict[str, torch.Tensor]":
    """A flat state dict (same keys and tensors) whose `_metadata` table records that VICReg trained it.

    `_metadata` is the per-module version table every `state_dict()` carries and `load_state_dict`
    ignores for unknown entries; `vicreg_bench.checkpoints.load_backbone` reads the entry and reports
    method `vicreg` instead of `torchvision` for this otherwise plain backbone file.
    """
    out: OrderedDict[str, torch.Tensor] = OrderedDict(state)
    metadata = dict(getattr(state, "_metadata", None) or {})
    metadata[EXPORT_KEY] = {"version": EXPORT_VERSION, "method": "vicreg", "tool_version": __version__,
                            "source_format": source, "normalize_input": True}
    out._metadata = metadata  # type: ignore[attr-defined]
    return out


def backbone_state_dict(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """Backbone weights with torchvision names (no `fc`: the trunk's fc is an Identity), tagged as VICReg."""
    state = unwrap(model).backbone.state_dict()
    return tag_as_vicreg(OrderedDict((k, v.detach().cpu().clone()) for k, v in state.items() if not k.startswith("fc.")))


def backbone_from_official_state(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {k[len(BACKBONE_PREFIX):]: v for k, v in model_state.items() if k.startswith(BACKBONE_PREFIX)}
    if not out:
        raise UserError("checkpoint: no 'module.backbone.*' keys in its 'model' entry (expected a vicreg-train or official VICReg model.pth)")
    return tag_as_vicreg(OrderedDict((k, v) for k, v in out.items() if not k.startswith("fc.")), "vicreg model.pth")


def save_backbone(state: dict[str, torch.Tensor], out: str | Path, *, force: bool = True) -> Path:
    out = Path(out)
    try:
        atomic_torch_save(state, out, force=force)
    except FileExistsError:
        raise UserError(f"{out}: already exists (pass --force to replace it)") from None
    return out


def write_initial_backbone(arch: str, mlp: str, seed: int, out: str | Path) -> Path:
    """The backbone a run with this arch, projector and seed starts from (torch seeded, then `VICReg(arch,
    mlp)` built as the trainer builds it), written as a plain torchvision file: a random-init baseline."""
    from vicreg_bench.checkpoints.convert import save_torchvision

    from .model import VICReg

    torch.manual_seed(seed)
    model = VICReg(arch, mlp)
    state = dict(backbone_state_dict(model))  # a plain dict: no VICReg tag, the weights are untrained
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_torchvision(state, out, force=True,
                     metadata={"source": f"random initialisation of vicreg-train --arch {arch} --seed {seed}"})
    return out


def official_checkpoint(ckpt: dict) -> dict:
    """Strip a trainer checkpoint to the official `{epoch, model, optimizer}` form."""
    return {"epoch": ckpt["epoch"], "model": ckpt["model"], "optimizer": ckpt["optimizer"]}


def export_checkpoint(ckpt_path: str | Path, out: str | Path | None = None, official_out: str | Path | None = None, *, force: bool = False) -> dict[str, Path]:
    """Write `<arch>.pth` (default beside the checkpoint) and optionally the official full checkpoint."""
    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise UserError(f"{ckpt_path}: no such checkpoint file")
    try:
        ckpt = load_checkpoint(ckpt_path)
    except Exception as exc:  # a corrupt or foreign file: one line, no traceback
        raise UserError(f"{ckpt_path}: cannot read as a torch checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{ckpt_path}: expected a dict with a 'model' entry (a vicreg-train or official VICReg model.pth)")
    arch = str(ckpt.get("args", {}).get("arch", "resnet50"))
    written = {"backbone": save_backbone(backbone_from_official_state(ckpt["model"]), out or ckpt_path.with_name(f"{arch}.pth"), force=force)}
    if official_out is not None:
        try:
            atomic_torch_save(official_checkpoint(ckpt), official_out, force=force)
        except FileExistsError:
            raise UserError(f"{official_out}: already exists (pass --force to replace it)") from None
        written["official"] = Path(official_out)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainers.vicreg.export",
        description="Export the backbone of a vicreg-train checkpoint as a torchvision-style <arch>.pth "
        "(flat state dict, no fc), optionally also the official {epoch, model, optimizer} checkpoint.",
    )
    parser.add_argument("checkpoint", help="a vicreg-train model.pth (or an official VICReg model.pth)")
    parser.add_argument("-o", "--out", help="backbone file to write (default: <arch>.pth beside the checkpoint)")
    parser.add_argument("--official", metavar="OUT", help="also write the official {epoch, model, optimizer} checkpoint here")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    args = parser.parse_args(argv)
    try:
        written = export_checkpoint(args.checkpoint, args.out, args.official, force=args.force)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

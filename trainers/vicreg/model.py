"""VICReg network: a torchvision-named ResNet trunk, the expander ("projector") and an optional predictor.

Projector from an `--mlp` spec such as "8192-8192-8192" (paper B.1, official code): every hidden block
is Linear(bias) -> BatchNorm1d -> ReLU and the last Linear has no bias, so with the default spec the
parameter names are `projector.{0,1,3,4,6}` exactly as in the official `model.pth`.

Ablations (paper Tables 3, 4b, 6): `proj_bn=False` drops the hidden batch norms; `standardize=True`
appends a BatchNorm1d without affine parameters to the projector (the "batch normalization at the end of
the projector, which plays the role of standardization"); `predictor_spec` adds a predictor built like
the projector (paper sec. 5: "similar architecture as the projector, but with 2 layers").
"""

from __future__ import annotations

import torch
import torch.nn as nn

from vicreg_bench.errors import UserError
from vicreg_bench.models import ARCHS, build_resnet, feature_dim


def parse_mlp_spec(spec: str, flag: str = "--mlp") -> list[int]:
    """'8192-8192-8192' -> [8192, 8192, 8192]; a UserError naming the flag otherwise."""
    try:
        dims = [int(part) for part in str(spec).strip().split("-")]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise UserError(f"{flag} {spec!r}: expected positive layer widths joined by '-', e.g. 8192-8192-8192")
    return dims


def build_mlp(in_dim: int, dims: list[int], *, batch_norm: bool = True, standardize: bool = False) -> nn.Sequential:
    """Linear(+BN)+ReLU for every hidden width, then a Linear without bias (and optional standardisation)."""
    widths = [in_dim] + list(dims)
    layers: list[nn.Module] = []
    for i in range(len(widths) - 2):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if batch_norm:
            layers.append(nn.BatchNorm1d(widths[i + 1]))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(widths[-2], widths[-1], bias=False))
    if standardize:
        layers.append(nn.BatchNorm1d(widths[-1], affine=False))
    return nn.Sequential(*layers)


class VICReg(nn.Module):
    """Backbone + projector (+ predictor). `forward(x_a, x_b)` returns both views' representations
    `y_*`, projections `z_*` and, with a predictor, predictions `p_*`."""

    def __init__(
        self,
        arch: str = "resnet50",
        mlp: str = "8192-8192-8192",
        *,
        proj_bn: bool = True,
        standardize: bool = False,
        predictor: str | None = None,
        zero_init_residual: bool = True,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise UserError(f"--arch {arch!r}: expected one of {', '.join(ARCHS)}")
        self.arch = arch
        # The official trunk zero-initialises the last BN of every residual branch.
        self.backbone = build_resnet(arch, zero_init_residual=zero_init_residual)
        self.embedding_dim = feature_dim(arch)
        dims = parse_mlp_spec(mlp, "--mlp")
        self.num_features = dims[-1]
        self.projector = build_mlp(self.embedding_dim, dims, batch_norm=proj_bn, standardize=standardize)
        self.predictor: nn.Module | None = None
        if predictor:
            pdims = parse_mlp_spec(predictor, "--predictor")
            if pdims[-1] != self.num_features:
                raise UserError(
                    f"--predictor {predictor!r}: its last width must equal the projection width {self.num_features} "
                    f"(the prediction is compared with the other view's projection)"
                )
            self.predictor = build_mlp(self.num_features, pdims, batch_norm=proj_bn)

    def forward(self, x_a: torch.Tensor, x_b: torch.Tensor) -> dict[str, torch.Tensor]:
        # Each view goes through the trunk separately, as in the official code, so batch-norm
        # statistics are per view.
        y_a = self.backbone(x_a)
        y_b = self.backbone(x_b)
        out = {"y_a": y_a, "y_b": y_b, "z_a": self.projector(y_a), "z_b": self.projector(y_b)}
        if self.predictor is not None:
            out["p_a"] = self.predictor(out["z_a"])
            out["p_b"] = self.predictor(out["z_b"])
        return out

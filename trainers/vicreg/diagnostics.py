"""The paper's training diagnostics (appendix C.3), measured on training batches.

- Fig. 4: the standard deviation of each dimension along the batch, averaged over dimensions, of the
  representations y and the projections z. Measured on l2-normalised vectors, where a spread-out
  embedding reaches 1/sqrt(d) (the reference line of Fig. 4), and also raw.
- Fig. 5 / Eq. 10: the average correlation coefficient
      1 / (2 d (d - 1)) * sum_{i != j} C(Y)_ij^2 + C(Y')_ij^2
  with Y, Y' the standardised representations of the two views and C the covariance of Eq. 3 (so C is
  their correlation matrix). Computed for representations (the paper's figure) and projections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distributed import all_reduce_mean
from .loss import off_diagonal_square_sum


@torch.no_grad()
def mean_std(x: torch.Tensor, normalize: bool = True) -> float:
    """Mean over dimensions of the per-dimension standard deviation along the batch (unbiased)."""
    x = x.float()
    if normalize:
        x = F.normalize(x, dim=1)
    return float(x.std(dim=0).mean())


@torch.no_grad()
def _correlation_offdiag_sq(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    x = x.float()
    n = x.shape[0]
    x = x - x.mean(dim=0)
    x = x / torch.sqrt(x.pow(2).sum(dim=0) / (n - 1) + eps)
    corr = (x.T @ x) / (n - 1)
    return off_diagonal_square_sum(corr)


@torch.no_grad()
def average_correlation(y_a: torch.Tensor, y_b: torch.Tensor) -> float:
    """Eq. 10 of the paper for two N x d batches (constant dimensions count as uncorrelated)."""
    d = y_a.shape[1]
    if d < 2 or y_a.shape[0] < 2:
        return float("nan")
    total = _correlation_offdiag_sq(y_a) + _correlation_offdiag_sq(y_b)
    return float(total / (2 * d * (d - 1)))


DIAGNOSTIC_KEYS = ("std_repr", "std_proj", "std_repr_raw", "std_proj_raw", "corr_repr", "corr_proj")


@torch.no_grad()
def batch_diagnostics(outputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Diagnostics of one batch of model outputs (`y_a`, `y_b`, `z_a`, `z_b`)."""
    y = torch.cat([outputs["y_a"], outputs["y_b"]])
    z = torch.cat([outputs["z_a"], outputs["z_b"]])
    return {
        "std_repr": mean_std(y, True),
        "std_proj": mean_std(z, True),
        "std_repr_raw": mean_std(y, False),
        "std_proj_raw": mean_std(z, False),
        "corr_repr": average_correlation(outputs["y_a"], outputs["y_b"]),
        "corr_proj": average_correlation(outputs["z_a"], outputs["z_b"]),
    }


class DiagnosticsMeter:
    """Averages batch diagnostics over the sampled steps of an epoch, then over processes."""

    def __init__(self) -> None:
        self.sums = {k: 0.0 for k in DIAGNOSTIC_KEYS}
        self.count = 0

    def update(self, outputs: dict[str, torch.Tensor]) -> None:
        for k, v in batch_diagnostics(outputs).items():
            self.sums[k] += v
        self.count += 1

    def result(self, device: torch.device) -> dict[str, float]:
        values = torch.tensor([self.sums[k] for k in DIAGNOSTIC_KEYS] + [float(self.count)], dtype=torch.float64, device=device)
        values = all_reduce_mean(values)
        count = float(values[-1])
        if count == 0:
            return {}
        return {k: float(v) / count for k, v in zip(DIAGNOSTIC_KEYS, values[:-1].tolist())}

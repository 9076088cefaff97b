"""The VICReg loss, term for term as facebookresearch/vicreg `main_vicreg.py` computes it.

Order of operations of the reference (which produced the published numbers):
1. invariance = mean squared error between the two views' projections, on this rank's batch only;
2. both views are gathered from every rank (gradient-correct, see `distributed.gather_with_grad`)
   and centred;
3. variance = mean over dimensions of relu(gamma - sqrt(var + 1e-4)), *halved per view* and summed
   (`variance_form="official"`); the paper's Eq. 6 / Algorithm 1 sum the two views without the 1/2
   (`variance_form="paper"`, i.e. twice the official variance term);
4. covariance = sum of squared off-diagonal entries of Z^T Z / (N - 1), divided by D, summed over
   views, where N is the global (gathered) batch size.
The returned terms are unweighted; `loss` is the weighted sum.

Ablations of the paper's Table 3 / 4b are keyword options: a predictor (Eq. 8: invariance between each
view's projection and the prediction from the other view, variance/covariance on projections only) and
l2-normalised projections with the cosine invariance of Eq. 9 and gamma = 1/sqrt(D).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .distributed import gather_with_grad

VARIANCE_FORMS = ("official", "paper")


def off_diagonal_square_sum(m: torch.Tensor) -> torch.Tensor:
    """Sum of the squared off-diagonal entries of a square matrix (diagonal zeroed in a copy, not
    subtracted, which would lose float32 precision when the diagonal dominates)."""
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square matrix, got shape {tuple(m.shape)}")
    off = m.clone()
    off.diagonal().zero_()
    return off.pow(2).sum()


def _std_hinge(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def _invariance(a: torch.Tensor, b: torch.Tensor, cosine: bool) -> torch.Tensor:
    if cosine:  # Eq. 9: negative cosine similarity, averaged over the batch
        return -(F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(dim=1).mean()
    return F.mse_loss(a, b)


def vicreg_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    sim_coeff: float = 25.0,
    std_coeff: float = 25.0,
    cov_coeff: float = 1.0,
    *,
    variance_form: str = "official",
    p_a: torch.Tensor | None = None,
    p_b: torch.Tensor | None = None,
    l2_normalize: bool = False,
    std_target: float | None = None,
    eps: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """VICReg loss of two batches of projections (N x D each, this rank's rows).

    Returns 0-d tensors `loss`, `invariance`, `variance`, `covariance` (the three terms unweighted).
    With several processes the variance and covariance use the gathered global batch, as the official
    code does. `p_a`, `p_b` are predictor outputs (optional); `l2_normalize` projects z (and p) on the unit
    sphere, uses the cosine invariance and gamma = 1/sqrt(D) unless `std_target` is given.
    """
    if variance_form not in VARIANCE_FORMS:
        raise ValueError(f"variance_form must be one of {VARIANCE_FORMS}, got {variance_form!r}")
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"z_a and z_b must both be N x D, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if (p_a is None) != (p_b is None):
        raise ValueError("pass both p_a and p_b, or neither")
    # The loss runs in float32 even under autocast: the covariance sums N products per entry.
    z_a, z_b = z_a.float(), z_b.float()
    dim = z_a.shape[1]
    if l2_normalize:
        z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    gamma = std_target if std_target is not None else (1.0 / math.sqrt(dim) if l2_normalize else 1.0)

    if p_a is None:
        invariance = _invariance(z_a, z_b, l2_normalize)
    else:  # Eq. 8, symmetrised: each projection against the prediction from the other view
        p_a, p_b = p_a.float(), p_b.float()
        invariance = 0.5 * (_invariance(z_a, p_b, l2_normalize) + _invariance(z_b, p_a, l2_normalize))

    x = gather_with_grad(z_a)
    y = gather_with_grad(z_b)
    n = x.shape[0]
    if n < 2:
        raise ValueError("the VICReg variance and covariance need a global batch of at least 2")
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)

    view_weight = 0.5 if variance_form == "official" else 1.0
    variance = view_weight * _std_hinge(x, gamma, eps) + view_weight * _std_hinge(y, gamma, eps)

    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    covariance = off_diagonal_square_sum(cov_x) / dim + off_diagonal_square_sum(cov_y) / dim

    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}

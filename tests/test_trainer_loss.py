"""VICReg loss: hand-computed cases and an independent float64 reference (values and gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainers.vicreg import vicreg_loss
from trainers.vicreg.loss import off_diagonal_square_sum


def reference_terms(za: np.ndarray, zb: np.ndarray, halve_variance: bool = True) -> dict[str, float]:
    """The official terms written out with explicit sums over entries (float64, numpy)."""
    n, d = za.shape
    inv = sum((za[i, j] - zb[i, j]) ** 2 for i in range(n) for j in range(d)) / (n * d)
    var_total = 0.0
    cov_total = 0.0
    for z in (za, zb):
        c = z - z.mean(axis=0, keepdims=True)
        hinge = 0.0
        for j in range(d):
            var_j = sum(c[i, j] ** 2 for i in range(n)) / (n - 1)
            hinge += max(0.0, 1.0 - math.sqrt(var_j + 1e-4))
        var_total += hinge / d / (2.0 if halve_variance else 1.0)
        cov = c.T @ c / (n - 1)
        cov_total += sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    loss = 25.0 * inv + 25.0 * var_total + 1.0 * cov_total
    return {"loss": loss, "invariance": inv, "variance": var_total, "covariance": cov_total}


def reference_loss_torch(za: torch.Tensor, zb: torch.Tensor, sim=25.0, std=25.0, cov=1.0) -> torch.Tensor:
    """Differentiable float64 reference with a mask for the off-diagonal (not the module's code path)."""
    n, d = za.shape
    inv = ((za - zb) ** 2).sum() / (n * d)
    mask = 1.0 - torch.eye(d, dtype=za.dtype)
    total_var = 0.0
    total_cov = 0.0
    for z in (za, zb):
        c = z - z.sum(0, keepdim=True) / n
        var = (c * c).sum(0) / (n - 1)
        total_var = total_var + torch.clamp(1.0 - torch.sqrt(var + 1e-4), min=0).sum() / d * 0.5
        cm = torch.einsum("ni,nj->ij", c, c) / (n - 1)
        total_cov = total_cov + ((cm * mask) ** 2).sum() / d
    return sim * inv + std * total_var + cov * total_cov


def test_hand_computed_two_by_two():
    # z_a centred is [[-.1,-.1],[.1,.1]], z_b centred [[-.1,.1],[.1,-.1]]: per-dimension variance 0.02,
    # std sqrt(0.0201); off-diagonal covariance +-0.02 -> (2 * 0.0004) / 2 = 0.0004 per view.
    za = torch.tensor([[0.1, 0.2], [0.3, 0.4]])
    zb = torch.tensor([[0.1, 0.2], [0.3, 0.0]])
    out = vicreg_loss(za, zb)
    hinge = 1 - math.sqrt(0.0201)
    assert out["invariance"].item() == pytest.approx(0.16 / 4, rel=1e-6)
    assert out["variance"].item() == pytest.approx(hinge / 2 + hinge / 2, rel=1e-6)
    assert out["covariance"].item() == pytest.approx(0.0004 + 0.0004, rel=1e-5)
    assert out["loss"].item() == pytest.approx(25 * 0.04 + 25 * hinge + 0.0008, rel=1e-6)
    paper = vicreg_loss(za, zb, variance_form="paper")
    assert paper["variance"].item() == pytest.approx(2 * hinge, rel=1e-6)
    assert all(v.dim() == 0 for v in out.values())
    assert set(out) == {"loss", "invariance", "variance", "covariance"}


def test_hand_computed_invariance_gradient():
    za = torch.tensor([[0.1, 0.2], [0.3, 0.4]], requires_grad=True)
    zb = torch.tensor([[0.1, 0.2], [0.3, 0.0]])
    vicreg_loss(za, zb, sim_coeff=1.0, std_coeff=0.0, cov_coeff=0.0)["loss"].backward()
    # d/dz_a mean((z_a - z_b)^2) = 2 (z_a - z_b) / (N D)
    expected = torch.tensor([[0.0, 0.0], [0.0, 2 * 0.4 / 4]])
    torch.testing.assert_close(za.grad, expected, rtol=1e-6, atol=1e-8)


def test_variance_hinge_inactive_for_spread_out_projections():
    za = torch.tensor([[0.0, 0.0], [4.0, -4.0]])
    out = vicreg_loss(za, za.clone())
    assert out["variance"].item() == 0.0 and out["invariance"].item() == 0.0


@pytest.mark.parametrize("n,d", [(8, 16), (33, 7), (64, 128)])
def test_matches_explicit_reference_values(n, d):
    g = torch.Generator().manual_seed(n * 1000 + d)
    za = torch.randn(n, d, generator=g) * 0.7
    zb = za + 0.3 * torch.randn(n, d, generator=g)
    ref = reference_terms(za.double().numpy(), zb.double().numpy())
    out = vicreg_loss(za, zb)
    for key, value in ref.items():
        assert out[key].item() == pytest.approx(value, rel=1e-5), key
    ref_paper = reference_terms(za.double().numpy(), zb.double().numpy(), halve_variance=False)
    assert vicreg_loss(za, zb, variance_form="paper")["variance"].item() == pytest.approx(ref_paper["variance"], rel=1e-5)


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 0.0, 0.0), (0.0, 25.0, 1.0), (1.0, 1.0, 0.0)])
def test_gradients_match_float64_reference(coeffs):
    g = torch.Generator().manual_seed(7)
    za64 = (torch.randn(32, 24, generator=g) * 0.5).double()
    zb64 = (za64 + 0.2 * torch.randn(32, 24, generator=g).double())
    za_ref, zb_ref = za64.clone().requires_grad_(), zb64.clone().requires_grad_()
    reference_loss_torch(za_ref, zb_ref, *coeffs).backward()
    za, zb = za64.float().requires_grad_(), zb64.float().requires_grad_()
    out = vicreg_loss(za, zb, *coeffs)
    out["loss"].backward()
    assert out["loss"].item() == pytest.approx(reference_loss_torch(za64, zb64, *coeffs).item(), rel=1e-5)
    for ours, ref in ((za.grad, za_ref.grad), (zb.grad, zb_ref.grad)):
        scale = ref.abs().max().item()
        torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-5 * scale)


def test_covariance_uses_batch_minus_one_and_dimension():
    # Two perfectly correlated dimensions: C = [[v, v], [v, v]] with v the unbiased variance.
    za = torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    v = float(torch.var(za[:, 0]))
    out = vicreg_loss(za, za.clone(), sim_coeff=0, std_coeff=0, cov_coeff=1)
    assert out["covariance"].item() == pytest.approx(2 * (2 * v * v) / 2, rel=1e-6)


def test_l2_normalized_variant_uses_cosine_and_inverse_sqrt_d_target():
    g = torch.Generator().manual_seed(3)
    za = torch.randn(16, 9, generator=g)
    zb = torch.randn(16, 9, generator=g)
    out = vicreg_loss(za, zb, l2_normalize=True)
    na, nb = torch.nn.functional.normalize(za, dim=1), torch.nn.functional.normalize(zb, dim=1)
    assert out["invariance"].item() == pytest.approx(-(na * nb).sum(1).mean().item(), rel=1e-6)
    gamma = 1 / 3.0
    expected_var = sum(0.5 * torch.relu(gamma - torch.sqrt(n.var(0) + 1e-4)).mean().item() for n in (na, nb))
    assert out["variance"].item() == pytest.approx(expected_var, rel=1e-5)
    # scaling the projections changes nothing once they are normalised
    scaled = vicreg_loss(3 * za, 5 * zb, l2_normalize=True)
    assert scaled["loss"].item() == pytest.approx(out["loss"].item(), rel=1e-5)


def test_predictor_invariance_is_symmetrised_eq8():
    g = torch.Generator().manual_seed(5)
    za, zb, pa, pb = (torch.randn(12, 6, generator=g) for _ in range(4))
    out = vicreg_loss(za, zb, p_a=pa, p_b=pb)
    mse = torch.nn.functional.mse_loss
    assert out["invariance"].item() == pytest.approx(0.5 * (mse(za, pb) + mse(zb, pa)).item(), rel=1e-6)
    plain = vicreg_loss(za, zb)  # variance and covariance stay on the projections
    assert out["variance"].item() == pytest.approx(plain["variance"].item(), rel=1e-6)
    assert out["covariance"].item() == pytest.approx(plain["covariance"].item(), rel=1e-6)


def test_coefficients_weight_the_terms():
    g = torch.Generator().manual_seed(11)
    za, zb = torch.randn(10, 5, generator=g), torch.randn(10, 5, generator=g)
    t = vicreg_loss(za, zb)
    out = vicreg_loss(za, zb, sim_coeff=2.0, std_coeff=3.0, cov_coeff=4.0)
    expected = 2 * t["invariance"] + 3 * t["variance"] + 4 * t["covariance"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_off_diagonal_square_sum_and_errors():
    m = torch.arange(9.0).view(3, 3)
    assert off_diagonal_square_sum(m).item() == sum(m[i, j].item() ** 2 for i in range(3) for j in range(3) if i != j)
    with pytest.raises(ValueError):
        off_diagonal_square_sum(torch.zeros(2, 3))
    with pytest.raises(ValueError):
        vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError):
        vicreg_loss(torch.zeros(4, 3), torch.zeros(4, 3), variance_form="other")


def test_loss_runs_in_float32_under_half_inputs():
    g = torch.Generator().manual_seed(2)
    za, zb = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    out_half = vicreg_loss(za.bfloat16(), zb.bfloat16())
    assert out_half["loss"].dtype == torch.float32
    ref = vicreg_loss(za.bfloat16().float(), zb.bfloat16().float())
    assert out_half["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-6)

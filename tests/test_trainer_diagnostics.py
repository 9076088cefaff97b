"""Fig. 4 standard deviation and Eq. 10 average correlation coefficient, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.vicreg.diagnostics import DiagnosticsMeter, average_correlation, batch_diagnostics, mean_std


def numpy_eq10(ya: np.ndarray, yb: np.ndarray) -> float:
    d = ya.shape[1]
    total = 0.0
    for y in (ya, yb):
        c = np.corrcoef(y, rowvar=False)
        total += (c**2).sum() - (np.diag(c) ** 2).sum()
    return total / (2 * d * (d - 1))


def test_average_correlation_matches_numpy_corrcoef():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(64, 1))
    ya = base + 0.5 * rng.normal(size=(64, 10))  # correlated dimensions
    yb = rng.normal(size=(64, 10))
    ours = average_correlation(torch.tensor(ya, dtype=torch.float32), torch.tensor(yb, dtype=torch.float32))
    assert ours == pytest.approx(numpy_eq10(ya, yb), rel=1e-4)


def test_average_correlation_extremes():
    x = torch.arange(12.0).view(12, 1).repeat(1, 4)  # all dimensions identical: |corr| = 1
    assert average_correlation(x, x) == pytest.approx(1.0, rel=1e-5)
    eye = torch.eye(8) - 1 / 8  # centred one-hot codes: weakly, evenly correlated
    assert average_correlation(eye, eye) < 0.1


def test_mean_std_normalised_and_raw():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 16, generator=g) * 3
    assert mean_std(x, normalize=False) == pytest.approx(3.0, rel=0.05)
    # isotropic Gaussian on the unit sphere: per-dimension std 1/sqrt(d) (the Fig. 4 reference line)
    assert mean_std(x, normalize=True) == pytest.approx(1 / 4, rel=0.05)


def test_meter_averages_batches():
    g = torch.Generator().manual_seed(1)
    outs = [{k: torch.randn(32, 8, generator=g) for k in ("y_a", "y_b", "z_a", "z_b")} for _ in range(3)]
    meter = DiagnosticsMeter()
    for o in outs:
        meter.update(o)
    result = meter.result(torch.device("cpu"))
    expected = np.mean([batch_diagnostics(o)["corr_proj"] for o in outs])
    assert result["corr_proj"] == pytest.approx(expected, rel=1e-9)
    assert set(result) == {"std_repr", "std_proj", "std_repr_raw", "std_proj_raw", "corr_repr", "corr_proj"}
    assert DiagnosticsMeter().result(torch.device("cpu")) == {}

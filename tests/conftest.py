"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REAL_LAYOUTS = FIXTURES / "real_layouts"


@pytest.fixture(scope="session")
def real_layouts() -> Path:
    """Real annotation files of each dataset (see tests/fixtures/real_layouts/README.txt for sources)."""
    return REAL_LAYOUTS

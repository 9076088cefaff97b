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


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The tiny synthetic suite (all datasets in their official layouts), generated once per test session.

    Read it through `vicreg_bench.data.registry.open_classification/open_detection(name, synthetic_root, split)`.
    Images are about 64 px: call the protocol transforms with e.g. `size=56, resize=64`. Do not modify it."""
    from vicreg_bench.data.synth import make_synthetic_suite

    return make_synthetic_suite(tmp_path_factory.mktemp("synthetic") / "data", size="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_checkpoints(synthetic_root, tmp_path_factory) -> dict:
    """{"random": path, "trained": path}: resnet18 backbone files (see tests/tiny_checkpoints.py)."""
    from tiny_checkpoints import make_tiny_checkpoints

    return make_tiny_checkpoints(synthetic_root, tmp_path_factory.mktemp("tiny_checkpoints"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small batches on a shared 2-core machine run faster on one thread; modules opt in with
    `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def resnet18_state() -> dict:
    """A seeded random-init resnet18 trunk state dict (torchvision names, no fc)."""
    import torch

    from vicreg_bench.models import build_resnet

    torch.manual_seed(0)
    return build_resnet("resnet18").state_dict()


_SLURM: dict = {}


def pytest_runtest_setup(item):
    """Tests marked `slurm` need a real cluster (scripts/slurm_local.sh starts one). Without one they skip with
    the reason, unless VICREG_BENCH_REQUIRE_SLURM=1 (set by .ci/run once the cluster is up), where they fail."""
    if item.get_closest_marker("slurm") is None:
        return
    import os

    from vicreg_bench.launch import cluster_problem

    if "problem" not in _SLURM:  # asked once per session: sinfo takes ~10 s to give up on a stopped controller
        _SLURM["problem"] = cluster_problem()
    problem = _SLURM["problem"]
    if problem is None:
        return
    if os.environ.get("VICREG_BENCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"{problem}, and VICREG_BENCH_REQUIRE_SLURM=1 requires the SLURM tests to run")
    pytest.skip(problem)

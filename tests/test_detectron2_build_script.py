"""scripts/build_detectron2.sh refuses bad input before it compiles anything (the build itself is exercised by
`make test-detectron2`). torch / torchvision are stand-ins here, so nothing is built or installed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_detectron2.sh"


def _source_tree(root: Path) -> Path:
    (root / "detectron2" / "layers" / "csrc").mkdir(parents=True)
    (root / "setup.py").write_text("")
    return root


def _venv(root: Path, torch_version: str, tv_version: str, nms_works: bool = True) -> Path:
    """A VIRTUAL_ENV whose bin/python sees stand-in torch and torchvision modules."""
    site = root / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(
        f"__version__ = {torch_version!r}\ndef tensor(x): return x\n"
        "class cuda:\n    is_available = staticmethod(lambda: False)\nclass version:\n    cuda = '13.0'\n")
    (site / "torchvision" / "ops").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(f"__version__ = {tv_version!r}\n")
    body = "pass" if nms_works else "raise RuntimeError('operator torchvision::nms does not exist')"
    (site / "torchvision" / "ops" / "__init__.py").write_text(f"def nms(*a):\n    {body}\n")
    (root / "bin").mkdir()
    py = root / "bin" / "python"
    py.write_text(f"#!/bin/sh\nPYTHONPATH={site} exec {sys.executable} \"$@\"\n")
    py.chmod(0o755)
    return root


def _run(*args: str, venv: Path | None = None, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "FORCE_CUDA", "TORCH_CUDA_ARCH_LIST")}
    env.update(extra_env)
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def test_usage_and_source_errors(tmp_path):
    r = _run()
    assert r.returncode == 2 and "usage: scripts/build_detectron2.sh SRC" in r.stderr
    r = _run(str(tmp_path / "nope"))
    assert r.returncode == 2 and "no such directory" in r.stderr
    r = _run(str(tmp_path))
    assert r.returncode == 2 and "not a detectron2 source tree" in r.stderr
    src = _source_tree(tmp_path / "src")
    r = _run(str(src), "--fast")
    assert r.returncode == 2 and "--force" in r.stderr


def test_an_active_venv_is_required(tmp_path):
    r = _run(str(_source_tree(tmp_path / "src")))
    assert r.returncode == 2 and "no virtualenv is active" in r.stderr


@pytest.mark.parametrize("versions, nms_works, message", [
    (("2.14.1", "0.28.0"), True, "torch 2.14.1 and torchvision 0.28.0 are not a matched pair (torch 2.14 goes with torchvision 0.29)"),
    (("2.14.1", "0.29.1"), False, "torchvision.ops.nms fails: operator torchvision::nms does not exist"),
])
def test_a_mismatched_torch_and_torchvision_are_refused(tmp_path, versions, nms_works, message):
    venv = _venv(tmp_path / "venv", *versions, nms_works=nms_works)
    r = _run(str(_source_tree(tmp_path / "src")), venv=venv)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "installing" not in r.stdout  # refused before pip ran


def test_a_cuda_build_without_architectures_is_refused(tmp_path):
    """With nvcc on the machine but no GPU, the build picked CUDA and died in torch's arch-list code
    (IndexError in _get_cuda_arch_flags): now the CPU build is the default there, and FORCE_CUDA=1 without
    TORCH_CUDA_ARCH_LIST is refused before anything is installed."""
    venv = _venv(tmp_path / "venv", "2.14.1", "0.29.1")
    r = _run(str(_source_tree(tmp_path / "src")), venv=venv, FORCE_CUDA="1")
    assert r.returncode == 2 and "TORCH_CUDA_ARCH_LIST is unset" in r.stderr, r.stderr
    assert "installing" not in r.stdout

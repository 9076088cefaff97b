"""Build, validate, write atomically and read back results files (schema in `results.schema`).

The schema is checked both on write and on read, so a results file is either complete and valid or not
there at all. Files of schema version 1 (before `checkpoint.label`) are read and upgraded in memory.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import subprocess
from pathlib import Path

from vicreg_bench import __version__
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_write_json
from vicreg_bench.results.schema import READABLE_VERSIONS, SCHEMA_VERSION, validation_errors


def write_results(path: str | os.PathLike, results: dict) -> None:
    """Validate, then write atomically (temp file + rename)."""
    errors = validation_errors(results)
    if errors:
        raise ValueError("refusing to write invalid results JSON:\n  " + "\n  ".join(errors[:20]))
    atomic_write_json(path, results)


def upgrade(results: dict) -> dict:
    """A valid results document of any readable version as the current version (in memory)."""
    if results.get("schema_version") == 1:
        results = dict(results, schema_version=SCHEMA_VERSION)
        results["checkpoint"] = {**results["checkpoint"], "label": None}
    return results


def read_results(path: str | os.PathLike) -> dict:
    """Read, validate and upgrade a results file; a bad file raises UserError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such results file")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if isinstance(results, dict) and results.get("schema_version") not in (None, *READABLE_VERSIONS):
        raise UserError(f"{path}: schema_version {results.get('schema_version')!r} is not supported "
                        f"(expected one of {', '.join(map(str, READABLE_VERSIONS))}; a newer vicreg-bench wrote it?)")
    errors = validation_errors(results)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise UserError(f"{path}: not a valid vicreg-bench results file: " + "; ".join(errors[:5]) + more)
    return upgrade(results)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the vicreg-bench source tree, when it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        commit = out.stdout.strip()
        return commit if len(commit) == 40 else None
    except (OSError, subprocess.SubprocessError):
        return None


def tool_info() -> dict:
    return {"name": "vicreg-bench", "version": __version__, "git_commit": git_commit()}


def environment_info(device: str = "cpu", num_processes: int = 1) -> dict:
    import torch
    import torchvision

    gpu_names: list[str] = []
    if torch.cuda.is_available() and str(device).startswith("cuda"):
        gpu_names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "device": str(device),
        "gpu_names": gpu_names,
        "num_processes": int(num_processes),
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def new_results(checkpoint: dict, *, suite: str, protocol: str, device: str = "cpu", num_processes: int = 1) -> dict:
    """An empty results document with provenance filled in; tasks are added as they finish."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": tool_info(),
        "created": now_iso(),
        "checkpoint": {"label": None, **checkpoint},
        "environment": environment_info(device, num_processes),
        "suite": suite,
        "protocol": protocol,
        "tasks": {},
    }

"""The results JSON (schema_version 1): build, validate, write atomically, read back.

The schema ships in the package (`results_schema.json`) and is checked both on write and on read, so a
results file is either complete and valid or not there at all.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

from vicreg_bench import __version__
from vicreg_bench.errors import UserError
from vicreg_bench.fileio import atomic_write_json

SCHEMA_VERSION = 1


@functools.lru_cache(maxsize=1)
def load_schema() -> dict:
    return json.loads(resources.files("vicreg_bench").joinpath("results_schema.json").read_text())


def validation_errors(results: Any) -> list[str]:
    """Every way `results` breaks the schema, as 'where: what' lines (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    errors = []
    for err in sorted(validator.iter_errors(results), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        errors.append(f"{where}: {err.message}")
    return errors


def write_results(path: str | os.PathLike, results: dict) -> None:
    """Validate, then write atomically (temp file + rename)."""
    errors = validation_errors(results)
    if errors:
        raise ValueError("refusing to write invalid results JSON:\n  " + "\n  ".join(errors[:20]))
    atomic_write_json(path, results)


def read_results(path: str | os.PathLike) -> dict:
    """Read and validate a results file; a bad file raises UserError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such results file")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if isinstance(results, dict) and results.get("schema_version") not in (None, SCHEMA_VERSION):
        raise UserError(f"{path}: schema_version {results.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})")
    errors = validation_errors(results)
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise UserError(f"{path}: not a valid vicreg-bench results file: " + "; ".join(errors[:5]) + more)
    return results


def protocol_hash(name: str, params: dict) -> str:
    """Stable short hash of a protocol's name and parameters: equal hashes mean the same protocol ran."""
    blob = json.dumps({"name": name, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
        "checkpoint": checkpoint,
        "environment": environment_info(device, num_processes),
        "suite": suite,
        "protocol": protocol,
        "tasks": {},
    }


def task_entry(
    *,
    status: str,
    metrics: dict | None = None,
    protocol_name: str,
    protocol_params: dict | None = None,
    dataset: dict | None = None,
    reason: str | None = None,
    engine: str | None = None,
    seed: int | None = None,
    seconds: float | None = None,
    throughput: dict | None = None,
    **extra: Any,
) -> dict:
    """One entry of `tasks`, with the protocol hash computed from its name and params."""
    params = protocol_params or {}
    entry = {
        "status": status,
        "reason": reason,
        "metrics": metrics or {},
        "protocol": {"name": protocol_name, "params": params, "hash": protocol_hash(protocol_name, params)},
        "dataset": dataset,
        "engine": engine,
        "seed": seed,
        "seconds": None if seconds is None else round(float(seconds), 3),
        "throughput": throughput or {},
    }
    entry.update(extra)
    return entry

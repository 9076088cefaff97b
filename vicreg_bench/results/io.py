"""Build, validate, write atomically and read back results files (schema in `results.schema`).

The schema is checked both on write and on read, so a results file is either complete and valid or not
there at all. Files of schema version 1 (before `checkpoint.label`) are read and upgraded in memory.
Several processes may write one results file at once (runs of disjoint tasks into one `--out`, SLURM
jobs): `update_results` takes an exclusive lock, re-reads the file, merges its own tasks and replaces
the file atomically, so no writer ever drops another's tasks.
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
from vicreg_bench.locks import locked
from vicreg_bench.results.schema import READABLE_VERSIONS, SCHEMA_VERSION, validation_errors


def write_results(path: str | os.PathLike, results: dict) -> None:
    """Validate, then write atomically (temp file + rename)."""
    errors = validation_errors(results)
    if errors:
        raise ValueError("refusing to write invalid results JSON:\n  " + "\n  ".join(errors[:20]))
    atomic_write_json(path, results)


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file guarding a results file (`results.json` -> `.results.json.lock`)."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def update_results(path: str | os.PathLike, doc: dict, tasks: list[str] | tuple[str, ...] = ()) -> dict:
    """Write `doc`'s entries of `tasks` into the results file without losing what others wrote: under an
    exclusive lock, re-read the file, merge these tasks (and `doc`'s provenance) into it, replace it
    atomically. A file of another checkpoint or protocol is refused, naming both. Returns what was written."""
    path = Path(path)
    with locked(lock_path(path), what=f"writing {path}"):
        current = read_results(path) if path.is_file() else None
        if current is None:
            merged = doc
        else:
            ours, theirs = doc["checkpoint"], current["checkpoint"]
            if ours["sha256"] != theirs["sha256"]:
                raise UserError(f"{path}: holds results of {theirs['path']} (sha256 {theirs['sha256'][:12]}), not of "
                                f"{ours['path']} (sha256 {ours['sha256'][:12]}); write them to another --out")
            if current["protocol"] != doc["protocol"]:
                raise UserError(f"{path}: holds --protocol {current['protocol']} results, not --protocol "
                                f"{doc['protocol']}; write them to another --out")
            merged = dict(current)
            merged.update(tool=doc["tool"], environment=doc["environment"],
                          checkpoint={**doc["checkpoint"], "label": ours.get("label") or theirs.get("label")})
            suites = current["suite"].split("+")
            merged["suite"] = "+".join(suites + [s for s in doc["suite"].split("+") if s not in suites])
            merged["tasks"] = {**current["tasks"], **{t: doc["tasks"][t] for t in tasks if t in doc["tasks"]}}
        write_results(path, merged)
    return merged


def replace_results(path: str | os.PathLike, doc: dict) -> None:
    """Replace the results file with `doc` under the lock (`run --force` starting over)."""
    with locked(lock_path(path), what=f"writing {path}"):
        write_results(path, doc)


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

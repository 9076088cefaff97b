"""Reading results files and folders of them: one merged run per checkpoint (results.merge), each task
entry annotated with the file it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from vicreg_bench.errors import UserError
from vicreg_bench.results.io import read_results
from vicreg_bench.results.merge import created_at, merge_results


def _looks_like_results(obj: Any) -> bool:
    return isinstance(obj, dict) and "schema_version" in obj and "tasks" in obj


_SNIFF_ABOVE = 8 << 20  # bytes; bigger JSON files (detection outputs, annotations) are sniffed, not parsed


def _scan_dir(folder: Path) -> list[tuple[Path, dict]]:
    """Every results JSON under `folder`; other JSON files (logs, configs, detections) are passed over."""
    found = []
    for path in sorted(folder.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # hidden files and folders, e.g. atomic-write temporaries
        try:
            if path.stat().st_size > _SNIFF_ABOVE:
                with open(path, "rb") as f:  # results files start with "schema_version" (write_results)
                    if b'"schema_version"' not in f.read(4096):
                        continue
            obj = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if _looks_like_results(obj):
            found.append((path, read_results(path)))  # a broken results file is an error, not skipped
    if not found:
        raise UserError(f"{folder}: no vicreg-bench results JSON found in this folder or below")
    return found


def _annotate(path: Path, doc: dict) -> dict:
    doc = dict(doc)
    doc["_file"] = str(path)
    doc["_files"] = [str(path)]
    tasks = {}
    for name, entry in doc["tasks"].items():
        entry = dict(entry)
        entry["_file"] = str(path)
        entry["_created"] = doc["created"]
        entry["_run_protocol"] = doc["protocol"]
        entry["_suite"] = doc["suite"]
        entry["_arch"] = doc["checkpoint"]["arch"]
        tasks[name] = entry
    doc["tasks"] = tasks
    return doc


def _merge(docs: list[dict]) -> dict:
    """One checkpoint's results merged (results.merge: the newest entry of each task), with its files."""
    newest = max(docs, key=created_at)
    merged = merge_results(docs, suite=newest["suite"])
    merged["_files"] = [d["_file"] for d in sorted(docs, key=created_at)]
    return merged


def load_runs(paths: Iterable[str | Path], *, merge: bool = True) -> list[dict]:
    """Read results files and folders of them; one merged results dict per checkpoint sha256.

    Rows keep the order in which checkpoints are first seen (files in the order given, folders in path
    order). Each task entry gets `_file`, `_created`, `_run_protocol` and `_suite`, and each run
    `_files`, so the table can say where every number comes from. With `merge=False` every file is
    its own run.
    """
    loaded: list[tuple[Path, dict]] = []
    seen: set[Path] = set()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            items = _scan_dir(path)
        elif path.is_file():
            items = [(path, read_results(path))]
        else:
            raise UserError(f"{path}: no such file or folder (expected a results JSON or a folder of them)")
        for item_path, doc in items:
            real = item_path.resolve()
            if real not in seen:
                seen.add(real)
                loaded.append((item_path, doc))
    docs = [_annotate(path, doc) for path, doc in loaded]
    if not merge:
        return docs
    groups: dict[str, list[dict]] = {}
    for doc in docs:
        groups.setdefault(doc["checkpoint"]["sha256"], []).append(doc)
    return [_merge(group) for group in groups.values()]


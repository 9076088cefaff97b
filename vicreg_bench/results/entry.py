"""One task's entry in the results JSON, and the protocol hash that says which protocol produced it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def protocol_hash(name: str, params: dict) -> str:
    """Stable short hash of a protocol's name and parameters: equal hashes mean the same protocol ran."""
    blob = json.dumps({"name": name, "params": params}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def jsonable(x: Any) -> Any:
    """Make what a task returns JSON-safe (numpy scalars and arrays, tuples, paths; NaN/inf -> null)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


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

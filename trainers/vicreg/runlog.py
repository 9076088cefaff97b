"""The run's JSON-lines log (`<exp-dir>/log.jsonl`) and its console lines; rank 0 only.

Every line is one JSON object with a "type": start, step, epoch, checkpoint, end. The format is
documented in docs/training.md (the HTML report plots it). A resumed run appends to the same file.
"""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

LOG_FORMAT_VERSION = 1


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null (the step record's `finite` flag tells why)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class RunLog:
    def __init__(self, path: str | Path, enabled: bool = True, echo: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        self.echo = echo and enabled
        self.t0 = time.time()
        self._file = open(self.path, "a", buffering=1, encoding="utf-8") if enabled else None

    def write(self, record_type: str, **fields: Any) -> None:
        if not self._file:
            return
        record = {"type": record_type, "time": round(time.time(), 3), **fields}
        self._file.write(json.dumps(_clean(record), allow_nan=False) + "\n")

    def start(self, **fields: Any) -> None:
        self.write("start", version=LOG_FORMAT_VERSION, started=datetime.now(timezone.utc).isoformat(timespec="seconds"), **fields)

    def console(self, message: str) -> None:
        if self.echo:
            tqdm.write(message, file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None

"""The one reader of vicreg-train's JSON-lines log (`<exp-dir>/log.jsonl`; format in docs/training.md).

The HTML report plots it (loss terms, the paper's Fig. 4/5 diagnostics) and the demo reads its start and
end records to decide whether a pretraining can be reused. A truncated or garbled line (a run killed
mid-write) is counted and skipped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vicreg_bench.errors import UserError

LOSS_TERMS = ("loss", "invariance", "variance", "covariance")
STD_KEYS = ("std_repr", "std_proj")  # Fig. 4: per-dimension std of l2-normalised y and z
CORR_KEYS = ("corr_repr", "corr_proj")  # Fig. 5 / Eq. 10: average correlation coefficient


@dataclass
class TrainLog:
    path: Path
    steps: list[dict] = field(default_factory=list)  # records with a loss
    epochs: list[dict] = field(default_factory=list)  # records with diagnostics
    start: dict | None = None  # the run's settings, when the log has a start record
    bad_lines: int = 0

    @property
    def label(self) -> str:
        return self.path.parent.name or self.path.name

    def proj_dim(self) -> int | None:
        """Output dimension of the projector (for Fig. 4's 1/sqrt(d) line), when the log records it."""
        cfg = self.start or {}
        args = cfg.get("args") if isinstance(cfg.get("args"), dict) else cfg
        mlp = args.get("mlp") if isinstance(args, dict) else None
        if isinstance(mlp, str) and re.fullmatch(r"\d+(-\d+)*", mlp):
            return int(mlp.split("-")[-1])
        for key in ("proj_dim", "embedding_dim"):
            if isinstance(args, dict) and isinstance(args.get(key), int):
                return args[key]
        return None



def number(v: Any) -> float | None:
    """A finite number as float, else None (JSON null, strings, NaN)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def read_records(path: str | Path) -> tuple[list[dict], int]:
    """Every JSON object of a JSON-lines file, in order, and the number of unreadable lines skipped.
    A missing file has no records."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from None
    records, bad = [], 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def read_train_log(path: str | Path) -> TrainLog:
    """Parse a JSON-lines training log. Records are dicts; a `type` field (start/step/epoch/...) is used
    when present, else a record with `loss` is a step and one with std_/corr_ keys an epoch summary."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--train-log {path}: no such file")
    records, bad = read_records(path)
    log = TrainLog(path, bad_lines=bad)
    for rec in records:
        kind = rec.get("type")
        if kind == "start":
            log.start = rec
            continue
        if kind in (None, "step") and number(rec.get("loss")) is not None:
            log.steps.append(rec)
        if kind in (None, "epoch") and any(number(rec.get(k)) is not None for k in STD_KEYS + CORR_KEYS):
            log.epochs.append(rec)
    # a resumed run appends to the same file and repeats steps after its last checkpoint: keep the last
    log.steps = list({number(r.get("step")) if number(r.get("step")) is not None else -i - 1: r
                      for i, r in enumerate(log.steps)}.values())
    log.epochs = list({number(r.get("epoch")) if number(r.get("epoch")) is not None else -i - 1: r
                       for i, r in enumerate(log.epochs)}.values())
    log.steps.sort(key=lambda r: number(r.get("step")) or 0.0)
    log.epochs.sort(key=lambda r: number(r.get("epoch")) or 0.0)
    if not log.steps and not log.epochs:
        raise UserError(
            f"--train-log {path}: no training records found (expected JSON lines with 'loss' per step "
            "and std_repr/std_proj/corr_repr/corr_proj per epoch, as vicreg-train writes)"
        )
    return log

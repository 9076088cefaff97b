"""The one way results of one checkpoint are merged: by `run` into an existing file, by `compare`, by the demo.

For each task the entry of the newest document (by `created`) wins; provenance (tool, environment,
checkpoint, created) comes from the newest document too. Merging documents of two checkpoints is an error.
"""

from __future__ import annotations

import datetime as _dt
from typing import Iterable

from vicreg_bench.errors import UserError


def created_at(doc: dict) -> _dt.datetime:
    """A results document's `created` time (timezone-aware; unreadable -> the earliest time)."""
    try:
        when = _dt.datetime.fromisoformat(str(doc.get("created")))
    except ValueError:
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def merge_results(docs: Iterable[dict], *, order: Iterable[str] | None = None, suite: str | None = None) -> dict:
    """One document holding every task of `docs`, the newest entry of each.

    `order` lists task names in the order wanted (tasks it does not name follow, newest document's
    first); by default the newest document's tasks come first. `suite` replaces the newest document's suite
    name.
    """
    docs = sorted(docs, key=created_at)
    if not docs:
        raise ValueError("merge_results: nothing to merge")
    shas = {d["checkpoint"]["sha256"] for d in docs}
    if len(shas) > 1:
        paths = sorted({d["checkpoint"]["path"] for d in docs})
        raise UserError(f"cannot merge results of different checkpoints ({', '.join(paths)})")
    newest = docs[-1]
    merged = dict(newest)
    tasks: dict[str, dict] = {}
    for doc in docs:
        tasks.update(doc["tasks"])
    first = list(order or []) + list(newest["tasks"])
    names = [t for t in dict.fromkeys(first) if t in tasks] + [t for t in tasks if t not in first]
    merged["tasks"] = {t: tasks[t] for t in names}
    if suite is not None:
        merged["suite"] = suite
    return merged

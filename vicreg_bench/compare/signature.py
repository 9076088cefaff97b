"""What a task entry ran, split into the parts that get their own mark, and how it departs from the paper."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from vicreg_bench.compare.model import (
    ENGINE_KEYS,
    IGNORED_PARAMS,
    KNOWN_VARIANTS,
    SETTING_ALIASES,
    VARIANT_KEYS,
)
from vicreg_bench.tasks.catalog import all_tasks


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix or "value": d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _last(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _extra(entry: dict, key: str) -> Any:
    """A task entry's additional field: at its top level, or under `extra` (how `run` stores them)."""
    if key in entry:
        return entry[key]
    extra = entry.get("extra")
    return extra.get(key) if isinstance(extra, dict) else None


def image_variant(entry: dict) -> str | None:
    """The image variant a task ran with (VOC07 SVM: squash / center_crop), where it is recorded."""
    for key in VARIANT_KEYS:
        if isinstance(_extra(entry, key), str):
            return _extra(entry, key)
    params = _flatten(entry.get("protocol", {}).get("params", {}))
    for key in VARIANT_KEYS:
        for k, v in params.items():
            if _last(k) == key and isinstance(v, str):
                return v
    return None


def _protocol_params(entry: dict) -> dict[str, Any]:
    """Protocol parameters that change the cell's number, without the variant and engine (own marks)."""
    params = _flatten(entry.get("protocol", {}).get("params", {}))
    out = {}
    for k, v in params.items():
        parts = k.split(".")
        if parts[-1] in VARIANT_KEYS + ENGINE_KEYS + IGNORED_PARAMS or any(p in KNOWN_VARIANTS for p in parts):
            continue
        out[k] = v
    return out


def _protocol_key(entry: dict) -> str:
    return json.dumps(
        {"name": entry.get("protocol", {}).get("name"), "params": _protocol_params(entry)}, sort_keys=True, default=str
    )


def _manifest_key(entry: dict) -> str:
    dataset = entry.get("dataset") or {}
    return json.dumps(dataset.get("manifest_sha256"), sort_keys=True)


def _signature(entry: dict) -> dict[str, str | None]:
    return {
        "protocol": _protocol_key(entry),
        "engine": entry.get("engine"),
        "dataset": _manifest_key(entry),
        "variant": image_variant(entry),
        "arch": entry.get("_arch"),
    }


def majority(values: list[Any]) -> Any:
    """The most common value; ties go to the one that appears first."""
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _setting(params: dict[str, Any], name: str) -> tuple[str, Any] | None:
    for alias in SETTING_ALIASES.get(name, (name,)):
        for k, v in params.items():
            if _last(k) == alias:
                return k, v
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and len(a) == 1 and not isinstance(b, list):
        a = a[0]  # e.g. k-NN "temperatures": [0.07] against the paper's 0.07
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def paper_departures(task: str, entry: dict) -> list[str]:
    """Why a task entry is not the paper's protocol, in words (empty when nothing says so)."""
    reasons = []
    name = str(entry.get("protocol", {}).get("name", ""))
    if "fast" in name.lower().split("_"):
        reasons.append(f"protocol '{name}' (cached features, no augmentation), not the paper's")
    params = _protocol_params(entry)
    overridden = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("overrides.")}
    if overridden:
        reasons.append("scaled with " + ", ".join(f"{k}={_fmt(v)}" for k, v in overridden.items()))
    # A task that says itself how it departs from the paper (detection: `paper_protocol`, and the list
    # `deviations_from_protocol`) is taken at its word.
    deviations = _extra(entry, "deviations_from_protocol")
    said_paper = [v for k, v in _flatten(entry.get("protocol", {}).get("params", {})).items() if _last(k) == "paper_protocol"]
    if isinstance(deviations, list) and deviations:
        reasons += [str(d) for d in deviations]
        return reasons
    found_any = False
    spec = all_tasks().get(task)
    for setting, paper_value in (spec.paper_settings if spec else {}).items():
        found = _setting({k: v for k, v in params.items() if not k.startswith("overrides.")}, setting)
        if found is not None and not _same(found[1], paper_value) and _last(found[0]) not in overridden:
            reasons.append(f"{found[0]} = {_fmt(found[1])} (paper: {_fmt(paper_value)})")
            found_any = True
    if said_paper and said_paper[0] is False and not found_any and not overridden:
        reasons.append("the task records that it did not run the paper's protocol (paper_protocol = false)")
    return reasons


def _describe_protocol_diff(entry: dict, ref: dict) -> str:
    a, b = entry.get("protocol", {}), ref.get("protocol", {})
    parts = []
    if a.get("name") != b.get("name"):
        parts.append(f"protocol '{a.get('name')}' vs '{b.get('name')}'")
    pa, pb = _protocol_params(entry), _protocol_params(ref)
    for k in sorted(set(pa) | set(pb)):
        if k not in pa or k not in pb or not _same(pa[k], pb[k]):
            parts.append(f"{k} {_fmt(pa.get(k, '(unset)'))} vs {_fmt(pb.get(k, '(unset)'))}")
    return "; ".join(parts[:6]) + ("; ..." if len(parts) > 6 else "") or "protocol hash differs"


def _describe_manifest_diff(entry: dict, ref: dict) -> str:
    da, db = entry.get("dataset") or {}, ref.get("dataset") or {}
    ma, mb = da.get("manifest_sha256") or {}, db.get("manifest_sha256") or {}
    na, nb = da.get("num_images") or {}, db.get("num_images") or {}
    if not ma:
        return "no dataset manifest recorded"
    parts = []
    for split in sorted(set(ma) | set(mb)):
        if ma.get(split) != mb.get(split):
            sa, sb = str(ma.get(split) or "none")[:12], str(mb.get(split) or "none")[:12]
            counts = f", {na.get(split, '?')} vs {nb.get(split, '?')} images" if (na or nb) else ""
            parts.append(f"{split}: sha256 {sa} vs {sb}{counts}")
    return "; ".join(parts) or "manifest differs"


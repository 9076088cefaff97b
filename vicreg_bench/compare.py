"""Put several results side by side, in the layout of the VICReg paper's Tables 1, 2 and 5.

    vicreg-bench compare runs/vicreg/results.json runs/barlow/results.json
    vicreg-bench compare runs/ --published --format md -o table.md
    vicreg-bench compare runs/ --published --format html -o report.html --train-log exp/log.jsonl

Inputs are results files and folders of them (searched recursively). One row per checkpoint (sha256):
when several results exist for one checkpoint, they are merged and, for each task, the newest
(`created`) wins, so `--suite table1` and `--suite table2` run separately still give one row
(`--keep-all` gives one row per file instead). `--published` adds the paper's own rows.

Nothing is compared silently across different settings. A cell is marked when it differs from its
column's reference, which is what most rows with a number in that column share (ties: the row that
comes first, i.e. the first results file given):
  \u2020 protocol   another protocol (name or settings); also any cell not run with the paper's protocol
             (`linear_fast`, settings scaled down with --epochs and the like, or other paper settings)
  \u2021 engine     another detection engine; also any detection cell not run with detectron2
  \u00a7 dataset    another dataset manifest (the exact image list, by sha256)
  \u00b6 variant    another image variant (VOC07 SVM: squash or center_crop)
Each marked cell has a numbered footnote saying how it differs. A task that is missing, failed or was
skipped is an empty cell ("\u2014") with the reason in a footnote.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import io
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vicreg_bench.errors import UserError
from vicreg_bench.results import read_results

# ---------------------------------------------------------------------------------------------------
# Columns: the paper's Table 1 / 2 / 5 layout, in the harness's task and metric names.


@dataclass(frozen=True)
class Column:
    task: str
    metric: str
    table: int  # the paper's table (1, 2 or 5) this column belongs to
    label: str  # short header

    @property
    def key(self) -> str:
        return f"{self.task}.{self.metric}"


COLUMNS: tuple[Column, ...] = (
    Column("imagenet_linear", "top1", 1, "Linear top-1"),
    Column("imagenet_linear", "top5", 1, "Linear top-5"),
    Column("imagenet_semisup_1pct", "top1", 1, "Semi 1% top-1"),
    Column("imagenet_semisup_10pct", "top1", 1, "Semi 10% top-1"),
    Column("imagenet_semisup_1pct", "top5", 1, "Semi 1% top-5"),
    Column("imagenet_semisup_10pct", "top5", 1, "Semi 10% top-5"),
    Column("places205_linear", "top1", 2, "Places205"),
    Column("voc07_svm", "mAP", 2, "VOC07 SVM"),
    Column("inat18_linear", "top1", 2, "iNat18"),
    Column("voc07_det", "AP50", 2, "VOC07+12 AP50"),
    Column("voc07_det", "AP", 2, "VOC07+12 AP"),
    Column("voc07_det", "AP75", 2, "VOC07+12 AP75"),
    Column("coco_det", "bbox_AP", 2, "COCO det AP"),
    Column("coco_det", "segm_AP", 2, "COCO seg AP"),
    Column("imagenet_knn", "k20_top1", 5, "20-NN"),
    Column("imagenet_knn", "k200_top1", 5, "200-NN"),
)

TABLE_TITLES = {
    1: "Table 1: ImageNet linear and semi-supervised",
    2: "Table 2: transfer (linear, detection)",
    5: "Table 5: ImageNet k-NN",
}

# What the marks mean, in the order they are shown.
MARKS: dict[str, str] = {"protocol": "\u2020", "engine": "\u2021", "dataset": "\u00a7", "variant": "\u00b6"}
MARK_LEGEND: dict[str, str] = {
    "protocol": "protocol: differs from the column's reference protocol, or is not the paper's protocol "
    "(the `fast` linear protocol, settings scaled down with --epochs and the like, or other paper settings)",
    "engine": "detection engine: differs from the column's reference engine, or is not detectron2 "
    "(the engine behind the paper's numbers)",
    "dataset": "dataset: another image list than the column's reference (dataset manifest sha256 differs)",
    "variant": "image variant: another image preprocessing variant than the column's reference "
    "(VOC07 SVM: squash = VISSL's Resize((224, 224)), center_crop = the paper text's center crop)",
}

# Settings the paper's protocol uses (PROTOCOLS.md, paper appendix B), checked when a results file
# records them under one of these parameter names; other names are not guessed.
PAPER_SETTINGS: dict[str, dict[str, Any]] = {
    "imagenet_linear": {"epochs": 100, "lr": 0.02, "weight_decay": 1e-6, "batch_size": 256},
    "places205_linear": {"epochs": 28, "lr": 0.003, "weight_decay": 1e-4, "batch_size": 256},
    "inat18_linear": {"epochs": 84, "lr": 0.005, "weight_decay": 1e-4, "batch_size": 256},
    "imagenet_semisup_1pct": {"epochs": 20, "batch_size": 256, "weight_decay": 0.0},
    "imagenet_semisup_10pct": {"epochs": 20, "batch_size": 256, "weight_decay": 0.0},
    "imagenet_knn": {"temperature": 0.07},
    "voc07_det": {"iterations": 24000, "batch_size": 16},
    "coco_det": {"iterations": 90000, "batch_size": 16},
}
SETTING_ALIASES: dict[str, tuple[str, ...]] = {
    "epochs": ("epochs", "num_epochs", "max_epochs"),
    "lr": ("lr", "base_lr", "learning_rate"),
    "weight_decay": ("weight_decay", "wd"),
    "batch_size": ("batch_size", "ims_per_batch"),
    "temperature": ("temperature", "temperatures", "T"),
    "iterations": ("iterations", "max_iter", "max_iters", "iters", "num_iters"),
}
# Parameters that name the image variant or the engine: they get their own marks, not the protocol's.
VARIANT_KEYS = ("image_variant", "svm_variant", "variant", "svm_image_variant")
ENGINE_KEYS = ("engine", "det_engine")
# Parameters that do not change a cell's number: the variants computed besides the headline one (their
# settings sit under a key named after the variant), and the checkpoint's own input normalisation
# (converted SimCLR models take unnormalised images; that is the checkpoint's, not the protocol's).
KNOWN_VARIANTS = ("squash", "center_crop")
IGNORED_PARAMS = ("extra_variants", "normalize", "repr", "arch", "paper_protocol")
PAPER_ENGINE = "detectron2"
PAPER_SVM_VARIANT = "squash"  # VISSL's transform, which produced the published VOC07 numbers
DETECTION_TASKS = ("voc07_det", "coco_det")


# ---------------------------------------------------------------------------------------------------
# Loading results: files and folders, newest result per checkpoint.


def _created(doc: dict) -> _dt.datetime:
    try:
        when = _dt.datetime.fromisoformat(str(doc.get("created")))
    except ValueError:
        return _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


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
        tasks[name] = entry
    doc["tasks"] = tasks
    return doc


def _merge(docs: list[dict]) -> dict:
    """One checkpoint's results merged: for each task the newest entry wins; provenance from the newest."""
    docs = sorted(docs, key=_created)
    merged = dict(docs[-1])
    tasks: dict[str, dict] = {}
    for doc in docs:
        tasks.update(doc["tasks"])
    # keep the task order of the newest file first, then older-only tasks
    order = list(docs[-1]["tasks"]) + [t for t in tasks if t not in docs[-1]["tasks"]]
    merged["tasks"] = {t: tasks[t] for t in order}
    merged["_files"] = [d["_file"] for d in docs]
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


# ---------------------------------------------------------------------------------------------------
# The table model: cells carry value + marks + footnote numbers.


@dataclass
class Cell:
    value: float | None = None
    marks: list[str] = field(default_factory=list)  # kinds: "protocol", "engine", "dataset", "variant"
    notes: list[int] = field(default_factory=list)  # footnote numbers
    state: str = "ok"  # ok | failed | skipped | missing | no_metric | published | not_published
    best: bool = False  # best unmarked value of its column

    @property
    def symbols(self) -> str:
        return "".join(MARKS[k] for k in MARKS if k in self.marks)


@dataclass
class Row:
    method: str
    arch: str
    checkpoint: str
    sha256: str | None
    source: str  # results file(s), or the paper table(s)
    published: bool
    cells: dict[str, Cell]
    run: dict | None = None  # the merged results dict (None for a published row)
    method_id: str | None = None  # the harness's method name (a published row's, where there is one)


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    footnotes: list[str]  # footnote n is footnotes[n - 1]
    references: dict[str, str]  # task -> what its reference is, in words
    marks_used: list[str]  # mark kinds that occur in the table, legend order

    def legend(self) -> list[tuple[str, str]]:
        return [(MARKS[k], MARK_LEGEND[k]) for k in self.marks_used]

    def groups(self) -> list[tuple[int, int]]:
        """(paper table number, number of consecutive columns) for the header's group row."""
        out: list[tuple[int, int]] = []
        for col in self.columns:
            if out and out[-1][0] == col.table:
                out[-1] = (col.table, out[-1][1] + 1)
            else:
                out.append((col.table, 1))
        return out


class _Footnotes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


# ---------------------------------------------------------------------------------------------------
# Signatures: what a task entry ran, split into the parts that get their own mark.


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
    }


def _majority(values: list[Any]) -> Any:
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
    for setting, paper_value in PAPER_SETTINGS.get(task, {}).items():
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


# ---------------------------------------------------------------------------------------------------


def _checkpoint_name(run: dict) -> str:
    return Path(run["checkpoint"]["path"]).name or run["checkpoint"]["path"]


def build_table(runs: list[dict], published: bool = False) -> Table:
    """The comparison table: one row per run (see `load_runs`), plus the paper's rows with `published`.

    Columns: the paper's Table 1/2/5 layout, restricted to the tasks some run has (all of them when
    there is no run).

    Reference rule, per column: for each part of a cell's signature (protocol, engine, dataset
    manifest, image variant) the reference is the value most rows with a number in that column share;
    ties go to the earliest row, i.e. the first results file given. Cells that differ are marked.
    Independently, cells not run with the paper's protocol or (detection) not with detectron2 are
    marked too, so nothing reads as a paper-protocol number when it is not one.
    """
    notes = _Footnotes()
    ran = {t for run in runs for t in run["tasks"]}
    columns = [c for c in COLUMNS if c.task in ran] or list(COLUMNS)

    names = [_checkpoint_name(run) for run in runs]
    shas = [run["checkpoint"]["sha256"] for run in runs]
    dupes = {n for n in names if names.count(n) > 1}
    rows: list[Row] = []
    for run, name in zip(runs, names):
        ck = run["checkpoint"]
        label = f"{name} ({ck['sha256'][:8]})" if name in dupes else name
        if shas.count(ck["sha256"]) > 1:  # --keep-all: the same checkpoint from several files
            where = Path(run["_file"])
            label += f" [{where.parent.name}/{where.name}]"
        rows.append(Row(ck["method"], ck["arch"], label, ck["sha256"], ", ".join(run["_files"]), False, {}, run, ck["method"]))

    # References per task: the majority value of each signature part among rows that ran it ok.
    references: dict[str, str] = {}
    ref_parts: dict[str, dict[str, tuple[Any, dict]]] = {}
    for task in dict.fromkeys(c.task for c in columns):
        ok = [(i, run["tasks"][task]) for i, run in enumerate(runs) if run["tasks"].get(task, {}).get("status") == "ok"]
        if not ok:
            continue
        sigs = [_signature(e) for _, e in ok]
        parts: dict[str, tuple[Any, dict]] = {}
        for kind in MARKS:
            value = _majority([s[kind] for s in sigs])
            first = next(j for j, s in enumerate(sigs) if s[kind] == value)
            parts[kind] = (value, ok[first][1])
        ref_parts[task] = parts
        proto_entry = parts["protocol"][1]
        words = f"protocol '{proto_entry['protocol']['name']}' (hash {proto_entry['protocol']['hash']})"
        if parts["engine"][0]:
            words += f", engine {parts['engine'][0]}"
        if parts["variant"][0]:
            words += f", variant {parts['variant'][0]}"
        ds = parts["dataset"][1].get("dataset") or {}
        if ds:
            words += f", dataset {ds.get('name')} as in {Path(parts['dataset'][1]['_file']).name}"
        references[task] = words

    for row, run in zip(rows, runs):
        for col in columns:
            entry = run["tasks"].get(col.task)
            row.cells[col.key] = _user_cell(col, entry, run, ref_parts.get(col.task), notes)

    if published:
        from vicreg_bench.published import published_rows

        for prow in published_rows():
            cells = {}
            for col in columns:
                pv = prow.values.get((col.task, col.metric))
                if pv is None:
                    cells[col.key] = Cell(state="not_published")
                else:
                    cell = Cell(pv.value, state="published")
                    if pv.note:
                        cell.notes.append(notes.add(pv.note))
                    cells[col.key] = cell
            tables = ", ".join(str(t) for t in prow.tables)
            rows.append(
                Row(prow.method, prow.arch, "published", None, f"VICReg paper, Table {tables}", True, cells, None, prow.method_id)
            )

    for col in columns:
        candidates = [r.cells[col.key] for r in rows if r.cells[col.key].value is not None and not r.cells[col.key].marks]
        if len(candidates) > 1:
            best = max(c.value for c in candidates)
            for c in candidates:
                c.best = c.value == best

    used = {k for r in rows for c in r.cells.values() for k in c.marks}
    return Table(columns, rows, notes.texts, references, [k for k in MARKS if k in used])


def _user_cell(col: Column, entry: dict | None, run: dict, ref: dict | None, notes: _Footnotes) -> Cell:
    if entry is None:
        return Cell(state="missing", notes=[notes.add(f"{col.task}: not run (not in this checkpoint's results; suite {run['suite']})")])
    status = entry["status"]
    if status != "ok":
        return Cell(state=status, notes=[notes.add(f"{col.task} {status}: {entry.get('reason') or 'no reason given'}")])
    value = entry["metrics"].get(col.metric)
    if not isinstance(value, (int, float)):
        return Cell(state="no_metric", notes=[notes.add(f"{col.task}: ran, but its results have no '{col.metric}'")])
    cell = Cell(float(value))
    sig = _signature(entry)
    where = Path(entry["_file"]).name

    def mark(kind: str, text: str) -> None:
        if kind not in cell.marks:
            cell.marks.append(kind)
        cell.notes.append(notes.add(f"{MARKS[kind]} {col.task} ({where}): {text}"))

    engine_differs = ref is not None and sig["engine"] != ref["engine"][0]
    if engine_differs:
        mark("engine", f"engine {sig['engine']} vs the column's {ref['engine'][0]} (protocols differ with the engine: "
             f"{_describe_protocol_diff(entry, ref['engine'][1])})")
    elif col.task in DETECTION_TASKS and sig["engine"] not in (None, PAPER_ENGINE):
        mark("engine", f"engine {sig['engine']}, not {PAPER_ENGINE} (the engine of the paper's numbers)")
    if ref is not None and not engine_differs and sig["protocol"] != ref["protocol"][0]:
        mark("protocol", "protocol differs from the column's reference: " + _describe_protocol_diff(entry, ref["protocol"][1]))
    departures = paper_departures(col.task, entry)
    if departures:
        mark("protocol", "not the paper's protocol: " + "; ".join(departures))
    if ref is not None and sig["dataset"] != ref["dataset"][0]:
        mark("dataset", "dataset manifest differs from the column's reference: " + _describe_manifest_diff(entry, ref["dataset"][1]))
    if ref is not None and sig["variant"] != ref["variant"][0]:
        mark("variant", f"image variant {sig['variant'] or 'unrecorded'} vs the column's {ref['variant'][0] or 'unrecorded'}")
    return cell


# ---------------------------------------------------------------------------------------------------
# Renderers.


def cell_text(cell: Cell, decimals: int = 1) -> str:
    """'73.2†[3]' or '—[2]': value (or an explicit dash), marks, footnote numbers."""
    if cell.state == "not_published":
        return ""
    value = "\u2014" if cell.value is None else f"{cell.value:.{decimals}f}"
    refs = f"[{','.join(str(n) for n in cell.notes)}]" if cell.notes else ""
    return f"{value}{cell.symbols}{refs}"


def _notes_block(table: Table, bullet: str = "") -> list[str]:
    lines: list[str] = []
    if table.legend():
        lines.append("Marks:")
        lines += [f"{bullet}{sym} {text}" for sym, text in table.legend()]
    lines.append(
        "Reference of each column: for each of protocol, engine, dataset manifest and image variant, the "
        "value most rows share (ties: the first results file given); numbers in bold/starred are the best "
        "unmarked value of their column."
    )
    if table.references:
        lines.append("References:")
        lines += [f"{bullet}{task}: {words}" for task, words in table.references.items()]
    if any(r.published for r in table.rows):
        lines.append(
            "Published rows: the VICReg paper (Bardes, Ponce, LeCun, ICLR 2022), Tables 1, 2 and 5; a blank "
            "cell in a published row means the paper gives no number."
        )
    if table.footnotes:
        lines.append("Notes:")
        lines += [f"{bullet}[{i}] {text}" for i, text in enumerate(table.footnotes, 1)]
    sources = [r for r in table.rows if not r.published]
    if sources:
        lines.append("Rows:")
        lines += [f"{bullet}{r.method} {r.arch} {r.checkpoint}: sha256 {r.sha256}, from {r.source}" for r in sources]
    return lines


def render_text(table: Table) -> str:
    """A fixed-width table for the terminal, with the legend and footnotes under it."""
    head = ["method", "arch", "checkpoint"]
    body = []
    for r in table.rows:
        body.append([r.method, r.arch, r.checkpoint] + [cell_text(r.cells[c.key]) + ("*" if r.cells[c.key].best else "") for c in table.columns])
    labels = head + [c.label for c in table.columns]
    widths = [max(len(labels[i]), *(len(b[i]) for b in body)) if body else len(labels[i]) for i in range(len(labels))]
    # the group row: each paper table's title spans its columns
    group_cells = [" " * (sum(widths[:3]) + 4)]
    start = 3
    for number, span in table.groups():
        width = sum(widths[start:start + span]) + 2 * (span - 1)
        group_cells.append(f"Table {number}".center(width, "-")[:width] if width >= 7 else f"T{number}".center(width))
        start += span
    lines = ["  ".join(group_cells)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines.append(fmt(labels))
    lines.append("  ".join("-" * w for w in widths))
    published_started = False
    for r, b in zip(table.rows, body):
        if r.published and not published_started:
            published_started = True
            lines.append("  ".join("-" * w for w in widths[:3]) + "  published (VICReg paper)")
        lines.append(fmt(b))
    lines.append("")
    lines += [" ".join(f"{TABLE_TITLES[n]}." for n, _ in table.groups())]
    lines += _notes_block(table, bullet="  ")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table, best values in bold, legend and footnotes as lists."""
    header = ["method", "arch", "checkpoint"] + [f"T{c.table} {c.label}" for c in table.columns]
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * 3 + "---:|" * len(table.columns)]
    for r in table.rows:
        method = f"*{_md_escape(r.method)}* (published)" if r.published else _md_escape(r.method)
        cells = []
        for c in table.columns:
            cell = r.cells[c.key]
            text = _md_escape(cell_text(cell))
            cells.append(f"**{text}**" if cell.best and text else text)
        lines.append("| " + " | ".join([method, _md_escape(r.arch), _md_escape(r.checkpoint)] + cells) + " |")
    lines.append("")
    lines.append(" ".join(f"T{n} = {TABLE_TITLES[n]}." for n, _ in table.groups()))
    lines.append("")
    for line in _notes_block(table, bullet="- "):
        lines.append(_md_escape(line) if line.startswith("- ") else f"**{line}**" if line.endswith(":") else _md_escape(line))
    return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
    """One line per row; each metric has a value column (full precision) and a notes column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = ["method", "arch", "checkpoint", "sha256", "published", "source"]
    for c in table.columns:
        header += [c.key, f"{c.key} notes"]
    writer.writerow(header)
    for r in table.rows:
        line = [r.method, r.arch, r.checkpoint, r.sha256 or "", "yes" if r.published else "no", r.source]
        for c in table.columns:
            cell = r.cells[c.key]
            texts = [f"{MARKS[k]} {MARK_LEGEND[k].split(':')[0]}" for k in cell.marks]
            texts += [table.footnotes[n - 1] for n in cell.notes]
            line += ["" if cell.value is None else repr(cell.value), " | ".join(texts)]
        writer.writerow(line)
    return buf.getvalue()


def render_html(table: Table) -> str:
    """The table as an HTML fragment (`<table>` + legend + footnotes); the report embeds it."""
    from html import escape

    out = ['<table class="cmp">', "<thead>", "<tr><th colspan=\"3\"></th>"]
    for number, span in table.groups():
        out.append(f'<th colspan="{span}" class="group" title="{escape(TABLE_TITLES[number])}">{escape(TABLE_TITLES[number])}</th>')
    out.append("</tr><tr><th>method</th><th>arch</th><th>checkpoint</th>")
    out += [f'<th title="{escape(c.key)}">{escape(c.label)}</th>' for c in table.columns]
    out.append("</tr></thead><tbody>")
    for r in table.rows:
        cls = "published" if r.published else "run"
        method = escape(r.method) + (' <span class="tag">published</span>' if r.published else "")
        out.append(f'<tr class="{cls}" data-sha256="{escape(r.sha256 or "")}" title="{escape(r.source)}">')
        out.append(f"<td>{method}</td><td>{escape(r.arch)}</td><td>{escape(r.checkpoint)}</td>")
        for c in table.columns:
            cell = r.cells[c.key]
            classes = [cell.state] + (["best"] if cell.best else []) + (["marked"] if cell.marks else [])
            if cell.state == "not_published":
                out.append('<td class="not_published"></td>')
                continue
            value = "\u2014" if cell.value is None else f"{cell.value:.1f}"
            marks = f'<span class="marks">{escape(cell.symbols)}</span>' if cell.marks else ""
            refs = "".join(f'<sup><a href="#note-{n}">[{n}]</a></sup>' for n in cell.notes)
            tip = " | ".join(table.footnotes[n - 1] for n in cell.notes)
            out.append(f'<td class="{" ".join(classes)}" title="{escape(tip)}">{value}{marks}{refs}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    if table.legend():
        out.append('<dl class="legend">')
        for sym, text in table.legend():
            out.append(f"<dt>{escape(sym)}</dt><dd>{escape(text)}</dd>")
        out.append("</dl>")
    out.append(
        '<p class="rule">Reference of each column: for each of protocol, engine, dataset manifest and image '
        "variant, the value most rows share (ties: the first results file given). Bold: the best unmarked "
        "value of its column. An em dash is a missing, failed or skipped task (see its note); a blank cell in a "
        "published row means the paper gives no number.</p>"
    )
    if table.references:
        out.append('<ul class="references">')
        out += [f"<li><b>{escape(t)}</b>: {escape(w)}</li>" for t, w in table.references.items()]
        out.append("</ul>")
    if table.footnotes:
        out.append('<ol class="footnotes">')
        out += [f'<li id="note-{i}">{escape(t)}</li>' for i, t in enumerate(table.footnotes, 1)]
        out.append("</ol>")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# Command line.

FORMATS = ("table", "md", "csv", "html")
_EXTENSIONS = {".md": "md", ".markdown": "md", ".csv": "csv", ".html": "html", ".htm": "html", ".txt": "table"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="RESULTS", help="results JSON files and/or folders (searched recursively)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="table (terminal, default), md, csv or html (the self-contained report); "
                        "default: from the -o file's extension, else table")
    parser.add_argument("--published", action="store_true", help="add the VICReg paper's rows (Tables 1, 2 and 5)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of standard output")
    parser.add_argument("--train-log", metavar="PATH", action="append", default=[],
                        help="vicreg-train JSON-lines log to plot in the html report (loss terms, Fig. 4/5 "
                        "diagnostics); repeat for several")
    parser.add_argument("--keep-all", action="store_true",
                        help="one row per results file, instead of merging the results of one checkpoint")
    parser.add_argument("--title", default="vicreg-bench comparison", help="title of the html report")


def main(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt is None:
        fmt = _EXTENSIONS.get(Path(args.output).suffix.lower(), "table") if args.output else "table"
    if not args.paths and not args.published:
        raise UserError("give at least one results JSON or folder (or --published for the paper's rows alone)")
    if args.train_log and fmt != "html":
        raise UserError("--train-log is plotted only in the html report: add --format html")
    runs = load_runs(args.paths, merge=not args.keep_all) if args.paths else []
    table = build_table(runs, published=args.published)
    if fmt == "html":
        from vicreg_bench.report import build_report

        text = build_report(runs, table=table, train_logs=args.train_log, title=args.title)
    else:
        text = {"table": render_text, "md": render_markdown, "csv": render_csv}[fmt](table)
    if args.output:
        from vicreg_bench.fileio import atomic_write_text

        try:
            atomic_write_text(args.output, text)
        except OSError as e:
            raise UserError(f"{args.output}: cannot write ({e.strerror or e})") from None
        print(f"wrote {args.output} ({fmt}, {len(table.rows)} rows)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0

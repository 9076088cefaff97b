"""Build the comparison table: one row per run (plus the paper's rows), cells marked where they differ
from their column's reference or from the paper's protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vicreg_bench.compare.model import MARKS, Cell, Row, Table, TableColumn, _Footnotes, columns
from vicreg_bench.compare.signature import (
    _describe_manifest_diff,
    _describe_protocol_diff,
    _signature,
    majority,
    paper_departures,
)
from vicreg_bench.tasks.catalog import all_tasks


def _checkpoint_name(run: dict) -> str:
    return Path(run["checkpoint"]["path"]).name or run["checkpoint"]["path"]


def published_papers(published: bool | str | list[str], runs: list[dict]) -> list[str]:
    """The papers whose rows to add: True or "auto" = the VICReg paper, plus the ViT papers when a run is a
    ViT; "all" = every paper; else a list of paper keys."""
    from vicreg_bench.models import is_vit
    from vicreg_bench.published import PAPERS

    if published == "all":
        return list(PAPERS)
    if published is True or published == "auto":
        vit = any(is_vit(run["checkpoint"]["arch"]) for run in runs)
        return [k for k in PAPERS if vit or k == "vicreg"]
    return list(published)


def build_table(runs: list[dict], published: bool | str | list[str] = False) -> Table:
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
    every = columns()
    shown = [c for c in every if c.task in ran] or every

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
        rows.append(Row(ck["method"], ck["arch"], label, ck["sha256"], ", ".join(run["_files"]), False, {}, run,
                        ck["method"], ck.get("label")))

    # References per task: the majority value of each signature part among rows that ran it ok.
    references: dict[str, str] = {}
    ref_parts: dict[str, dict[str, tuple[Any, dict]]] = {}
    for task in dict.fromkeys(c.task for c in shown):
        ok = [(i, run["tasks"][task]) for i, run in enumerate(runs) if run["tasks"].get(task, {}).get("status") == "ok"]
        if not ok:
            continue
        sigs = [_signature(e) for _, e in ok]
        parts: dict[str, tuple[Any, dict]] = {}
        for kind in MARKS:
            value = majority([s[kind] for s in sigs])
            first = next(j for j, s in enumerate(sigs) if s[kind] == value)
            parts[kind] = (value, ok[first][1])
        ref_parts[task] = parts
        proto_entry = parts["protocol"][1]
        words = f"protocol '{proto_entry['protocol']['name']}' (hash {proto_entry['protocol']['hash']})"
        if parts["engine"][0]:
            words += f", engine {parts['engine'][0]}"
        if parts["variant"][0]:
            words += f", variant {parts['variant'][0]}"
        if parts["arch"][0]:
            words += f", arch {parts['arch'][0]}"
        ds = parts["dataset"][1].get("dataset") or {}
        if ds:
            words += f", dataset {ds.get('name')} as in {Path(parts['dataset'][1]['_file']).name}"
        references[task] = words

    for row, run in zip(rows, runs):
        for col in shown:
            entry = run["tasks"].get(col.task)
            row.cells[col.key] = _user_cell(col, entry, run, ref_parts.get(col.task), notes)

    if published:
        from vicreg_bench.published import published_rows

        for prow in published_rows(published_papers(published, runs)):
            cells = {}
            for col in shown:
                pv = prow.values.get((col.task, col.metric))
                if pv is None:
                    cells[col.key] = Cell(state="not_published")
                else:
                    cell = Cell(pv.value, state="published")
                    if pv.note:
                        cell.notes.append(notes.add(pv.note))
                    cells[col.key] = cell
            rows.append(Row(prow.method, prow.arch, "published", None, prow.source, True, cells, None, prow.method_id,
                            paper=prow.paper))

    for col in shown:
        candidates = [r.cells[col.key] for r in rows if r.cells[col.key].value is not None and not r.cells[col.key].marks]
        if len(candidates) > 1:
            best = max(c.value for c in candidates)
            for c in candidates:
                c.best = c.value == best

    used = {k for r in rows for c in r.cells.values() for k in c.marks}
    return Table(shown, rows, notes.texts, references, [k for k in MARKS if k in used])


def _user_cell(col: TableColumn, entry: dict | None, run: dict, ref: dict | None, notes: _Footnotes) -> Cell:
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

    spec = all_tasks().get(col.task)
    paper_engine = spec.paper_engine if spec is not None else None
    engine_differs = ref is not None and sig["engine"] != ref["engine"][0]
    if engine_differs:
        mark("engine", f"engine {sig['engine']} vs the column's {ref['engine'][0]} (protocols differ with the engine: "
             f"{_describe_protocol_diff(entry, ref['engine'][1])})")
    elif paper_engine is not None and sig["engine"] not in (None, paper_engine):
        mark("engine", f"engine {sig['engine']}, not {paper_engine} (the engine of the paper's numbers)")
    if ref is not None and not engine_differs and sig["protocol"] != ref["protocol"][0]:
        mark("protocol", "protocol differs from the column's reference: " + _describe_protocol_diff(entry, ref["protocol"][1]))
    departures = paper_departures(col.task, entry)
    if departures:
        mark("protocol", "not the paper's protocol: " + "; ".join(departures))
    if ref is not None and sig["dataset"] != ref["dataset"][0]:
        mark("dataset", "dataset manifest differs from the column's reference: " + _describe_manifest_diff(entry, ref["dataset"][1]))
    if ref is not None and sig["variant"] != ref["variant"][0]:
        mark("variant", f"image variant {sig['variant'] or 'unrecorded'} vs the column's {ref['variant'][0] or 'unrecorded'}")
    if ref is not None and sig["arch"] != ref["arch"][0]:
        mark("arch", f"backbone {sig['arch']} vs the column's {ref['arch'][0]}")
    return cell


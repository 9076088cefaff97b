"""Published numbers to put beside a user's results: the VICReg paper's Tables 1, 2 and 5 (`vicreg`) and the
self-supervised ViT papers DINO, DINOv2, MAE and MoCo v3 (`vit`), typed in as data with their sources.

Each table keeps its own column names and row order. Which task and metric a printed column is comes from
the task registrations (`TaskSpec.published`: paper, table, column -> metric), so this package never names a
task. Within one paper, rows of different tables are joined on the printed method name without its
citation and without "(ours)": "SwAV [7]" (Tables 1 and 5) and "SwAV (w/ multi-crop) [7]" (Tables 1 and 2)
stay separate rows, as in the VICReg paper. A printed column that no registered task claims (MAE's
fine-tuning, say) is left out of the rows.
"""

from __future__ import annotations

from vicreg_bench.published import vicreg, vit
from vicreg_bench.published.tables import Paper, PublishedRow, PublishedTable, PublishedValue, normalise_method

PAPER = vicreg.PAPER
PAPERS: dict[str, Paper] = {p.key: p for p in (vicreg.PAPER, *vit.PAPERS)}
TABLES: tuple[PublishedTable, ...] = vicreg.TABLES  # the VICReg paper's own tables
ALL_TABLES: tuple[PublishedTable, ...] = (*vicreg.TABLES, *vit.TABLES)
METHOD_IDS = {**vicreg.METHOD_IDS, **vit.METHOD_IDS}

__all__ = ["ALL_TABLES", "PAPER", "PAPERS", "TABLES", "Paper", "PublishedRow", "PublishedTable", "PublishedValue",
           "column_keys", "normalise_method", "paper_name", "published_rows", "published_value"]


def paper_name(key: str) -> str:
    """'VICReg paper' for the key 'vicreg'."""
    return PAPERS[key].short if key in PAPERS else key


def column_keys(paper: str = "vicreg") -> dict[tuple[int | str, str], tuple[str, str]]:
    """(table, printed column) -> (task, metric) of one paper, from the task registrations."""
    from vicreg_bench.tasks.catalog import all_tasks

    return {(k.table, k.column): (spec.name, k.metric)
            for spec in all_tasks().values() for k in spec.published if k.paper == paper}


def published_rows(papers: list[str] | None = None) -> list[PublishedRow]:
    """The rows of the given papers (default: all), joined per paper on the printed method name, in
    first-seen order."""
    wanted = list(PAPERS) if papers is None else list(papers)
    unknown = [p for p in wanted if p not in PAPERS]
    if unknown:
        raise KeyError(f"unknown paper(s) {', '.join(unknown)}; expected some of {', '.join(PAPERS)}")
    rows: dict[tuple[str, str], PublishedRow] = {}
    for table in ALL_TABLES:
        paper = table.paper
        if paper.key not in wanted:
            continue
        keys = column_keys(paper.key)
        for printed, values in table.rows:
            if len(values) != len(table.columns):
                raise AssertionError(f"{paper.short} {table.where} row {printed!r}: {len(values)} values for "
                                     f"{len(table.columns)} columns")
            name = normalise_method(printed)
            row = rows.setdefault((paper.key, name), PublishedRow(
                name, METHOD_IDS.get(name), table.row_archs.get(printed, table.arch), [], {}, paper.key, paper.short))
            row.tables.append(table.number)
            row.locations.append(table.where)
            for column, value in zip(table.columns, values):
                key = (table.number, column)
                if value is None or key not in keys:
                    continue
                note = table.cell_notes.get((printed, column)) or table.row_notes.get(printed)
                row.values[keys[key]] = PublishedValue(value, table.number, printed, column, note, paper.key,
                                                       table.where)
    return [rows[k] for k in sorted(rows, key=lambda k: wanted.index(k[0]))]


def published_value(method: str, task: str, metric: str, paper: str = "vicreg") -> float | None:
    """A paper's number for a method (printed name, citation optional), or None when it gives none."""
    wanted = normalise_method(method)
    for row in published_rows([paper]):
        if row.method == wanted:
            pv = row.values.get((task, metric))
            return None if pv is None else pv.value
    raise KeyError(f"no published row for method {method!r} in the {paper_name(paper)}")

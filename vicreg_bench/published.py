"""The VICReg paper's published numbers (Tables 1, 2 and 5), typed in as data with their source.

Source: Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906); the text used here is
`shared/paper/000_9a701a24304f970b.txt`. Every number is a ResNet-50 result (the tables' captions),
in percent. A cell the paper prints as "-" is None here.

Each table keeps the paper's own column names and row order. Which task and metric a printed column is
comes from the task registrations (`TaskSpec.published`: paper, table, column -> metric), so
`vicreg-bench compare --published` can put the paper's rows next to a user's results and this module
never names a task. The rows are kept exactly as printed (method name with its citation); rows of
different tables are joined on the printed method name without its citation and without "(ours)":
"SwAV [7]" (Tables 1 and 5) and "SwAV (w/ multi-crop) [7]" (Tables 1 and 2) stay separate rows, as
in the paper.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PAPER = {
    "key": "vicreg",
    "title": "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
    "authors": "Adrien Bardes, Jean Ponce, Yann LeCun",
    "venue": "ICLR 2022",
    "arxiv": "2105.04906",
    "file": "shared/paper/000_9a701a24304f970b.txt",
}
PAPERS = {PAPER["key"]: PAPER}

ARCH = "resnet50"  # all three tables compare ResNet-50 backbones (table captions)


@dataclass(frozen=True)
class PublishedTable:
    """One table of the paper: its columns (paper name -> task, metric) and its rows as printed."""

    number: int
    caption: str
    # the paper's column names, in its order
    columns: tuple[str, ...]
    # (method as printed, values in column order; None where the paper prints "-")
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]
    # (method as printed, column name) -> the paper's note on that cell
    cell_notes: dict[tuple[str, str], str] = field(default_factory=dict)


TABLE1 = PublishedTable(
    number=1,
    caption="Evaluation on ImageNet: linear classification on frozen ResNet-50 features, and "
    "semi-supervised classification with 1% and 10% of the labels. Top-1 and Top-5 accuracy (%).",
    columns=(
        "Linear Classification Top-1",
        "Linear Classification Top-5",
        "Semi-supervised Top-1 1%",
        "Semi-supervised Top-1 10%",
        "Semi-supervised Top-5 1%",
        "Semi-supervised Top-5 10%",
    ),
    rows=(
        ("Supervised", (76.5, None, 25.4, 56.4, 48.4, 80.4)),
        ("MoCo [22]", (60.6, None, None, None, None, None)),
        ("PIRL [33]", (63.6, None, None, None, 57.2, 83.8)),
        ("CPC v2 [28]", (63.8, None, None, None, None, None)),
        ("CMC [39]", (66.2, None, None, None, None, None)),
        ("SimCLR [8]", (69.3, 89.0, 48.3, 65.6, 75.5, 87.8)),
        ("MoCo v2 [10]", (71.1, None, None, None, None, None)),
        ("SimSiam [11]", (71.3, None, None, None, None, None)),
        ("SwAV [7]", (71.8, None, None, None, None, None)),
        ("InfoMin Aug [40]", (73.0, 91.1, None, None, None, None)),
        ("BYOL [21]", (74.3, 91.6, 53.2, 68.8, 78.4, 89.0)),
        ("SwAV (w/ multi-crop) [7]", (75.3, None, 53.9, 70.2, 78.5, 89.9)),
        ("Barlow Twins [49]", (73.2, 91.0, 55.0, 69.7, 79.2, 89.3)),
        ("VICReg (ours)", (73.2, 91.1, 54.8, 69.5, 79.4, 89.5)),
    ),
)

_BY_US = "the paper's \u2020: number from another method run by the VICReg authors"

TABLE2 = PublishedTable(
    number=2,
    caption="Transfer learning: linear classification on frozen features (Top-1 for Places205 and "
    "iNat18, mAP for the VOC07 SVM); VOC07+12 detection AP50 (Faster R-CNN R50-C4); COCO detection "
    "and instance segmentation AP (Mask R-CNN R50-FPN).",
    columns=(
        "Places205",
        "VOC07",
        "iNat18",
        "VOC07+12",
        "COCO det",
        "COCO seg",
    ),
    rows=(
        ("Supervised", (53.2, 87.5, 46.7, 81.3, 39.0, 35.4)),
        ("MoCo [22]", (46.9, 79.8, 31.5, None, None, None)),
        ("PIRL [33]", (49.8, 81.1, 34.1, None, None, None)),
        ("SimCLR [8]", (52.5, 85.5, 37.2, None, None, None)),
        ("MoCo v2 [10]", (51.8, 86.4, 38.6, 82.5, 39.8, 36.1)),
        ("SimSiam [11]", (None, None, None, 82.4, None, None)),
        ("BYOL [21]", (54.0, 86.6, 47.6, None, 40.4, 37.0)),
        ("SwAV (w/ multi-crop) [7]", (56.7, 88.9, 48.6, 82.6, 41.6, 37.8)),
        # Printed as "Barlow Twins [21]" in Table 2 ([21] is BYOL's reference: a typo in the paper).
        ("Barlow Twins [21]", (54.1, 86.2, 46.5, 82.6, 40.0, 36.7)),
        ("VICReg (ours)", (54.3, 86.6, 47.0, 82.4, 39.4, 36.4)),
    ),
    cell_notes={
        ("BYOL [21]", "COCO det"): _BY_US,
        ("BYOL [21]", "COCO seg"): _BY_US,
        ("Barlow Twins [21]", "COCO det"): _BY_US,
        ("Barlow Twins [21]", "COCO seg"): _BY_US,
    },
)

TABLE5 = PublishedTable(
    number=5,
    caption="k-NN classifiers on ImageNet: Top-1 accuracy with 20 and 200 nearest neighbors.",
    columns=(
        "20-NN",
        "200-NN",
    ),
    rows=(
        ("NPID [43]", (None, 46.5)),
        ("LA [51]", (None, 49.4)),
        ("PCL [30]", (54.5, None)),
        ("BYOL [21]", (66.7, 64.9)),
        ("SwAV [7]", (65.7, 62.7)),
        ("Barlow Twins [49]", (64.8, 62.9)),
        ("VICReg", (64.5, 62.8)),
    ),
)

TABLES: tuple[PublishedTable, ...] = (TABLE1, TABLE2, TABLE5)

# Printed method name (normalised) -> the harness's method name, where the harness has one.
METHOD_IDS = {
    "VICReg": "vicreg",
    "Barlow Twins": "barlowtwins",
    "BYOL": "byol",
    "SimCLR": "simclr",
    "MoCo v2": "moco_v2",
    "SwAV": "swav",
    "SwAV (w/ multi-crop)": "swav",
    "Supervised": "supervised",
}


@dataclass
class PublishedValue:
    value: float
    table: int
    printed_method: str
    paper_column: str
    note: str | None = None
    paper: str = "vicreg"

    def source(self) -> str:
        return f"{paper_name(self.paper)}, Table {self.table}, row '{self.printed_method}', column '{self.paper_column}'"


@dataclass
class PublishedRow:
    """One method's published numbers across the three tables, keyed by (task, metric)."""

    method: str  # printed name without citation, e.g. "Barlow Twins"
    method_id: str | None  # harness method name ("barlowtwins") where there is one
    arch: str
    tables: list[int]
    values: dict[tuple[str, str], PublishedValue]
    paper: str = "vicreg"

    @property
    def source(self) -> str:
        return f"{paper_name(self.paper)}, Table {', '.join(str(t) for t in self.tables)}"


def normalise_method(printed: str) -> str:
    """'Barlow Twins [49]' -> 'Barlow Twins'; 'VICReg (ours)' -> 'VICReg'."""
    name = re.sub(r"\s*\[\d+\]", "", printed)
    name = name.replace("(ours)", "")
    return " ".join(name.split())


def paper_name(key: str) -> str:
    """'VICReg paper' for the key 'vicreg'."""
    return f"{PAPERS[key]['title'].split(':')[0]} paper" if key in PAPERS else key


def column_keys(paper: str = "vicreg") -> dict[tuple[int, str], tuple[str, str]]:
    """(table, printed column) -> (task, metric), from the task registrations."""
    from vicreg_bench.tasks.catalog import all_tasks

    return {(k.table, k.column): (spec.name, k.metric)
            for spec in all_tasks().values() for k in spec.published if k.paper == paper}


def published_rows() -> list[PublishedRow]:
    """The paper's rows of Tables 1, 2 and 5, joined on the printed method name, in first-seen order.
    A printed column that no registered task claims is left out."""
    keys = column_keys(PAPER["key"])
    rows: dict[str, PublishedRow] = {}
    for table in TABLES:
        for printed, values in table.rows:
            if len(values) != len(table.columns):
                raise AssertionError(f"Table {table.number} row {printed!r}: {len(values)} values for {len(table.columns)} columns")
            name = normalise_method(printed)
            row = rows.setdefault(name, PublishedRow(name, METHOD_IDS.get(name), ARCH, [], {}, PAPER["key"]))
            row.tables.append(table.number)
            for column, value in zip(table.columns, values):
                if value is None or (table.number, column) not in keys:
                    continue
                task, metric = keys[(table.number, column)]
                row.values[(task, metric)] = PublishedValue(
                    value, table.number, printed, column, table.cell_notes.get((printed, column)), PAPER["key"]
                )
    return list(rows.values())


def published_value(method: str, task: str, metric: str) -> float | None:
    """The paper's number for a method (printed name, citation optional), or None when it gives none."""
    wanted = normalise_method(method)
    for row in published_rows():
        if row.method == wanted:
            pv = row.values.get((task, metric))
            return None if pv is None else pv.value
    raise KeyError(f"no published row for method {method!r}")

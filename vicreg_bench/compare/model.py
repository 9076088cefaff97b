"""The comparison table's model: its columns (from the task registry), the marks, cells, rows and table."""

from __future__ import annotations

from dataclasses import dataclass, field

from vicreg_bench.tasks.catalog import all_tasks


@dataclass(frozen=True)
class TableColumn:
    """One metric column: a registered task's `Column`, placed in the paper's Table 1 / 2 / 5 layout."""

    task: str
    metric: str
    table: int | str  # the paper's table (1, 2 or 5) this column belongs to, or a new task's own group
    label: str  # short header

    @property
    def key(self) -> str:
        return f"{self.task}.{self.metric}"


def columns() -> list[TableColumn]:
    """Every registered task's columns, in the paper's left-to-right order."""
    found = [(c.order, TableColumn(spec.name, c.metric, c.group, c.label))
             for spec in all_tasks().values() for c in spec.columns]
    return [col for _, col in sorted(found, key=lambda p: p[0])]


TABLE_TITLES = {
    1: "Table 1: ImageNet linear and semi-supervised",
    2: "Table 2: transfer (linear, detection)",
    5: "Table 5: ImageNet k-NN",
}


def group_title(group: int | str) -> str:
    """A column group's title: the paper table's ("Table 1: ..."), or a new task's own group name."""
    return TABLE_TITLES.get(group, str(group)) if isinstance(group, int) else str(group)


def group_tag(group: int | str) -> str:
    """The short form in headers: "T1" for the paper's Table 1, else the group name."""
    return f"T{group}" if isinstance(group, int) else str(group)


# What the marks mean, in the order they are shown.
MARKS: dict[str, str] = {"protocol": "\u2020", "engine": "\u2021", "dataset": "\u00a7", "variant": "\u00b6",
                         "arch": "\u2016"}
MARK_LEGEND: dict[str, str] = {
    "protocol": "protocol: differs from the column's reference protocol, or is not the paper's protocol "
    "(the `fast` linear protocol, settings scaled down with --epochs and the like, or other paper settings)",
    "engine": "detection engine: differs from the column's reference engine, or is not detectron2 "
    "(the engine behind the paper's numbers)",
    "dataset": "dataset: another image list than the column's reference (dataset manifest sha256 differs)",
    "variant": "image variant: another image preprocessing variant than the column's reference "
    "(VOC07 SVM: squash = VISSL's Resize((224, 224)), center_crop = the paper text's center crop)",
    "arch": "architecture: another backbone than the column's reference (e.g. a ViT among ResNet-50s)",
}

# Setting names a results file may record a paper setting under (TaskSpec.paper_settings holds the values).
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
    label: str | None = None  # the name the user gave the backbone (run --label)
    paper: str | None = None  # a published row's paper key

    @property
    def name(self) -> str:
        """What the table calls the row: the user's label, else the method."""
        return self.label or self.method


@dataclass
class Table:
    columns: list[TableColumn]
    rows: list[Row]
    footnotes: list[str]  # footnote n is footnotes[n - 1]
    references: dict[str, str]  # task -> what its reference is, in words
    marks_used: list[str]  # mark kinds that occur in the table, legend order

    def legend(self) -> list[tuple[str, str]]:
        return [(MARKS[k], MARK_LEGEND[k]) for k in self.marks_used]

    def groups(self) -> list[tuple[int | str, int]]:
        """(paper table number, number of consecutive columns) for the header's group row."""
        out: list[tuple[int | str, int]] = []
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


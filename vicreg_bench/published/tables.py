"""How a published table is typed in: the paper, the columns as printed, the rows as printed, and the
values as the harness reads them (a `PublishedRow` per method, keyed by task and metric)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paper:
    key: str  # what task registrations name (`PublishedKey.paper`)
    title: str
    authors: str
    venue: str
    arxiv: str
    short: str  # how tables and footnotes name it, e.g. "DINO paper"


@dataclass(frozen=True)
class PublishedTable:
    """One table of a paper: its columns as printed, its rows as printed, and where the numbers come from."""

    paper: Paper
    number: int | str  # the paper's table number, or a short name where the numbers are not in a numbered table
    caption: str
    columns: tuple[str, ...]  # the printed column names, in order
    rows: tuple[tuple[str, tuple[float | None, ...]], ...]  # (method as printed, values; None where "-")
    arch: str = "resnet50"  # the backbone of every row, unless `row_archs` says otherwise
    row_archs: dict[str, str] = field(default_factory=dict)  # method as printed -> timm / torchvision arch
    cell_notes: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, column) -> note
    row_notes: dict[str, str] = field(default_factory=dict)  # method as printed -> note on every cell of it
    location: str = ""  # where the numbers are printed, when not in a numbered table

    @property
    def where(self) -> str:
        return f"Table {self.number}" if isinstance(self.number, int) else self.location or str(self.number)


@dataclass
class PublishedValue:
    value: float
    table: int | str
    printed_method: str
    paper_column: str
    note: str | None = None
    paper: str = "vicreg"
    where: str = ""

    def source(self) -> str:
        return f"{self.paper} {self.where}, row '{self.printed_method}', column '{self.paper_column}'"


@dataclass
class PublishedRow:
    """One method's published numbers in one paper, keyed by (task, metric)."""

    method: str  # printed name without citation, e.g. "Barlow Twins"
    method_id: str | None  # harness method name ("barlowtwins") where there is one
    arch: str
    tables: list[int | str]
    values: dict[tuple[str, str], PublishedValue]
    paper: str = "vicreg"  # the paper's key
    paper_short: str = "VICReg paper"

    locations: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        return f"{self.paper_short}, {', '.join(self.locations)}"


def normalise_method(printed: str) -> str:
    """'Barlow Twins [49]' -> 'Barlow Twins'; 'VICReg (ours)' -> 'VICReg'."""
    name = re.sub(r"\s*\[\d+\]", "", printed)
    name = name.replace("(ours)", "")
    return " ".join(name.split())

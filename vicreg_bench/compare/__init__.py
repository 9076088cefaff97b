"""Several results side by side, in the layout of the VICReg paper's Tables 1, 2 and 5, with every cell
measured differently from its column's reference (protocol, engine, dataset manifest, image variant)
marked and explained; `vicreg-bench compare` (`vicreg_bench.cli.compare`) documents the rules.

Modules: `runs` (reading results files, one merged run per checkpoint), `model` (columns from the task
registry, cells, rows, marks), `signature` (what a cell ran and how it departs from the paper), `table`
(building the table), `render` (terminal, Markdown, CSV, HTML fragment), `charts` and `report` (the
self-contained HTML report).
"""

from vicreg_bench.compare.model import MARKS, Cell, Row, Table, TableColumn, columns
from vicreg_bench.compare.render import cell_text, render_csv, render_html, render_markdown, render_text
from vicreg_bench.compare.runs import load_runs
from vicreg_bench.compare.table import build_table

__all__ = ["MARKS", "Cell", "Row", "Table", "TableColumn", "build_table", "cell_text", "columns", "load_runs",
           "render_csv", "render_html", "render_markdown", "render_text"]

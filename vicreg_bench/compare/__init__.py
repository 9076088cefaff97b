"""`compare`: several results side by side, in the layout of the VICReg paper's Tables 1, 2 and 5.

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

Modules: `runs` (reading results files, one merged run per checkpoint), `model` (columns from the task
registry, cells, rows, marks), `signature` (what a cell ran and how it departs from the paper), `table`
(building the table), `render` (terminal, Markdown, CSV, HTML fragment), `charts` and `report` (the
self-contained HTML report). `vicreg-bench compare` is `vicreg_bench.cli.compare`.
"""

from vicreg_bench.compare.model import MARKS, Cell, Row, Table, TableColumn, columns
from vicreg_bench.compare.render import cell_text, render_csv, render_html, render_markdown, render_text
from vicreg_bench.compare.runs import load_runs
from vicreg_bench.compare.table import build_table

__all__ = ["MARKS", "Cell", "Row", "Table", "TableColumn", "build_table", "cell_text", "columns", "load_runs",
           "render_csv", "render_html", "render_markdown", "render_text"]

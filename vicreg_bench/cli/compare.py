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
import sys
from pathlib import Path

from vicreg_bench.compare.render import render_csv, render_markdown, render_text
from vicreg_bench.compare.runs import load_runs
from vicreg_bench.compare.table import build_table
from vicreg_bench.errors import UserError

FORMATS = ("table", "md", "csv", "html")
_EXTENSIONS = {".md": "md", ".markdown": "md", ".csv": "csv", ".html": "html", ".htm": "html", ".txt": "table"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="RESULTS", help="results JSON files and/or folders (searched recursively)")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="table (terminal, default), md, csv or html (the self-contained report); "
                        "default: from the -o file's extension, else table")
    parser.add_argument("--published", nargs="?", const="auto", default=None, metavar="PAPERS",
                        help="add published rows: alone, the VICReg paper's Tables 1, 2 and 5 (and the DINO, "
                        "DINOv2, MAE and MoCo v3 ViT rows when a run is a ViT); `all`, or a comma-separated list "
                        "of vicreg, dino, dinov2, mae, moco_v3")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of standard output")
    parser.add_argument("--train-log", metavar="PATH", action="append", default=[],
                        help="vicreg-train JSON-lines log to plot in the html report (loss terms, Fig. 4/5 "
                        "diagnostics); repeat for several")
    parser.add_argument("--keep-all", action="store_true",
                        help="one row per results file, instead of merging the results of one checkpoint")
    parser.add_argument("--title", default="vicreg-bench comparison", help="title of the html report")


def parse_published(value: str | None) -> bool | str | list[str]:
    """--published: absent -> no rows; alone -> auto; all; or paper keys."""
    from vicreg_bench.published import PAPERS

    if value is None:
        return False
    if value in ("auto", "all"):
        return value
    keys = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PAPERS]
    if unknown or not keys:
        raise UserError(f"--published {value}: unknown paper(s) {', '.join(unknown) or '(none)'}; expected all, or "
                        f"some of {', '.join(PAPERS)}")
    return keys


def main(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt is None:
        fmt = _EXTENSIONS.get(Path(args.output).suffix.lower(), "table") if args.output else "table"
    if not args.paths and not args.published:
        raise UserError("give at least one results JSON or folder (or --published for the paper's rows alone)")
    if args.train_log and fmt != "html":
        raise UserError("--train-log is plotted only in the html report: add --format html")
    runs = load_runs(args.paths, merge=not args.keep_all) if args.paths else []
    table = build_table(runs, published=parse_published(args.published))
    if fmt == "html":
        from vicreg_bench.compare.report import build_report

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

"""The HTML report of `vicreg-bench compare --format html`: one self-contained file that opens offline.

Everything is inline: CSS in a <style> element, charts as base64 PNG data URIs drawn with matplotlib's
Agg backend, and a few lines of script that record, on <body>, how many images decoded (the browser
test reads it). The page references no URL at all; `external_references` checks that before writing.

Sections: the comparison table (vicreg_bench.compare.render), bar charts per task, k-NN accuracy against k,
per-class VOC07 SVM AP, and, for each `--train-log`, the VICReg loss terms and the diagnostics of the
paper's Fig. 4 (standard deviation of representations / projections) and Fig. 5 (average correlation
coefficient) over training. The run details (checkpoint, environment, task status and timing) close it.
"""

from __future__ import annotations

import datetime as _dt
import re
from html import escape
from pathlib import Path
from typing import Iterable

from vicreg_bench import __version__
from vicreg_bench.compare.charts import (
    img,
    knn_charts,
    per_class_charts,
    task_bar_charts,
    task_title,
    train_diagnostics_chart,
    train_loss_chart,
)
from vicreg_bench.compare.model import MARKS, Table
from vicreg_bench.compare.render import render_html
from vicreg_bench.compare.table import build_table
from vicreg_bench.trainlog import read_train_log

CSS = """
body { font: 14px/1.45 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; padding: 18px 28px 40px; max-width: 1500px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.meta { color: #555; font-size: 12px; }
table.cmp { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
table.cmp th, table.cmp td { border: 1px solid #d5d5d5; padding: 3px 6px; }
table.cmp th { background: #f2f4f7; font-weight: 600; }
table.cmp th.group { background: #e4e9f0; }
table.cmp td { text-align: right; white-space: nowrap; }
table.cmp td:nth-child(-n+3) { text-align: left; }
table.cmp tr.published td { background: #fafafa; color: #555; font-style: italic; }
table.cmp td.best { font-weight: 700; }
table.cmp td.marked { background: #fff6e0; }
table.cmp td.failed, table.cmp td.skipped, table.cmp td.missing, table.cmp td.no_metric { color: #a33; background: #fbeeee; }
.marks { color: #b35c00; font-weight: 700; } sup a { color: #36c; text-decoration: none; font-size: 10px; }
.tag { font-size: 10px; background: #ddd; border-radius: 3px; padding: 0 4px; font-style: normal; }
dl.legend { display: grid; grid-template-columns: 24px 1fr; gap: 2px 6px; font-size: 12px; margin: 6px 0; }
dl.legend dt { font-weight: 700; color: #b35c00; } dl.legend dd { margin: 0; }
p.rule, ul.references, ol.footnotes { font-size: 12px; color: #333; }
ol.footnotes li, ul.references li { margin: 1px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.charts figure { margin: 0; border: 1px solid #e3e3e3; border-radius: 4px; padding: 6px; background: #fff; }
img.chart { display: block; max-width: 100%; }
table.details { border-collapse: collapse; font-size: 12px; }
table.details td, table.details th { border: 1px solid #e0e0e0; padding: 2px 6px; text-align: left; vertical-align: top; }
details { margin: 6px 0; } summary { cursor: pointer; font-weight: 600; }
.empty { color: #777; font-style: italic; }
"""

# Marks on <body> how many images decoded, once the page loaded (tests read it from the dumped DOM).
READY_SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.setAttribute('data-images-total', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-report-ready', ok === imgs.length ? 'yes' : 'no');
});
"""

_REF_ATTR = re.compile(r"""\b(src|href|srcset|action|poster|background|formaction|xlink:href)\s*=\s*(["'])(.*?)\2""", re.I | re.S)
_CSS_URL = re.compile(r"""url\(\s*(["']?)(.*?)\1\s*\)""", re.I)


def external_references(html: str) -> list[str]:
    """Every reference in the page that is neither a data: URI nor an in-page #anchor (must be none)."""
    bad = []
    for match in _REF_ATTR.finditer(html):
        value = match.group(3).strip()
        if not (value.startswith("data:") or value.startswith("#")):
            bad.append(f"{match.group(1)}={value[:80]}")
    for match in _CSS_URL.finditer(html):
        if not match.group(2).strip().startswith("data:"):
            bad.append(f"url({match.group(2)[:80]})")
    if re.search(r"@import", html, re.I):
        bad.append("@import")
    return bad


def _run_details(table: Table) -> str:
    out = []
    for row in table.rows:
        run = row.run
        if run is None:
            continue
        ck, env, tool = run["checkpoint"], run["environment"], run["tool"]
        head = (
            f"<tr><th>checkpoint</th><td>{escape(ck['path'])}<br>sha256 {escape(ck['sha256'])}<br>"
            f"format {escape(ck['format'])}, method {escape(ck['method'])}, arch {escape(ck['arch'])}"
            f"{', label ' + escape(ck['label']) if ck.get('label') else ''}</td></tr>"
            f"<tr><th>results</th><td>{'<br>'.join(escape(f) for f in run['_files'])}</td></tr>"
            f"<tr><th>run</th><td>suite {escape(run['suite'])}, protocol {escape(run['protocol'])}, created "
            f"{escape(run['created'])}, vicreg-bench {escape(tool['version'])} ({escape(str(tool.get('git_commit') or 'no git commit'))})</td></tr>"
            f"<tr><th>environment</th><td>python {escape(env['python'])}, torch {escape(env['torch'])}, torchvision "
            f"{escape(env['torchvision'])}, CUDA {escape(str(env['cuda']))}, device {escape(env['device'])}"
            f"{', ' + escape(', '.join(env['gpu_names'])) if env['gpu_names'] else ''}, {env['num_processes']} process(es)</td></tr>"
        )
        tasks = ["<tr><th>task</th><th>status</th><th>protocol</th><th>engine</th><th>dataset</th><th>seconds</th><th>note</th></tr>"]
        for name, e in run["tasks"].items():
            ds = e.get("dataset") or {}
            images = ", ".join(f"{k} {v}" for k, v in (ds.get("num_images") or {}).items())
            secs = "" if e.get("seconds") is None else f"{e['seconds']:.0f}"
            tasks.append(
                f"<tr><td>{escape(name)}</td><td>{escape(e['status'])}</td><td>{escape(e['protocol']['name'])} "
                f"<span class='meta'>{escape(e['protocol']['hash'])}</span></td><td>{escape(str(e.get('engine') or ''))}</td>"
                f"<td>{escape(str(ds.get('name', '')))} {escape(images)}</td><td>{secs}</td>"
                f"<td>{escape(e.get('reason') or '')}</td></tr>"
            )
        out.append(
            f"<details><summary>{escape(row.name)} {escape(row.arch)} {escape(row.checkpoint)}</summary>"
            f"<table class='details'>{head}</table><table class='details'>{''.join(tasks)}</table></details>"
        )
    return "\n".join(out) or '<p class="empty">no results given</p>'


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def _figure_html(uri: str, caption: str) -> str:
    return f"<figure>{img(uri, caption)}</figure>"


def build_report(
    runs: list[dict],
    *,
    table: Table | None = None,
    published: bool | str | list[str] = False,
    train_logs: Iterable[str | Path] = (),
    title: str = "vicreg-bench comparison",
) -> str:
    """The whole report as one HTML string (runs as from `compare.load_runs`)."""
    table = table if table is not None else build_table(runs, published=published)
    logs = [read_train_log(p) for p in train_logs]
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

    bars = task_bar_charts(table)
    knn = knn_charts(table)
    per_class = per_class_charts(table)
    sections = [_section("Comparison", render_html(table), "comparison")]
    sections.append(_section(
        "Results per task",
        '<div class="charts">' + "".join(_figure_html(uri, f"{task_title(task)}: bar chart") for task, uri in bars) + "</div>"
        if bars else '<p class="empty">no numbers to plot</p>',
        "bars",
    ))
    sections.append(_section(
        "k-NN accuracy against k",
        '<div class="charts">' + "".join(_figure_html(uri, f"{task_title(task)}: accuracy against k") for task, uri in knn)
        + "</div>" if knn else '<p class="empty">no k-NN results</p>',
        "knn",
    ))
    sections.append(_section(
        "AP per class",
        '<div class="charts">' + "".join(_figure_html(uri, f"{task_title(task)}: AP per class") for task, uri in per_class)
        + "</div>" if per_class else '<p class="empty">no results with per-class AP</p>',
        "per-class",
    ))
    if logs:
        loss = train_loss_chart(logs)
        diag = train_diagnostics_chart(logs)
        notes = "".join(
            f"<li>{escape(str(log.path))}: {len(log.steps)} step records, {len(log.epochs)} epoch records"
            + (f", {log.bad_lines} unreadable line(s) skipped" if log.bad_lines else "") + "</li>"
            for log in logs
        )
        body = f"<ul class='meta'>{notes}</ul><div class='charts'>"
        body += _figure_html(loss, "training loss terms") if loss else '<p class="empty">no step records with a loss</p>'
        body += _figure_html(diag, "Fig. 4/5 diagnostics") if diag else '<p class="empty">no per-epoch diagnostics</p>'
        body += "</div><p class='meta'>Fig. 4 of the paper: mean over dimensions of the per-dimension standard " \
                "deviation of l2-normalised representations and projections (a spread-out embedding reaches " \
                "1/sqrt(d)). Fig. 5 / Eq. 10: average squared off-diagonal correlation of the representations.</p>"
        sections.append(_section("Training", body, "training"))
    sections.append(_section("Runs", _run_details(table), "runs"))

    marks = ", ".join(f"{sym} {kind}" for kind, sym in MARKS.items())
    html = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="vicreg-bench {escape(__version__)}">
<title>{escape(title)}</title>
<style>{CSS}</style>
<script>{READY_SCRIPT}</script>
</head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">{len([r for r in table.rows if not r.published])} checkpoint(s){", with published rows" if any(r.published for r in table.rows) else ""}.
Generated {escape(created)} by vicreg-bench {escape(__version__)}. Marks: {escape(marks)} (see the legend under the table).</p>
{chr(10).join(sections)}
</body>
</html>
"""
    bad = external_references(html)
    if bad:  # never write a page that needs the network
        raise AssertionError("report would reference external resources: " + ", ".join(bad[:5]))
    return html

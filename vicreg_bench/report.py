"""The HTML report of `vicreg-bench compare --format html`: one self-contained file that opens offline.

Everything is inline: CSS in a <style> element, charts as base64 PNG data URIs drawn with matplotlib's
Agg backend, and a few lines of script that record, on <body>, how many images decoded (the browser
test reads it). The page references no URL at all; `external_references` checks that before writing.

Sections: the comparison table (vicreg_bench.compare), bar charts per task, k-NN accuracy against k,
per-class VOC07 SVM AP, and, for each `--train-log`, the VICReg loss terms and the diagnostics of the
paper's Fig. 4 (standard deviation of representations / projections) and Fig. 5 (average correlation
coefficient) over training. The run details (checkpoint, environment, task status and timing) close it.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

from vicreg_bench import __version__
from vicreg_bench.compare import MARKS, Table, build_table, render_html
from vicreg_bench.errors import UserError

# ---------------------------------------------------------------------------------------------------
# Training logs (vicreg-train's <exp-dir>/log.jsonl; format in docs/training.md).

LOSS_TERMS = ("loss", "invariance", "variance", "covariance")
STD_KEYS = ("std_repr", "std_proj")  # Fig. 4: per-dimension std of l2-normalised y and z
CORR_KEYS = ("corr_repr", "corr_proj")  # Fig. 5 / Eq. 10: average correlation coefficient


@dataclass
class TrainLog:
    path: Path
    steps: list[dict] = field(default_factory=list)  # records with a loss
    epochs: list[dict] = field(default_factory=list)  # records with diagnostics
    start: dict | None = None  # the run's settings, when the log has a start record
    bad_lines: int = 0

    @property
    def label(self) -> str:
        return self.path.parent.name or self.path.name

    def proj_dim(self) -> int | None:
        """Output dimension of the projector (for Fig. 4's 1/sqrt(d) line), when the log records it."""
        cfg = self.start or {}
        args = cfg.get("args") if isinstance(cfg.get("args"), dict) else cfg
        mlp = args.get("mlp") if isinstance(args, dict) else None
        if isinstance(mlp, str) and re.fullmatch(r"\d+(-\d+)*", mlp):
            return int(mlp.split("-")[-1])
        for key in ("proj_dim", "embedding_dim"):
            if isinstance(args, dict) and isinstance(args.get(key), int):
                return args[key]
        return None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def read_train_log(path: str | Path) -> TrainLog:
    """Parse a JSON-lines training log. Records are dicts; a `type` field (start/step/epoch/...) is used
    when present, else a record with `loss` is a step and one with std_/corr_ keys an epoch summary.
    A truncated or garbled line (a run killed mid-write) is counted and skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--train-log {path}: no such file")
    log = TrainLog(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise UserError(f"--train-log {path}: cannot read ({e.strerror})") from None
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.bad_lines += 1
            continue
        if not isinstance(rec, dict):
            log.bad_lines += 1
            continue
        kind = rec.get("type")
        if kind == "start":
            log.start = rec
            continue
        if kind in (None, "step") and _num(rec.get("loss")) is not None:
            log.steps.append(rec)
        if kind in (None, "epoch") and any(_num(rec.get(k)) is not None for k in STD_KEYS + CORR_KEYS):
            log.epochs.append(rec)
    # a resumed run appends to the same file and repeats steps after its last checkpoint: keep the last
    log.steps = list({_num(r.get("step")) if _num(r.get("step")) is not None else -i - 1: r
                      for i, r in enumerate(log.steps)}.values())
    log.epochs = list({_num(r.get("epoch")) if _num(r.get("epoch")) is not None else -i - 1: r
                       for i, r in enumerate(log.epochs)}.values())
    log.steps.sort(key=lambda r: _num(r.get("step")) or 0.0)
    log.epochs.sort(key=lambda r: _num(r.get("epoch")) or 0.0)
    if not log.steps and not log.epochs:
        raise UserError(
            f"--train-log {path}: no training records found (expected JSON lines with 'loss' per step "
            "and std_repr/std_proj/corr_repr/corr_proj per epoch, as vicreg-train writes)"
        )
    return log


# ---------------------------------------------------------------------------------------------------
# Charts.

_USER_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
_PUBLISHED_COLOR = "#9a9a9a"


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig


def _png(fig) -> str:
    """The figure as a data URI; no metadata (matplotlib would write its URL into the PNG)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _img(uri: str, alt: str, cls: str = "chart") -> str:
    return f'<img class="{cls}" alt="{escape(alt)}" src="{uri}">'


def _row_name(row) -> str:
    return f"{row.method} (paper)" if row.published else f"{row.method} {row.arch} {row.checkpoint}"


def _colors(table: Table) -> dict[int, str]:
    out, u = {}, 0
    for i, row in enumerate(table.rows):
        if row.published:
            out[i] = _PUBLISHED_COLOR
        else:
            out[i] = _USER_COLORS[u % len(_USER_COLORS)]
            u += 1
    return out


def _charted_rows(table: Table) -> list[int]:
    """Rows the charts show: every run, and of the paper's rows VICReg's and those of the runs' methods."""
    methods = {r.method_id for r in table.rows if not r.published} | {"vicreg"}
    return [i for i, r in enumerate(table.rows) if not r.published or r.method_id in methods]


def task_bar_charts(table: Table) -> list[tuple[str, str]]:
    """One horizontal bar chart per task: a bar per row and metric; marked cells hatched, labelled."""
    colors = _colors(table)
    charts = []
    shown = _charted_rows(table)
    for task in dict.fromkeys(c.task for c in table.columns):
        cols = [c for c in table.columns if c.task == task]
        rows = [(i, table.rows[i]) for i in shown if any(table.rows[i].cells[c.key].value is not None for c in cols)]
        if not rows:
            continue
        n, m = len(rows), len(cols)
        fig = _figure(4.9, 0.7 + 0.26 * n * m + 0.12 * n)
        ax = fig.add_subplot(1, 1, 1)
        height = 0.8 / m
        yticks, ylabels = [], []
        vmax = 0.0
        for y, (i, row) in enumerate(rows):
            for j, col in enumerate(cols):
                cell = row.cells[col.key]
                pos = -(y + j * height)
                if cell.value is None:
                    continue
                vmax = max(vmax, cell.value)
                ax.barh(pos, cell.value, height=height * 0.92, color=colors[i], alpha=0.55 + 0.45 * (j == 0),
                        hatch="//" if cell.marks else None, edgecolor="white" if not cell.marks else "black", linewidth=0.4)
                label = f"{cell.value:.1f}{cell.symbols}" + (f"  {col.label}" if m > 1 else "")
                ax.text(cell.value, pos, " " + label, va="center", fontsize=7)
            yticks.append(-(y + (m - 1) * height / 2))
            ylabels.append(_row_name(row)[:48])
        ax.set_yticks(yticks)
        ax.set_yticklabels(ylabels, fontsize=7)
        ax.set_xlim(0, max(1.0, vmax) * 1.25)
        ax.set_xlabel("%", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(task + ": " + ", ".join(c.label for c in cols), fontsize=9)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        charts.append((task, _png(fig)))
    return charts


_K_METRIC = re.compile(r"^k(\d+)_top([15])$")


def knn_chart(table: Table) -> str | None:
    """k-NN top-1 (solid) and top-5 (dashed) against k for every run; the paper's Table 5 as points."""
    colors = _colors(table)
    series = []
    for i, row in enumerate(table.rows):
        if row.published or row.run is None:
            continue
        entry = row.run["tasks"].get("imagenet_knn")
        if not entry or entry.get("status") != "ok":
            continue
        by_top: dict[str, list[tuple[int, float]]] = {"1": [], "5": []}
        for name, value in entry["metrics"].items():
            match = _K_METRIC.match(name)
            if match and _num(value) is not None:
                by_top[match.group(2)].append((int(match.group(1)), float(value)))
        if by_top["1"] or by_top["5"]:
            series.append((i, row, by_top))
    if not series:
        return None
    fig = _figure(5.4, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    ks: set[int] = set()
    for i, row, by_top in series:
        for top, style in (("1", "-"), ("5", "--")):
            pts = sorted(by_top[top])
            if pts:
                ks.update(k for k, _ in pts)
                ax.plot([k for k, _ in pts], [v for _, v in pts], style, marker="o", ms=3.5, color=colors[i],
                        label=f"{_row_name(row)[:40]} top-{top}")
    pub = [(i, table.rows[i]) for i in _charted_rows(table) if table.rows[i].published]
    for n, (i, row) in enumerate(pub):
        pts = [(k, row.cells.get(f"imagenet_knn.k{k}_top1")) for k in (20, 200)]
        pts = [(k, c.value) for k, c in pts if c is not None and c.value is not None]
        if pts:
            ks.update(k for k, _ in pts)
            ax.plot([k for k, _ in pts], [v for _, v in pts], ":", marker="s", ms=3,
                    color=("#555", "#999", "#bbb")[n % 3], label=f"{row.method} (paper Table 5) top-1")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ks))
    ax.set_xticklabels([str(k) for k in sorted(ks)], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("k (neighbours)", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("ImageNet k-NN accuracy against k (T = 0.07)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def voc_per_class_chart(table: Table) -> str | None:
    """Per-class AP of the VOC07 SVM (all 20 classes), one bar per run and class."""
    colors = _colors(table)
    runs = []
    for i, row in enumerate(table.rows):
        entry = (row.run or {}).get("tasks", {}).get("voc07_svm") if not row.published else None
        if entry and entry.get("status") == "ok" and isinstance(entry["metrics"].get("per_class_AP"), dict):
            runs.append((i, row, entry["metrics"]["per_class_AP"]))
    if not runs:
        return None
    classes = sorted({c for _, _, ap in runs for c in ap})
    n = len(runs)
    fig = _figure(4.9, 0.6 + len(classes) * (0.12 + 0.13 * n))
    ax = fig.add_subplot(1, 1, 1)
    height = 0.8 / n
    for j, (i, row, ap) in enumerate(runs):
        ys = [-(c + j * height) for c in range(len(classes))]
        vals = [_num(ap.get(name)) or 0.0 for name in classes]
        ax.barh(ys, vals, height=height * 0.9, color=colors[i], label=_row_name(row)[:48])
    ax.set_yticks([-(c + (n - 1) * height / 2) for c in range(len(classes))])
    ax.set_yticklabels(classes, fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title("VOC07 linear SVM: average precision per class", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def _xs(records: list[dict], key: str = "step") -> list[float]:
    xs = [_num(r.get(key)) for r in records]
    return [x if x is not None else float(i) for i, x in enumerate(xs)]


def train_loss_chart(logs: Sequence[TrainLog]) -> str | None:
    """The loss and its three terms (invariance, variance, covariance) and the learning rate per step."""
    if not any(log.steps for log in logs):
        return None
    keys = [k for k in LOSS_TERMS + ("lr",) if any(_num(r.get(k)) is not None for log in logs for r in log.steps)]
    cols = 3
    rows = math.ceil(len(keys) / cols)
    fig = _figure(9.0, 2.3 * rows)
    for n, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, n + 1)
        for j, log in enumerate(logs):
            recs = [r for r in log.steps if _num(r.get(key)) is not None]
            if recs:
                ax.plot(_xs(recs), [float(r[key]) for r in recs], lw=1, color=_USER_COLORS[j % len(_USER_COLORS)],
                        label=log.label)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if n == 0 and len(logs) > 1:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


def train_diagnostics_chart(logs: Sequence[TrainLog]) -> str | None:
    """The paper's Fig. 4 (std of l2-normalised representations / projections, with 1/sqrt(d) for the
    projections when the log records d) and Fig. 5 (average correlation coefficient), per epoch."""
    if not any(log.epochs for log in logs):
        return None
    panels = [
        ("std_repr", "Fig. 4 left: std of representations"),
        ("std_proj", "Fig. 4 right: std of projections"),
        ("corr_repr", "Fig. 5: avg. correlation, representations"),
        ("corr_proj", "avg. correlation, projections"),
    ]
    panels = [(k, t) for k, t in panels if any(_num(r.get(k)) is not None for log in logs for r in log.epochs)]
    fig = _figure(9.0, 2.5 * math.ceil(len(panels) / 2))
    for n, (key, title) in enumerate(panels):
        ax = fig.add_subplot(math.ceil(len(panels) / 2), 2, n + 1)
        for j, log in enumerate(logs):
            recs = [r for r in log.epochs if _num(r.get(key)) is not None]
            if recs:
                ax.plot(_xs(recs, "epoch"), [float(r[key]) for r in recs], marker="o", ms=3, lw=1,
                        color=_USER_COLORS[j % len(_USER_COLORS)], label=log.label)
            d = log.proj_dim()
            if key == "std_proj" and d:
                ax.axhline(1 / math.sqrt(d), ls="--", lw=0.8, color="#555", label=f"1/sqrt({d})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0] and (len(logs) > 1 or key == "std_proj"):
            ax.legend(fontsize=6)
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------------------------------------------
# The page.

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
            f"format {escape(ck['format'])}, method {escape(ck['method'])}, arch {escape(ck['arch'])}</td></tr>"
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
            f"<details><summary>{escape(row.method)} {escape(row.arch)} {escape(row.checkpoint)}</summary>"
            f"<table class='details'>{head}</table><table class='details'>{''.join(tasks)}</table></details>"
        )
    return "\n".join(out) or '<p class="empty">no results given</p>'


def _section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def _figure_html(uri: str, caption: str) -> str:
    return f"<figure>{_img(uri, caption)}</figure>"


def build_report(
    runs: list[dict],
    *,
    table: Table | None = None,
    published: bool = False,
    train_logs: Iterable[str | Path] = (),
    title: str = "vicreg-bench comparison",
) -> str:
    """The whole report as one HTML string (runs as from `compare.load_runs`)."""
    table = table if table is not None else build_table(runs, published=published)
    logs = [read_train_log(p) for p in train_logs]
    created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()

    bars = task_bar_charts(table)
    knn = knn_chart(table)
    voc = voc_per_class_chart(table)
    sections = [_section("Comparison", render_html(table), "comparison")]
    sections.append(_section(
        "Results per task",
        '<div class="charts">' + "".join(_figure_html(uri, f"{task} bar chart") for task, uri in bars) + "</div>"
        if bars else '<p class="empty">no numbers to plot</p>',
        "bars",
    ))
    sections.append(_section(
        "k-NN accuracy against k",
        _figure_html(knn, "k-NN accuracy against k") if knn else '<p class="empty">no k-NN results</p>',
        "knn",
    ))
    sections.append(_section(
        "VOC07 SVM: AP per class",
        _figure_html(voc, "VOC07 per-class AP") if voc else '<p class="empty">no VOC07 SVM results with per-class AP</p>',
        "voc",
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
<p class="meta">{len([r for r in table.rows if not r.published])} checkpoint(s){", with the VICReg paper's published rows" if any(r.published for r in table.rows) else ""}.
Generated {escape(created)} by vicreg-bench {escape(__version__)}. Marks: {escape(marks)} (see the legend under the table).</p>
{chr(10).join(sections)}
</body>
</html>
"""
    bad = external_references(html)
    if bad:  # never write a page that needs the network
        raise AssertionError("report would reference external resources: " + ", ".join(bad[:5]))
    return html

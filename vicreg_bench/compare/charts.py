"""The report's charts, drawn with matplotlib's Agg backend into base64 PNG data URIs: a bar chart per
task, accuracy against k for every k-NN task, AP per class for every task that reports it, and the
training curves of vicreg-train logs."""

from __future__ import annotations

import base64
import io
import math
import re
from html import escape
from typing import Sequence

from vicreg_bench.compare.model import Table
from vicreg_bench.tasks.catalog import all_tasks
from vicreg_bench.trainlog import LOSS_TERMS, TrainLog, number

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


def img(uri: str, alt: str, cls: str = "chart") -> str:
    return f'<img class="{cls}" alt="{escape(alt)}" src="{uri}">'


def _row_name(row) -> str:
    return f"{row.method} (paper)" if row.published else f"{row.name} {row.arch} {row.checkpoint}"


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


def task_title(task: str) -> str:
    spec = all_tasks().get(task)
    return spec.summary if spec is not None else task


def knn_charts(table: Table) -> list[tuple[str, str]]:
    """Per task with k-NN metrics (k<K>_top1/5): top-1 (solid) and top-5 (dashed) against k for every run;
    published rows' numbers of that task as points."""
    tasks = dict.fromkeys(t for row in table.rows if row.run for t, e in row.run["tasks"].items()
                          if e.get("status") == "ok" and any(_K_METRIC.match(m) for m in e.get("metrics", {})))
    charts = []
    for task in tasks:
        uri = _knn_chart(table, task)
        if uri:
            charts.append((task, uri))
    return charts


def _knn_chart(table: Table, task: str) -> str | None:
    colors = _colors(table)
    series = []
    for i, row in enumerate(table.rows):
        if row.published or row.run is None:
            continue
        entry = row.run["tasks"].get(task)
        if not entry or entry.get("status") != "ok":
            continue
        by_top: dict[str, list[tuple[int, float]]] = {"1": [], "5": []}
        for name, value in entry["metrics"].items():
            match = _K_METRIC.match(name)
            if match and number(value) is not None:
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
        pts = []
        for key, cell in row.cells.items():
            match = _K_METRIC.match(key.split(".", 1)[1]) if key.startswith(task + ".") else None
            if match and match.group(2) == "1" and cell.value is not None:
                pts.append((int(match.group(1)), cell.value))
        pts.sort()
        if pts:
            ks.update(k for k, _ in pts)
            ax.plot([k for k, _ in pts], [v for _, v in pts], ":", marker="s", ms=3,
                    color=("#555", "#999", "#bbb")[n % 3], label=f"{row.method} (published) top-1")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ks))
    ax.set_xticklabels([str(k) for k in sorted(ks)], fontsize=7)
    ax.minorticks_off()
    ax.set_xlabel("k (neighbours)", fontsize=8)
    ax.set_ylabel("accuracy (%)", fontsize=8)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"{task_title(task)}: accuracy against k", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def per_class_charts(table: Table) -> list[tuple[str, str]]:
    """Per task that reports `per_class_AP`: one bar per run and class."""
    tasks = dict.fromkeys(t for row in table.rows if row.run for t, e in row.run["tasks"].items()
                          if e.get("status") == "ok" and isinstance(e.get("metrics", {}).get("per_class_AP"), dict))
    return [(task, uri) for task in tasks if (uri := _per_class_chart(table, task))]


def _per_class_chart(table: Table, task: str) -> str | None:
    colors = _colors(table)
    runs = []
    for i, row in enumerate(table.rows):
        entry = (row.run or {}).get("tasks", {}).get(task) if not row.published else None
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
        vals = [number(ap.get(name)) or 0.0 for name in classes]
        ax.barh(ys, vals, height=height * 0.9, color=colors[i], label=_row_name(row)[:48])
    ax.set_yticks([-(c + (n - 1) * height / 2) for c in range(len(classes))])
    ax.set_yticklabels(classes, fontsize=7)
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(f"{task_title(task)}: average precision per class", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(fig)


def _xs(records: list[dict], key: str = "step") -> list[float]:
    xs = [number(r.get(key)) for r in records]
    return [x if x is not None else float(i) for i, x in enumerate(xs)]


def train_loss_chart(logs: Sequence[TrainLog]) -> str | None:
    """The loss and its three terms (invariance, variance, covariance) and the learning rate per step."""
    if not any(log.steps for log in logs):
        return None
    keys = [k for k in LOSS_TERMS + ("lr",) if any(number(r.get(k)) is not None for log in logs for r in log.steps)]
    cols = 3
    rows = math.ceil(len(keys) / cols)
    fig = _figure(9.0, 2.3 * rows)
    for n, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, n + 1)
        for j, log in enumerate(logs):
            recs = [r for r in log.steps if number(r.get(key)) is not None]
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
    panels = [(k, t) for k, t in panels if any(number(r.get(k)) is not None for log in logs for r in log.epochs)]
    fig = _figure(9.0, 2.5 * math.ceil(len(panels) / 2))
    for n, (key, title) in enumerate(panels):
        ax = fig.add_subplot(math.ceil(len(panels) / 2), 2, n + 1)
        for j, log in enumerate(logs):
            recs = [r for r in log.epochs if number(r.get(key)) is not None]
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

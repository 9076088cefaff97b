"""Render the comparison table: terminal text, Markdown, CSV, and the HTML fragment the report embeds."""

from __future__ import annotations

import csv
import io

from vicreg_bench.compare.model import MARK_LEGEND, MARKS, Cell, Table, group_tag, group_title


def cell_text(cell: Cell, decimals: int = 1) -> str:
    """'73.2†[3]' or '—[2]': value (or an explicit dash), marks, footnote numbers."""
    if cell.state == "not_published":
        return ""
    value = "\u2014" if cell.value is None else f"{cell.value:.{decimals}f}"
    refs = f"[{','.join(str(n) for n in cell.notes)}]" if cell.notes else ""
    return f"{value}{cell.symbols}{refs}"


def _notes_block(table: Table, bullet: str = "") -> list[str]:
    lines: list[str] = []
    if table.legend():
        lines.append("Marks:")
        lines += [f"{bullet}{sym} {text}" for sym, text in table.legend()]
    lines.append(
        "Reference of each column: for each of protocol, engine, dataset manifest and image variant, the "
        "value most rows share (ties: the first results file given); numbers in bold/starred are the best "
        "unmarked value of their column."
    )
    if table.references:
        lines.append("References:")
        lines += [f"{bullet}{task}: {words}" for task, words in table.references.items()]
    if any(r.published for r in table.rows):
        lines.append("Published rows: " + published_sources(table) + "; a blank cell in a published row means the "
                     "paper gives no number.")
    if table.footnotes:
        lines.append("Notes:")
        lines += [f"{bullet}[{i}] {text}" for i, text in enumerate(table.footnotes, 1)]
    sources = [r for r in table.rows if not r.published]
    if sources:
        lines.append("Rows:")
        lines += [f"{bullet}{r.name} {r.arch} {r.checkpoint}: method {r.method}, sha256 {r.sha256}, from {r.source}"
                  for r in sources]
    return lines


def published_sources(table: Table) -> str:
    """The papers of the table's published rows, cited, with where their numbers are printed."""
    from vicreg_bench.published import PAPERS

    where: dict[str, list[str]] = {}
    for r in table.rows:
        if r.published and r.paper:
            loc = r.source.split(", ", 1)[1] if ", " in r.source else r.source
            if loc not in where.setdefault(r.paper, []):
                where[r.paper].append(loc)
    parts = []
    for key, locs in where.items():
        p = PAPERS.get(key)
        cite = f"{p.short} ({p.authors}, {p.venue}, arXiv:{p.arxiv})" if p else key
        parts.append(f"{cite}: {'; '.join(locs)}")
    return "; ".join(parts)


def render_text(table: Table) -> str:
    """A fixed-width table for the terminal, with the legend and footnotes under it."""
    head = ["backbone", "arch", "checkpoint"]
    body = []
    for r in table.rows:
        body.append([r.name, r.arch, r.checkpoint] + [cell_text(r.cells[c.key]) + ("*" if r.cells[c.key].best else "") for c in table.columns])
    labels = head + [c.label for c in table.columns]
    widths = [max(len(labels[i]), *(len(b[i]) for b in body)) if body else len(labels[i]) for i in range(len(labels))]
    # the group row: each paper table's title spans its columns
    group_cells = [" " * (sum(widths[:3]) + 4)]
    start = 3
    for number, span in table.groups():
        width = sum(widths[start:start + span]) + 2 * (span - 1)
        head = f"Table {number}" if isinstance(number, int) else str(number)
        group_cells.append(head.center(width, "-")[:width] if width >= len(head) + 2 else group_tag(number).center(width))
        start += span
    lines = ["  ".join(group_cells)]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines.append(fmt(labels))
    lines.append("  ".join("-" * w for w in widths))
    published_started = False
    for r, b in zip(table.rows, body):
        if r.published and not published_started:
            published_started = True
            lines.append("  ".join("-" * w for w in widths[:3]) + "  published (VICReg paper)")
        lines.append(fmt(b))
    lines.append("")
    lines += [" ".join(f"{group_title(n)}." for n, _ in table.groups())]
    lines += _notes_block(table, bullet="  ")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*").replace("_", "\\_")


def render_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table, best values in bold, legend and footnotes as lists."""
    header = ["backbone", "arch", "checkpoint"] + [f"{group_tag(c.table)} {c.label}" for c in table.columns]
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |", "|" + "---|" * 3 + "---:|" * len(table.columns)]
    for r in table.rows:
        method = f"*{_md_escape(r.name)}* (published)" if r.published else _md_escape(r.name)
        cells = []
        for c in table.columns:
            cell = r.cells[c.key]
            text = _md_escape(cell_text(cell))
            cells.append(f"**{text}**" if cell.best and text else text)
        lines.append("| " + " | ".join([method, _md_escape(r.arch), _md_escape(r.checkpoint)] + cells) + " |")
    lines.append("")
    lines.append(" ".join(f"{group_tag(n)} = {group_title(n)}." for n, _ in table.groups()))
    lines.append("")
    for line in _notes_block(table, bullet="- "):
        lines.append(_md_escape(line) if line.startswith("- ") else f"**{line}**" if line.endswith(":") else _md_escape(line))
    return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
    """One line per row; each metric has a value column (full precision) and a notes column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = ["method", "label", "arch", "checkpoint", "sha256", "published", "source"]
    for c in table.columns:
        header += [c.key, f"{c.key} notes"]
    writer.writerow(header)
    for r in table.rows:
        line = [r.method, r.label or "", r.arch, r.checkpoint, r.sha256 or "", "yes" if r.published else "no", r.source]
        for c in table.columns:
            cell = r.cells[c.key]
            texts = [f"{MARKS[k]} {MARK_LEGEND[k].split(':')[0]}" for k in cell.marks]
            texts += [table.footnotes[n - 1] for n in cell.notes]
            line += ["" if cell.value is None else repr(cell.value), " | ".join(texts)]
        writer.writerow(line)
    return buf.getvalue()


def render_html(table: Table) -> str:
    """The table as an HTML fragment (`<table>` + legend + footnotes); the report embeds it."""
    from html import escape

    out = ['<table class="cmp">', "<thead>", "<tr><th colspan=\"3\"></th>"]
    for number, span in table.groups():
        out.append(f'<th colspan="{span}" class="group" title="{escape(group_title(number))}">{escape(group_title(number))}</th>')
    out.append("</tr><tr><th>backbone</th><th>arch</th><th>checkpoint</th>")
    out += [f'<th title="{escape(c.key)}">{escape(c.label)}</th>' for c in table.columns]
    out.append("</tr></thead><tbody>")
    for r in table.rows:
        cls = "published" if r.published else "run"
        method = escape(r.name) + (' <span class="tag">published</span>' if r.published else "")
        out.append(f'<tr class="{cls}" data-sha256="{escape(r.sha256 or "")}" title="{escape(r.source)}">')
        out.append(f"<td>{method}</td><td>{escape(r.arch)}</td><td>{escape(r.checkpoint)}</td>")
        for c in table.columns:
            cell = r.cells[c.key]
            classes = [cell.state] + (["best"] if cell.best else []) + (["marked"] if cell.marks else [])
            if cell.state == "not_published":
                out.append('<td class="not_published"></td>')
                continue
            value = "\u2014" if cell.value is None else f"{cell.value:.1f}"
            marks = f'<span class="marks">{escape(cell.symbols)}</span>' if cell.marks else ""
            refs = "".join(f'<sup><a href="#note-{n}">[{n}]</a></sup>' for n in cell.notes)
            tip = " | ".join(table.footnotes[n - 1] for n in cell.notes)
            out.append(f'<td class="{" ".join(classes)}" title="{escape(tip)}">{value}{marks}{refs}</td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    if table.legend():
        out.append('<dl class="legend">')
        for sym, text in table.legend():
            out.append(f"<dt>{escape(sym)}</dt><dd>{escape(text)}</dd>")
        out.append("</dl>")
    out.append(
        '<p class="rule">Reference of each column: for each of protocol, engine, dataset manifest and image '
        "variant, the value most rows share (ties: the first results file given). Bold: the best unmarked "
        "value of its column. An em dash is a missing, failed or skipped task (see its note); a blank cell in a "
        "published row means the paper gives no number.</p>"
    )
    if table.references:
        out.append('<ul class="references">')
        out += [f"<li><b>{escape(t)}</b>: {escape(w)}</li>" for t, w in table.references.items()]
        out.append("</ul>")
    if table.footnotes:
        out.append('<ol class="footnotes">')
        out += [f'<li id="note-{i}">{escape(t)}</li>' for i, t in enumerate(table.footnotes, 1)]
        out.append("</ol>")
    return "\n".join(out)


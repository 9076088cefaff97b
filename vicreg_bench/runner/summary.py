"""What `run` prints at the end, and how a task's failure becomes one line in the results."""

from __future__ import annotations


def error_reason(e: BaseException) -> str:
    """One line: the exception type and message (the last line of a traceback re-raised by a DataLoader)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    text = lines[-1] if any(ln.startswith("Traceback") for ln in lines) else " ".join(lines)
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:2000]


def summary_table(results: dict, tasks: list[str]) -> str:
    """task, status, protocol, the first metrics (or the reason), seconds: one line per task."""
    rows = [("task", "status", "protocol", "result", "seconds")]
    for t in tasks:
        e = results["tasks"].get(t)
        if e is None:
            continue
        m = e.get("metrics") or {}
        if e["status"] == "ok":
            shown = [f"{k} {v:.2f}" for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            result = ", ".join(shown[:4])
        else:
            result = (e.get("reason") or "")[:70]
        secs = "" if e.get("seconds") is None else f"{e['seconds']:.1f}"
        rows.append((t, e["status"], e["protocol"]["name"], result, secs))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

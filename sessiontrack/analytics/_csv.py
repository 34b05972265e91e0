"""Analytics answers as CSV: pure functions from the JSON-ready dicts of
``tracker.analytics`` to CSV text (RFC 4180, ``\\r\\n`` line ends, a header row).

Numbers are written as Python writes them (``repr`` of a float reads back exactly),
``null`` as an empty cell. A text cell (a node id or label, a reason) that a spreadsheet
would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return) is written with a leading ``'``, as OWASP advises for CSV exports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

PATH_SEPARATOR = " > "
"""Joins a path's node ids in the ``nodes`` column of the paths report."""

NODE_COLUMNS = (
    "kind",
    "nodeId",
    "label",
    "type",
    "sessions",
    "visits",
    "exits.completed",
    "exits.expired",
    "exits.stopped",
    "exits.active",
    "dropOffRate",
    "botTime.p50",
    "botTime.p90",
    "waitTime.p50",
    "waitTime.p90",
    "errors",
    "source",
    "target",
    "share",
)
PATH_COLUMNS = ("rank", "nodes", "sessions", "share", "completionRate", "duration.p50")
STEP_COLUMNS = (
    "step",
    "nodeId",
    "label",
    "sessions",
    "conversion",
    "overall",
    "timeFromPrevious.p50",
    "timeFromPrevious.sessions",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> str:
    """One value as a CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(c)) for c in columns])
    return out.getvalue()


def flatten(value: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted names: ``{"duration": {"p50": 1}}`` → ``duration.p50``."""
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping):
            flat.update(flatten(item, name + "."))
        else:
            flat[name] = item
    return flat


def summary_csv(answer: Mapping[str, Any]) -> str:
    """``metric,value`` rows: every figure under its dotted name (``byStatus.completed``,
    ``duration.p90``), the range first, the duration histogram as
    ``duration.histogram.<le>`` (``inf`` for the last bucket) and the daily series as
    ``daily.<date>.<field>``."""
    figures = {k: v for k, v in answer.items() if k != "daily"}
    duration = dict(figures.get("duration") or {})
    histogram = duration.pop("histogram", [])
    if "duration" in figures:
        figures["duration"] = duration
    rows = [{"metric": k, "value": v} for k, v in flatten(figures).items()]
    for bucket in histogram:
        le = "inf" if bucket["le"] is None else bucket["le"]
        rows.append({"metric": f"duration.histogram.{le}", "value": bucket["sessions"]})
    for day in answer.get("daily", []):
        for field, value in day.items():
            if field != "date":
                rows.append({"metric": f"daily.{day['date']}.{field}", "value": value})
    return _table(("metric", "value"), rows)


def nodes_csv(answer: Mapping[str, Any]) -> str:
    """One row per node (``kind`` = ``node``), then one per edge (``kind`` = ``edge``)."""
    rows: list[dict[str, Any]] = [{"kind": "node", **flatten(n)} for n in answer["nodes"]]
    rows += [{"kind": "edge", **e} for e in answer["edges"]]
    return _table(NODE_COLUMNS, rows)


def paths_csv(answer: Mapping[str, Any]) -> str:
    """One row per path, most sessions first; ``nodes`` joined by ``" > "``."""
    rows = [
        {**flatten(p), "rank": i, "nodes": PATH_SEPARATOR.join(p["nodes"])}
        for i, p in enumerate(answer["paths"], 1)
    ]
    return _table(PATH_COLUMNS, rows)


def funnel_csv(answer: Mapping[str, Any]) -> str:
    """One row per step, in order (``step`` counts from 1)."""
    rows = [{**flatten(s), "step": i} for i, s in enumerate(answer["steps"], 1)]
    return _table(STEP_COLUMNS, rows)


REPORTS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "summary": summary_csv,
    "nodes": nodes_csv,
    "paths": paths_csv,
    "funnel": funnel_csv,
}
"""The CSV writer of each report."""

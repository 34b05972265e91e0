"""Export: every session matching a filter, streamed as JSON Lines or CSV.

The stream is made of one chunk of bytes per batch the store reads (see
:meth:`sessiontrack.abc.Store.iter_summaries`), so memory stays that of one batch however
many sessions match. The query service (:meth:`SessionQueries.export`) validates the
arguments and builds the stream; the HTTP route and the CLI only write it out.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import fields
from datetime import datetime
from typing import Any

import orjson

from .abc import Store
from .models import SessionSummary
from .status import ACTIVE_STATUSES
from .store import ExportOrder, FullSession, SessionFilter
from .store._transfer import SummaryRow

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}

Mask = Callable[[str], str | None]
Progress = Callable[[int], None]
OnBatch = Callable[[list[str]], Awaitable[None]]
"""Called with the ids of each batch before it is sent (the HTTP route audits them)."""

_SUMMARY_FIELDS = [f.name for f in fields(SessionSummary)]
_PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s().*-]*$")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


CSV_COLUMNS = [*(_camel(n) for n in _SUMMARY_FIELDS), "isActive", "durationSeconds"]
"""The CSV header: a list item's fields (as ``GET /`` names them), then ``durationSeconds``."""


def duration_seconds(started_at: datetime, ended_at: datetime) -> float:
    """How long a session has run, in seconds with millisecond precision: ``ended_at`` is
    its completion or, while it is active, its last activity (``updatedAt``)."""
    return round((ended_at - started_at).total_seconds(), 3)


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _cell(value: str | None) -> str:
    """Text as a spreadsheet shows it, never as a formula: a leading ``=``, ``@``, tab or
    carriage return (or ``+``/``-`` not starting a plain number such as a phone number,
    masked or not) gets a ``'`` in front, as OWASP's advice on CSV injection has it."""
    if not value:
        return ""
    if value[0] in _RISKY and not (value[0] in "+-" and _PLAIN_NUMBER.match(value)):
        return "'" + value
    return value


_RISKY = frozenset("=+-@\t\r")
_TEXT = tuple(
    i
    for i, name in enumerate(_SUMMARY_FIELDS)
    if name
    in {
        "conversation_id",
        "chatbot_id",
        "chatbot_name",
        "customer_phone",
        "customer_name",
        "current_node_id",
        "current_node_label",
    }
)
_TIMES = tuple(
    i
    for i, name in enumerate(_SUMMARY_FIELDS)
    if name in {"started_at", "updated_at", "completed_at"}
)
_STATUS = _SUMMARY_FIELDS.index("status")
_PHONE = _SUMMARY_FIELDS.index("customer_phone")
_COST = _SUMMARY_FIELDS.index("cost")
_STARTED, _UPDATED, _COMPLETED = _TIMES


def csv_row(row: SummaryRow) -> list[Any]:
    """One CSV row of a list item (a tuple of ``SessionSummary``'s fields, in order)."""
    out = list(row)
    for i in _TEXT:
        value = out[i]
        # a phone number (the commonest leading +) is let through without the regex
        if value and value[0] in _RISKY and not value[1:].isdigit():
            out[i] = _cell(value)
    for i in _TIMES:
        value = out[i]
        if value is not None:  # stored times are UTC: isoformat ends in +00:00
            text = value.isoformat()
            out[i] = text[:-6] + "Z" if text.endswith("+00:00") else text
        else:
            out[i] = ""
    out[_COST] = repr(row[_COST])
    out.append("true" if row[_STATUS] in ACTIVE_STATUSES else "false")
    ended = row[_COMPLETED] or row[_UPDATED]
    out.append(round((ended - row[_STARTED]).total_seconds(), 3))
    return out


_NESTED = frozenset(
    {"node_executions", "messages", "node_totals", "llm_call_history", "tool_call_history"}
)
"""The detail's fields holding lists of dataclasses; every other field is copied as it is
(scalars, and the free-form JSON: variables, metadata, flow_data, payloads, arguments)."""


_KEYS: dict[type, tuple[tuple[str, str, bool], ...]] = {}


def _keys(cls: type) -> tuple[tuple[str, str, bool], ...]:
    """``(attribute, JSON name, nested)`` of each field of a model dataclass."""
    keys = _KEYS.get(cls)
    if keys is None:
        keys = _KEYS[cls] = tuple((f.name, _camel(f.name), f.name in _NESTED) for f in fields(cls))
    return keys


def _wire(value: Any) -> dict[str, Any]:
    """A model dataclass as the HTTP API names its fields (camelCase), free-form JSON as
    stored; the nested lists (messages, calls …) hold dataclasses of plain fields."""
    out: dict[str, Any] = {}
    for name, key, nested in _keys(type(value)):
        item = getattr(value, name)
        if nested:
            item = [{k: getattr(v, n) for n, k, _ in _keys(type(v))} for v in item]
        out[key] = item
    return out


def detail_json(fs: FullSession, *, metadata: bool = True) -> dict[str, Any]:
    """A session's export line as a dict: the detail as ``GET /{id}`` gives it (with every
    message and call), plus ``seq`` on each node execution and ``channelMessageId`` on
    each message, which an import needs to give back the same detail, and the engine's
    ``metadata`` (unless ``metadata=False``: the HTTP API never serves it)."""
    d = fs.detail
    out: dict[str, Any] = _wire(d)
    if not metadata:
        del out["metadata"]
    out["isActive"] = d.is_active
    for execution, seq in zip(out["nodeExecutions"], fs.node_seqs, strict=True):
        execution["seq"] = seq
    return out


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_UTC_Z)
    except (orjson.JSONEncodeError, TypeError):
        # deeper than orjson's 254 levels, or an integer beyond 64 bits: the hooks accept
        # both, and the standard library writes them
        return json.dumps(value, ensure_ascii=False, default=_iso_default).encode()


def _iso_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _iso(value)
    raise TypeError(f"cannot export {type(value).__name__}")


def _masked(row: SummaryRow, mask: Mask) -> SummaryRow:
    phone = row[_PHONE]
    if not phone:
        return row
    return (*row[:_PHONE], mask(phone), *row[_PHONE + 1 :])


async def csv_stream(
    store: Store,
    f: SessionFilter,
    order: ExportOrder,
    *,
    mask: Mask | None = None,
    progress: Progress | None = None,
    on_batch: OnBatch | None = None,
    metadata: bool = True,
    batch_size: int = 1000,
) -> AsyncIterator[bytes]:
    """The CSV: the header, then one row per session, one chunk per batch (``metadata``:
    not a column of the CSV, taken for the same signature as :func:`jsonl_stream`)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue().encode()
    done = 0
    async for batch in store.iter_summaries(f, order, batch_size=batch_size):
        if on_batch is not None:
            await on_batch([row[0] for row in batch])
        buf.seek(0)
        buf.truncate()
        if mask is not None:
            batch = [_masked(row, mask) for row in batch]
        writer.writerows(map(csv_row, batch))
        yield buf.getvalue().encode()
        done += len(batch)
        if progress is not None:
            progress(done)


async def jsonl_stream(
    store: Store,
    f: SessionFilter,
    order: ExportOrder,
    *,
    mask: Mask | None = None,
    progress: Progress | None = None,
    on_batch: OnBatch | None = None,
    metadata: bool = True,
    batch_size: int = 200,
) -> AsyncIterator[bytes]:
    """The JSON Lines: one session's whole detail a line, one chunk per batch."""
    done = 0
    async for batch in store.iter_details(f, order, batch_size=batch_size):
        if on_batch is not None:
            await on_batch([fs.detail.id for fs in batch])
        lines = []
        for fs in batch:
            line = detail_json(fs, metadata=metadata)
            if mask is not None and line["customerPhone"]:
                line["customerPhone"] = mask(line["customerPhone"])
            lines.append(_dumps(line))
        yield b"\n".join(lines) + b"\n"
        done += len(batch)
        if progress is not None:
            progress(done)

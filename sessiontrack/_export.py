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
from dataclasses import fields, is_dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from .abc import Store
from .models import SessionSummary
from .store import ExportOrder, FullSession, SessionFilter

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}

Mask = Callable[[str], str | None]
Progress = Callable[[int], None]
OnBatch = Callable[[list[str]], Awaitable[None]]
"""Called with the ids of each batch before it is sent (the HTTP route audits them)."""

_SUMMARY_FIELDS = [f.name for f in fields(SessionSummary)]
_FREE_FORM = frozenset({"variables", "metadata", "payload", "flow_data", "arguments", "result"})
"""Fields holding the engine's own JSON: written as stored, keys untouched."""
_FORMULA = re.compile(r"^[=+\-@\t\r]")
_PLAIN_NUMBER = re.compile(r"^[+-]?[\d\s().*-]*$")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


CSV_COLUMNS = [*(_camel(n) for n in _SUMMARY_FIELDS), "isActive", "durationSeconds"]
"""The CSV header: a list item's fields (as ``GET /`` names them), then ``durationSeconds``."""


def duration_seconds(s: SessionSummary) -> float:
    """How long a session has run: to its completion, or (still active) to its last
    activity (``updatedAt``), in seconds with millisecond precision."""
    end = s.completed_at or s.updated_at
    return round((end - s.started_at).total_seconds(), 3)


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _cell(value: str | None) -> str:
    """Text as a spreadsheet shows it, never as a formula: a leading ``=``, ``@``, tab or
    carriage return (or ``+``/``-`` not starting a plain number such as a phone number,
    masked or not) gets a ``'`` in front, as OWASP's advice on CSV injection has it."""
    if not value:
        return ""
    if _FORMULA.match(value) and not (value[0] in "+-" and _PLAIN_NUMBER.match(value)):
        return "'" + value
    return value


def csv_row(s: SessionSummary) -> list[Any]:
    return [
        s.id,
        _cell(s.conversation_id),
        _cell(s.chatbot_id),
        _cell(s.chatbot_name),
        _cell(s.customer_phone),
        _cell(s.customer_name),
        s.status,
        _cell(s.current_node_id),
        _cell(s.current_node_label),
        _iso(s.started_at),
        _iso(s.updated_at),
        _iso(s.completed_at),
        s.node_count,
        s.message_count,
        s.input_tokens,
        s.output_tokens,
        repr(s.cost),
        s.llm_calls,
        s.tool_calls,
        s.error_count,
        "true" if s.is_active else "false",
        duration_seconds(s),
    ]


def _wire(value: Any) -> Any:
    """A dataclass as the HTTP API's JSON names it (camelCase), free-form JSON untouched."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            _camel(f.name): getattr(value, f.name)
            if f.name in _FREE_FORM
            else _wire(getattr(value, f.name))
            for f in fields(value)
        }
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


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


def _masked_summary(s: SessionSummary, mask: Mask | None) -> SessionSummary:
    if mask is None or not s.customer_phone:
        return s
    return replace(s, customer_phone=mask(s.customer_phone))


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
            await on_batch([s.id for s in batch])
        buf.seek(0)
        buf.truncate()
        writer.writerows(csv_row(_masked_summary(s, mask)) for s in batch)
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

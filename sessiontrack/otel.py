"""Sessions as OpenTelemetry traces, exported from the committed event log.

:class:`OtelExporter` is a :class:`~sessiontrack.consumer.ConsumerGroup` (group and cursor
``"otel"``): it reads the event log from a cursor stored in the database and hands spans
to an OpenTelemetry SDK :class:`~opentelemetry.sdk.trace.export.SpanExporter` (OTLP over
HTTP by default). The cursor moves only after the exporter reported success, so a crash,
a restart or a collector outage loses nothing, and spans describe committed data only.

One session is one trace. Its trace id **is** the session id (the UUID's 128 bits), and
every span id is derived from the session id and the event's sequence number, so a span
exported twice (at least once: after a crash between export and cursor) carries the same
ids both times. Child spans (nodes, LLM calls, tool calls) are exported as their events
commit; the root span, which lasts the whole session, when the session ends. The mapping
is in ``docs/opentelemetry.md``.

Needs the ``otel`` extra: ``pip install sessiontrack[otel]``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import anyio
import orjson

from . import events as ev
from .abc import Store
from .consumer import Consumer, ConsumerGroup
from .events import StoredEvent

try:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "sessiontrack.otel needs the OpenTelemetry SDK: pip install sessiontrack[otel]"
    ) from exc

log = logging.getLogger(__name__)

__all__ = ["ExportFailed", "OtelExporter", "OtelStats", "span_id", "trace_id"]

_SCOPE = InstrumentationScope("sessiontrack.otel", None)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_OK = Status(StatusCode.UNSET)
_MAX_TEXT = 4096
_DURATIONS: Final = {
    ev.NODE_EXECUTED: "duration_ms",
    ev.LLM_CALL: "latency_ms",
    ev.TOOL_CALL: "duration_ms",
}
"""The kinds that become child spans, and the field with their duration."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def trace_id(session_id: str) -> int:
    """The trace id of a session: its UUID's 128 bits (``format(trace_id(s), "032x")`` is
    the session id without hyphens, what a tracing backend's search box takes)."""
    value = int(session_id.replace("-", ""), 16)
    return value or _hash64(session_id, "trace") << 64 | 1  # the nil UUID is not a valid id


def span_id(session_id: str, seq: int | None = None) -> int:
    """The span id of the event ``seq`` of a session, or of its root span (``None``):
    64 bits of BLAKE2b of the two, the same in every process and on every re-export."""
    return _hash64(session_id, "root" if seq is None else str(seq)) or 1


def _hash64(session_id: str, what: str) -> int:
    digest = hashlib.blake2b(f"{session_id}:{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class ExportFailed(RuntimeError):
    """The span exporter reported a failure: the events are offered again after a backoff."""


@dataclass(slots=True)
class OtelStats:
    """What the exporter did since it was made (this process)."""

    events: int = 0
    """Events handled (each once per offer: a re-offer after a failure counts again)."""
    spans: int = 0
    """Spans handed to the exporter and acknowledged."""
    roots: int = 0
    """Root spans (ended sessions) among them."""
    failures: int = 0
    """Export calls that failed (the batch is retried)."""
    last_seq: int = 0
    """The sequence number of the newest event exported."""
    cpu_s: float = 0.0
    """CPU seconds spent mapping and exporting (the event loop's and the export thread's)."""


@dataclass(slots=True)
class _Open:
    """What the root span needs from a session's events before its end (kept in memory
    only for sessions whose start this process saw; others are read from the log)."""

    started_at: datetime | None = None
    chatbot_name: str | None = None
    events: dict[int, StoredEvent] = field(default_factory=dict)
    """Messages and status changes by sequence number (a re-offer adds nothing twice)."""
    full: bool = False
    """More than a root span takes: read back from the log at the end."""
    dropped: int = 0
    """Span events beyond ``max_events`` (left off the root span)."""
    earliest_ns: int | None = None
    """The earliest start of a child span: the root span starts no later (an engine
    reports a node with its duration when it ends, so it may begin before the session's
    start was stamped)."""

    def child(self, start_ns: int) -> None:
        if self.earliest_ns is None or start_ns < self.earliest_ns:
            self.earliest_ns = start_ns


class _SpanConsumer(Consumer):
    """The consumer behind :class:`OtelExporter` (cursor ``name``)."""

    def __init__(self, owner: OtelExporter, name: str, start: Literal["head", "beginning"]):
        self.name = name
        self.start = start
        self.batch_size = owner.batch_size
        self.owner = owner

    async def handle(self, events: Sequence[StoredEvent]) -> int | None:
        await self.owner._handle(events)
        return None

    async def stopped(self) -> None:
        self.owner._open.clear()  # another process may lead now: its log is the truth


class OtelExporter(ConsumerGroup):
    """Exports each session as an OpenTelemetry trace, from the committed event log.

    Run it with a tracker, ``Tracker(url, consumers=[OtelExporter(...)])``, or on its own
    (``await exporter.run(store)``, or ``sessiontrack otel`` on the command line). One
    process at a time exports (the group's lease); the others wait and take over.

    :param exporter: the SDK span exporter to hand spans to; called from a worker thread,
        one batch at a time. Default: OTLP over HTTP (protobuf) to ``endpoint``.
    :param endpoint: the OTLP/HTTP base URL (``http://collector:4318``; ``/v1/traces`` is
        appended unless given). Default: the ``OTEL_EXPORTER_OTLP_*`` environment variables
        as the SDK reads them, else ``http://localhost:4318/v1/traces``.
    :param headers: HTTP headers for the OTLP exporter (an API key).
    :param resource: the spans' resource; default ``service.name`` from
        ``OTEL_SERVICE_NAME``, else ``"sessiontrack"`` (and ``OTEL_RESOURCE_ATTRIBUTES``).
    :param capture_content: put message text and payloads, and tool arguments and results,
        on the spans (the GenAI conventions' opt-in content attributes). Off by default:
        traces then carry the conversation's shape, never what was said.
    :param max_events: span events (messages and status changes) on a root span, at most;
        the first ones are kept and ``sessiontrack.events_dropped`` counts the rest.
    :param max_open_sessions: sessions whose root span data is kept in memory until they
        end; beyond it the oldest are dropped and read back from the log at their end.
    :param start: where a new cursor starts: ``"head"`` (sessions from now on) or
        ``"beginning"`` (export the whole log once).
    :param name: the group's, and the cursor's, name.
    :param batch_size: events read and exported at once, at the most.
    :param poll_interval: as :class:`~sessiontrack.consumer.ConsumerGroup`'s, and
        ``lease_retry``, ``lease_check``, ``retry_initial`` (the first backoff after an
        export failed) and ``retry_max`` (the longest).
    """

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        endpoint: str | None = None,
        headers: Mapping[str, str] | None = None,
        resource: Resource | None = None,
        capture_content: bool = False,
        max_events: int = 1000,
        max_open_sessions: int = 10_000,
        start: Literal["head", "beginning"] = "head",
        name: str = "otel",
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lease_retry: float = 2.0,
        lease_check: float = 5.0,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
    ) -> None:
        if exporter is not None and (endpoint is not None or headers is not None):
            raise ValueError("give an exporter or an endpoint (and headers), not both")
        if start not in ("head", "beginning"):
            raise ValueError(f"start must be 'head' or 'beginning', got {start!r}")
        if max_events < 0 or max_open_sessions < 0 or batch_size < 1:
            raise ValueError("max_events and max_open_sessions >= 0, batch_size >= 1")
        self.exporter = exporter if exporter is not None else _otlp(endpoint, headers)
        """The span exporter."""
        self.resource = resource if resource is not None else _default_resource()
        self.capture_content = capture_content
        self.max_events = max_events
        self.max_open_sessions = max_open_sessions
        self.batch_size = batch_size
        self.stats = OtelStats()
        """Counters of this process's exports (:class:`OtelStats`)."""
        self._store: Store | None = None
        self._open: dict[str, _Open] = {}
        self._conversations: dict[str, str] = {}
        super().__init__(
            name,
            [_SpanConsumer(self, name, start)],
            poll_interval=poll_interval,
            lease_retry=lease_retry,
            lease_check=lease_check,
            retry_initial=retry_initial,
            retry_max=retry_max,
        )

    async def run(self, store: Store) -> None:
        """Export from ``store``'s log while this process holds the group's lease (see
        :meth:`ConsumerGroup.run`); runs until cancelled."""
        self._store = store
        await super().run(store)

    def shutdown(self) -> None:
        """Shut the span exporter down (call it once the exporter stopped running)."""
        self.exporter.shutdown()

    # --- one batch ----------------------------------------------------------------------

    async def _handle(self, events: Sequence[StoredEvent]) -> None:
        cpu = time.thread_time()
        await self._learn_conversations(events)
        spans: list[ReadableSpan] = []
        ended: list[str] = []
        for event in events:
            span = await self._span(event)
            if span is not None:
                spans.append(span)
            if event.kind == ev.SESSION_COMPLETED:
                ended.append(event.session_id)
        self.stats.cpu_s += time.thread_time() - cpu
        if spans:
            result, cpu_s = await anyio.to_thread.run_sync(self._export, spans)
            self.stats.cpu_s += cpu_s
            if result is not SpanExportResult.SUCCESS:
                self.stats.failures += 1
                raise ExportFailed(
                    f"the span exporter failed for {len(spans)} spans "
                    f"(seq {events[0].seq}-{events[-1].seq})"
                )
        for sid in ended:  # only once exported: a re-offer finds them again
            self._open.pop(sid, None)
        self.stats.events += len(events)
        self.stats.spans += len(spans)
        self.stats.roots += len(ended)
        self.stats.last_seq = events[-1].seq

    def _export(self, spans: list[ReadableSpan]) -> tuple[SpanExportResult, float]:
        cpu = time.thread_time()
        try:
            result = self.exporter.export(spans)
        except Exception:
            log.exception("sessiontrack otel: the span exporter raised")
            result = SpanExportResult.FAILURE
        return result, time.thread_time() - cpu

    async def _learn_conversations(self, events: Sequence[StoredEvent]) -> None:
        """Every span carries the conversation id; node, LLM and tool events lack it. It
        comes from the session's start (seen here) or, once per session, from the store."""
        known = self._conversations
        missing: list[str] = []
        for e in events:
            sid = e.session_id
            if sid in known:
                continue
            conversation = e.data.get("conversation_id")
            if e.kind in (ev.SESSION_STARTED, ev.SESSION_COMPLETED):
                known[sid] = str(conversation) if conversation is not None else sid
            elif sid not in missing:
                missing.append(sid)
        for sid in missing:
            if sid in known:
                continue
            head = await self._store_().session_head(sid)
            known[sid] = head[2] if head is not None and head[2] is not None else sid
        while len(known) > 2 * self.max_open_sessions + len(events):
            del known[next(iter(known))]  # oldest first (insertion order)

    def _store_(self) -> Store:
        if self._store is None:
            raise RuntimeError("OtelExporter is not running (run it with a tracker or run())")
        return self._store

    async def _span(self, e: StoredEvent) -> ReadableSpan | None:
        kind = e.kind
        if kind == ev.SESSION_STARTED:
            self._remember(e.session_id).started_at = e.at
            self._open[e.session_id].chatbot_name = e.data.get("chatbot_name")
            return None
        if kind in (ev.MESSAGE, ev.STATUS_CHANGED):
            self._keep(e)
            return None
        if kind in _DURATIONS:
            span = self._CHILDREN[kind](self, e)
            entry = self._open.get(e.session_id)
            if entry is not None and span.start_time is not None:
                entry.child(span.start_time)
            return span
        if kind == ev.SESSION_COMPLETED:
            return await self._root_span(e)
        return None  # variables changes: not exported (the session's data, not its shape)

    def _remember(self, sid: str) -> _Open:
        entry = self._open.get(sid)
        if entry is None:
            entry = self._open[sid] = _Open()
            while len(self._open) > self.max_open_sessions:
                del self._open[next(iter(self._open))]
        return entry

    def _keep(self, e: StoredEvent) -> None:
        entry = self._open.get(e.session_id)
        if entry is None or entry.full:
            return
        if len(entry.events) >= self.max_events and e.seq not in entry.events:
            entry.full = True  # more than a root span takes: read from the log at its end
            return
        entry.events[e.seq] = e

    # --- the spans ----------------------------------------------------------------------

    def _common(self, e: StoredEvent) -> dict[str, Any]:
        return {
            "gen_ai.conversation.id": self._conversations.get(e.session_id, e.session_id),
            "sessiontrack.session.id": e.session_id,
            "sessiontrack.chatbot.id": e.chatbot_id,
            "sessiontrack.seq": e.seq,
        }

    def _child(
        self,
        e: StoredEvent,
        name: str,
        attributes: dict[str, Any],
        duration_ms: Any,
        error: Any,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> ReadableSpan:
        sid = e.session_id
        tid = trace_id(sid)
        end = _ns(e.at)
        start = end - _ms_ns(duration_ms)  # the report comes at the end, with the duration
        if e.data.get("node_id") is not None:
            attributes["sessiontrack.node.id"] = e.data["node_id"]
        status = _OK
        if error is not None:
            status = Status(StatusCode.ERROR, str(error))
            attributes["error.type"] = _error_type(str(error))
        return ReadableSpan(
            name=name,
            context=SpanContext(tid, span_id(sid, e.seq), True, _SAMPLED),
            parent=SpanContext(tid, span_id(sid), True, _SAMPLED),
            resource=self.resource,
            attributes=_clean(attributes),
            kind=kind,
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=_SCOPE,
        )

    def _node_span(self, e: StoredEvent) -> ReadableSpan:
        d = e.data
        attributes = self._common(e)
        attributes["sessiontrack.node.type"] = d.get("node_type")
        attributes["sessiontrack.node.label"] = d.get("label")
        name = f"node {d.get('label') or d.get('node_id')}"
        return self._child(e, name, attributes, d.get("duration_ms"), d.get("error"))

    def _llm_span(self, e: StoredEvent) -> ReadableSpan:
        d = e.data
        model = d.get("model")
        attributes = self._common(e)
        attributes.update(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.provider.name": d.get("provider"),
                "gen_ai.usage.input_tokens": d.get("input_tokens"),
                "gen_ai.usage.output_tokens": d.get("output_tokens"),
                "gen_ai.response.finish_reasons": (
                    (d["finish_reason"],) if d.get("finish_reason") is not None else None
                ),
                "gen_ai.response.time_to_first_chunk": (
                    d["ttfb_ms"] / 1000 if d.get("ttfb_ms") is not None else None
                ),
                "sessiontrack.cost": None if d.get("cost") is None else float(d["cost"]),
            }
        )
        return self._child(
            e, f"chat {model}", attributes, d.get("latency_ms"), d.get("error"), SpanKind.CLIENT
        )

    def _tool_span(self, e: StoredEvent) -> ReadableSpan:
        d = e.data
        attributes = self._common(e)
        attributes.update(
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": d.get("name"),
                "gen_ai.tool.call.id": d.get("call_id"),
            }
        )
        if self.capture_content:
            attributes["gen_ai.tool.call.arguments"] = _json(d.get("arguments"))
            attributes["gen_ai.tool.call.result"] = _json(d.get("result"))
        name = f"execute_tool {d.get('name')}"
        return self._child(e, name, attributes, d.get("duration_ms"), d.get("error"))

    async def _root_span(self, e: StoredEvent) -> ReadableSpan:
        sid, d = e.session_id, e.data
        entry = self._open.get(sid)
        if entry is None or entry.started_at is None or entry.full:
            entry = await self._read_back(e)
        started = entry.started_at
        if started is None:  # the start is not in the log (purged): from the duration
            started = e.at - timedelta(seconds=float(d.get("duration") or 0))
        start_ns = _ns(started)
        if entry.earliest_ns is not None and entry.earliest_ns < start_ns:
            start_ns = entry.earliest_ns
        kept = [entry.events[k] for k in sorted(entry.events)]
        totals = d.get("totals") or {}
        workflow = entry.chatbot_name or e.chatbot_id
        attributes = self._common(e)
        attributes.update(
            {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": workflow,
                "sessiontrack.flow.version": e.flow_version,
                "sessiontrack.session.status": d.get("status"),
                "sessiontrack.session.completion_reason": d.get("reason"),
                "sessiontrack.session.node_count": d.get("total_nodes"),
                "sessiontrack.session.message_count": d.get("total_messages"),
                "gen_ai.usage.input_tokens": totals.get("input_tokens"),
                "gen_ai.usage.output_tokens": totals.get("output_tokens"),
                "sessiontrack.cost": float(totals.get("cost") or 0),
                "sessiontrack.llm_calls": totals.get("llm_calls"),
                "sessiontrack.tool_calls": totals.get("tool_calls"),
                "sessiontrack.error_count": totals.get("error_count"),
                "sessiontrack.events_dropped": entry.dropped or None,
            }
        )
        tid = trace_id(sid)
        return ReadableSpan(
            name=f"invoke_workflow {workflow}",
            context=SpanContext(tid, span_id(sid), False, _SAMPLED),
            parent=None,
            resource=self.resource,
            attributes=_clean(attributes),
            events=[self._span_event(m) for m in kept],
            kind=SpanKind.INTERNAL,
            status=_OK,
            start_time=start_ns,
            end_time=_ns(e.at),
            instrumentation_scope=_SCOPE,
        )

    async def _read_back(self, end: StoredEvent) -> _Open:
        """A session's start, messages and status changes from the log, up to its end."""
        store = self._store_()
        entry = _Open()
        after = 0
        while True:
            page = await store.events_after(
                after, limit=1000, session_id=end.session_id, until=end.seq - 1
            )
            for e in page:
                if e.kind == ev.SESSION_STARTED:
                    entry.started_at = e.at
                    entry.chatbot_name = e.data.get("chatbot_name")
                elif e.kind in _DURATIONS:
                    entry.child(_ns(e.at) - _ms_ns(e.data.get(_DURATIONS[e.kind])))
                elif e.kind in (ev.MESSAGE, ev.STATUS_CHANGED):
                    if len(entry.events) < self.max_events:
                        entry.events[e.seq] = e
                    else:
                        entry.dropped += 1
            if len(page) < 1000:
                return entry
            after = page[-1].seq

    def _span_event(self, e: StoredEvent) -> Event:
        d = e.data
        if e.kind == ev.MESSAGE:
            attributes: dict[str, Any] = {
                "sessiontrack.message.direction": d.get("direction"),
                "sessiontrack.message.type": d.get("type"),
                "sessiontrack.message.id": d.get("message_id"),
                "sessiontrack.node.id": d.get("node_id"),
                "sessiontrack.seq": e.seq,
            }
            if self.capture_content:
                attributes["sessiontrack.message.text"] = _text(d.get("text"))
                attributes["sessiontrack.message.payload"] = _json(d.get("payload"))
            name = "sessiontrack.message"
        else:
            attributes = {
                "sessiontrack.session.status": d.get("status"),
                "sessiontrack.session.previous_status": d.get("previous_status"),
                "sessiontrack.node.id": d.get("node_id"),
                "sessiontrack.status.reason": d.get("reason"),
                "sessiontrack.seq": e.seq,
            }
            name = "sessiontrack.status_changed"
        return Event(name, _clean(attributes), timestamp=_ns(e.at), limit=None)

    _CHILDREN: Final = {
        ev.NODE_EXECUTED: _node_span,
        ev.LLM_CALL: _llm_span,
        ev.TOOL_CALL: _tool_span,
    }


# --- helpers ----------------------------------------------------------------------------


def _otlp(endpoint: str | None, headers: Mapping[str, str] | None) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("the OTLP exporter is missing: pip install sessiontrack[otel]") from exc
    if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint, headers=dict(headers) if headers else None)


def _default_resource() -> Resource:
    name = os.environ.get("OTEL_SERVICE_NAME") or "sessiontrack"
    return Resource.create({"service.name": name})


def _ns(at: datetime) -> int:
    """Nanoseconds since the epoch, exactly (the stored times have microseconds)."""
    return (at - _EPOCH) // _MICROSECOND * 1000


def _ms_ns(duration_ms: Any) -> int:
    if duration_ms is None:
        return 0
    return max(0, int(float(duration_ms) * 1_000_000))


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry attributes cannot be null: leave the unknown ones out."""
    return {k: v for k, v in attributes.items() if v is not None}


def _error_type(error: str) -> str:
    """``error.type`` is a low-cardinality class: the error itself when it looks like one
    (``TimeoutError``, ``rate_limited``), else ``_OTHER`` (the message is the status's
    description)."""
    if len(error) <= 100 and error.replace(".", "").replace("_", "").isalnum():
        return error
    return "_OTHER"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def _json(value: Any) -> str | None:
    if value is None:
        return None
    return _text(orjson.dumps(value, default=str).decode())

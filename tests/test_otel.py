"""sessiontrack.otel: sessions as OpenTelemetry traces, from the committed log (both backends).

The span tree, names, attributes and timings through the SDK's in-memory exporter; a stop
mid-way and an exporter failure lose nothing and re-export the same ids; only committed
reports appear; and OTLP over HTTP to a real local receiver (the protobuf
``ExportTraceServiceRequest`` decoded with opentelemetry-proto), including a host killed
with SIGKILL mid-way and the CLI taking over.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import sessiontrack
from sessiontrack.otel import OtelExporter, span_id, trace_id
from tests.web_helpers.live import wait_until

pytestmark = pytest.mark.anyio
FAST: dict[str, float] = {
    "poll_interval": 0.05,
    "lease_retry": 0.05,
    "lease_check": 0.2,
    "retry_initial": 0.01,
    "retry_max": 0.05,
}
T0 = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
FLOW = {
    "nodes": [
        {"id": "ask", "type": "question", "position": {"x": 0, "y": 0}, "data": {"label": "Ask"}},
        {"id": "llm", "type": "ai", "position": {"x": 0, "y": 90}, "data": {"label": "Answer"}},
    ],
    "edges": [{"id": "e1", "source": "ask", "target": "llm"}],
}


def ns(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def options(prefix: str, **more: Any) -> dict[str, Any]:
    return {
        "prefix": prefix,
        "migrate": True,
        "poll_interval": 0.05,
        "sweep_interval": None,
        **more,
    }


def full_session(
    hook: Any, sid: str, *, t0: datetime = T0, conversation: str | None = "+4915"
) -> None:
    """A session with two nodes, an LLM call that works and one that fails, a tool call
    that fails, messages and a wait for the customer."""
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    hook.sessiontrack_session_started(
        session_id=sid, chatbot_id="bot", conversation_id=conversation, at=at(0)
    )
    hook.sessiontrack_message(
        session_id=sid, direction="inbound", text="Hello", message_id=f"{sid}-1", at=at(0.5)
    )
    hook.sessiontrack_node_executed(session_id=sid, node_id="ask", duration_ms=250.0, at=at(1))
    hook.sessiontrack_status_changed(
        session_id=sid, status="waiting_input", node_id="ask", at=at(1)
    )
    hook.sessiontrack_message(session_id=sid, direction="inbound", text="My bill", at=at(3))
    hook.sessiontrack_status_changed(session_id=sid, status="running", node_id="ask", at=at(3))
    hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="llm",
        model="gpt-4o-mini",
        provider="openai",
        input_tokens=120,
        output_tokens=30,
        latency_ms=800.0,
        ttfb_ms=200.0,
        cost=0.0012,
        finish_reason="tool_calls",
        at=at(4),
    )
    hook.sessiontrack_tool_call(
        session_id=sid,
        node_id="llm",
        name="lookup_invoice",
        call_id="call_1",
        arguments={"customer": "+4915"},
        error="TimeoutError",
        duration_ms=500.0,
        at=at(4.6),
    )
    hook.sessiontrack_llm_call(
        session_id=sid,
        node_id="llm",
        model="gpt-4o-mini",
        latency_ms=100.0,
        error="rate limited: retry later",
        at=at(5),
    )
    hook.sessiontrack_node_executed(
        session_id=sid, node_id="llm", duration_ms=2000.0, error="no answer", at=at(5.1)
    )
    hook.sessiontrack_message(
        session_id=sid, direction="outbound", text="Sorry!", node_id="llm", at=at(5.2)
    )
    hook.sessiontrack_variables_changed(session_id=sid, variables={"topic": "bill"}, at=at(5.2))
    hook.sessiontrack_session_completed(session_id=sid, reason="handed_over", at=at(6))


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for s in spans:
        out.setdefault(s.name, []).append(s)
    return out


def key(span: ReadableSpan) -> tuple[int, int]:
    assert span.context is not None
    return span.context.trace_id, span.context.span_id


def shape(span: ReadableSpan) -> tuple[Any, ...]:
    """All of a span but its resource (``service.instance.id`` differs per process)."""
    return (
        key(span),
        span.parent.span_id if span.parent else None,
        span.name,
        span.kind,
        span.start_time,
        span.end_time,
        span.status.status_code,
        span.status.description,
        dict(span.attributes or {}),
        [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
    )


async def exported(tracker: sessiontrack.Tracker, exporter: OtelExporter) -> None:
    """Wait until ``exporter`` has exported everything the tracker committed."""
    await tracker.flush()
    last = await tracker.store.last_seq()
    await wait_until(lambda: exporter.stats.last_seq >= last, within=10)


async def test_a_session_is_one_trace_of_nodes_llm_and_tool_spans(
    database_url: str, prefix: str
) -> None:
    memory = InMemorySpanExporter()
    otel = OtelExporter(memory, start="beginning", **FAST)
    sid = sessiontrack.new_session_id()
    async with sessiontrack.Tracker(database_url, consumers=[otel], **options(prefix)) as tracker:
        hook = tracker.plugin_manager.hook
        hook.sessiontrack_flow_registered(
            chatbot_id="bot", name="Billing bot", flow=FLOW, version="v3"
        )
        await tracker.flush()
        full_session(hook, sid)
        await exported(tracker, otel)
    spans = memory.get_finished_spans()
    names = by_name(spans)
    assert sorted(names) == [
        "chat gpt-4o-mini",
        "execute_tool lookup_invoice",
        "invoke_workflow Billing bot",
        "node Answer",
        "node Ask",
    ]
    assert len(spans) == 6 and len(names["chat gpt-4o-mini"]) == 2
    tid = trace_id(sid)
    assert format(tid, "032x") == sid.replace("-", "")  # the trace id is the session id
    (root,) = names["invoke_workflow Billing bot"]
    assert root.parent is None and key(root) == (tid, span_id(sid))
    for span in spans:
        assert span.context is not None and span.context.trace_id == tid
        assert span.attributes is not None
        assert span.attributes["gen_ai.conversation.id"] == "+4915"
        assert span.attributes["sessiontrack.session.id"] == sid
        if span is not root:
            assert span.parent is not None and span.parent.span_id == span_id(sid)
            assert span.context.span_id == span_id(sid, int(span.attributes["sessiontrack.seq"]))  # type: ignore[arg-type]

    # the root: the whole session, its outcome and totals
    assert root.kind is SpanKind.INTERNAL
    assert root.start_time == ns(T0) and root.end_time == ns(T0 + timedelta(seconds=6))
    assert root.status.status_code is StatusCode.UNSET
    attrs = dict(root.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_workflow"
    assert attrs["gen_ai.workflow.name"] == "Billing bot"
    assert attrs["sessiontrack.chatbot.id"] == "bot"
    assert attrs["sessiontrack.flow.version"] == "v3"
    assert attrs["sessiontrack.session.status"] == "completed"
    assert attrs["sessiontrack.session.completion_reason"] == "handed_over"
    assert attrs["gen_ai.usage.input_tokens"] == 120 and attrs["gen_ai.usage.output_tokens"] == 30
    assert attrs["sessiontrack.cost"] == pytest.approx(0.0012)
    assert (attrs["sessiontrack.llm_calls"], attrs["sessiontrack.tool_calls"]) == (2, 1)
    assert attrs["sessiontrack.error_count"] == 3  # the failed LLM call, tool call and node
    assert (
        attrs["sessiontrack.session.node_count"],
        attrs["sessiontrack.session.message_count"],
    ) == (2, 3)
    # messages and status changes as span events, in order, without their text by default
    events = [(e.name, e.timestamp, dict(e.attributes or {})) for e in root.events]
    assert [
        (n, a.get("sessiontrack.message.direction") or a["sessiontrack.session.status"])
        for n, _, a in events
    ] == [
        ("sessiontrack.message", "inbound"),
        ("sessiontrack.status_changed", "waiting_input"),
        ("sessiontrack.message", "inbound"),
        ("sessiontrack.status_changed", "running"),
        ("sessiontrack.message", "outbound"),
    ]
    assert [t for _, t, _ in events] == [ns(T0 + timedelta(seconds=s)) for s in (0.5, 1, 3, 3, 5.2)]
    assert events[0][2]["sessiontrack.message.id"] == f"{sid}-1"
    assert events[4][2]["sessiontrack.node.id"] == "llm"
    assert not any("sessiontrack.message.text" in a for _, _, a in events)

    # nodes: their duration ends at the report
    (ask,) = names["node Ask"]
    assert ask.start_time == ns(T0 + timedelta(seconds=0.75)) and ask.end_time == ns(
        T0 + timedelta(seconds=1)
    )
    assert ask.attributes is not None and ask.attributes["sessiontrack.node.id"] == "ask"
    assert ask.attributes["sessiontrack.node.label"] == "Ask"
    assert ask.status.status_code is StatusCode.UNSET
    (answer,) = names["node Answer"]
    assert answer.start_time == ns(T0 + timedelta(seconds=3.1))
    assert (
        answer.status.status_code is StatusCode.ERROR and answer.status.description == "no answer"
    )
    assert answer.attributes is not None and answer.attributes["error.type"] == "_OTHER"

    # LLM calls: GenAI attributes, CLIENT spans, errors as status
    ok, failed = sorted(names["chat gpt-4o-mini"], key=lambda s: s.start_time or 0)
    assert ok.kind is SpanKind.CLIENT
    assert ok.start_time == ns(T0 + timedelta(seconds=3.2)) and ok.end_time == ns(
        T0 + timedelta(seconds=4)
    )
    assert dict(ok.attributes or {}) | {"sessiontrack.seq": 0} == {
        "gen_ai.conversation.id": "+4915",
        "sessiontrack.session.id": sid,
        "sessiontrack.chatbot.id": "bot",
        "sessiontrack.seq": 0,
        "sessiontrack.node.id": "llm",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "gen_ai.response.time_to_first_chunk": 0.2,
        "sessiontrack.cost": 0.0012,
    }
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "rate limited: retry later"
    assert failed.attributes is not None and "gen_ai.provider.name" not in failed.attributes

    # the tool call
    (tool,) = names["execute_tool lookup_invoice"]
    assert tool.kind is SpanKind.INTERNAL
    assert tool.start_time == ns(T0 + timedelta(seconds=4.1)) and tool.end_time == ns(
        T0 + timedelta(seconds=4.6)
    )
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "lookup_invoice"
    assert tool.attributes["gen_ai.tool.call.id"] == "call_1"
    assert tool.attributes["error.type"] == "TimeoutError"
    assert "gen_ai.tool.call.arguments" not in tool.attributes  # content is opt-in
    assert tool.status.status_code is StatusCode.ERROR
    assert otel.stats.roots == 1 and otel.stats.spans == 6 and otel.stats.cpu_s > 0


async def test_content_is_opt_in_and_a_session_without_conversation_uses_its_id(
    database_url: str, prefix: str
) -> None:
    memory = InMemorySpanExporter()
    otel = OtelExporter(memory, start="beginning", capture_content=True, max_events=2, **FAST)
    sid = sessiontrack.new_session_id()
    async with sessiontrack.Tracker(database_url, consumers=[otel], **options(prefix)) as tracker:
        full_session(tracker.plugin_manager.hook, sid, conversation=None)
        await exported(tracker, otel)
    spans = by_name(memory.get_finished_spans())
    (root,) = spans["invoke_workflow bot"]  # no registered flow: the chatbot id names it
    assert all(
        s.attributes and s.attributes["gen_ai.conversation.id"] == sid
        for v in spans.values()
        for s in v
    )
    assert [dict(e.attributes or {}).get("sessiontrack.message.text") for e in root.events] == [
        "Hello",
        None,
    ]
    assert root.attributes is not None and root.attributes["sessiontrack.events_dropped"] == 3
    (tool,) = spans["execute_tool lookup_invoice"]
    assert tool.attributes is not None
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"customer":"+4915"}'
    assert "gen_ai.tool.call.result" not in tool.attributes  # it returned nothing


class Flaky(InMemorySpanExporter):
    """Keeps every span handed to it; fails the calls numbered in ``fail`` *after*
    keeping the spans (they reached the backend, the acknowledgement was lost), and every
    call from ``dead_from`` on without keeping them (a crash)."""

    def __init__(self, fail: set[int], dead_from: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail, self.dead_from = fail, dead_from

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.dead_from is not None and self.calls >= self.dead_from:
            return SpanExportResult.FAILURE
        super().export(spans)
        return SpanExportResult.FAILURE if self.calls in self.fail else SpanExportResult.SUCCESS


async def report_many(tracker: sessiontrack.Tracker, count: int, t0: datetime = T0) -> list[str]:
    sids = [sessiontrack.new_session_id() for _ in range(count)]
    for i, sid in enumerate(sids):
        full_session(
            tracker.plugin_manager.hook, sid, t0=t0 + timedelta(minutes=i), conversation=f"c{i}"
        )
    await tracker.flush()
    return sids


async def reference(database_url: str, prefix: str) -> dict[tuple[int, int], tuple[Any, ...]]:
    """The spans of the whole log, exported in one go by a fresh exporter of its own."""
    memory = InMemorySpanExporter()
    otel = OtelExporter(memory, start="beginning", name="otel-reference", **FAST)
    async with sessiontrack.Tracker(database_url, consumers=[otel], **options(prefix)) as tracker:
        await exported(tracker, otel)
    out = {key(s): shape(s) for s in memory.get_finished_spans()}
    assert len(out) == len(memory.get_finished_spans())
    return out


async def test_a_stop_mid_way_and_lost_acknowledgements_lose_nothing_and_keep_the_ids(
    database_url: str, prefix: str
) -> None:
    # run 1: the 2nd export's acknowledgement is lost (re-exported), then the exporter dies
    first = Flaky(fail={2}, dead_from=5)
    otel = OtelExporter(first, start="beginning", batch_size=7, **FAST)
    async with sessiontrack.Tracker(database_url, consumers=[otel], **options(prefix)) as tracker:
        await report_many(tracker, 4)
        await wait_until(lambda: first.calls >= 7)  # dead, retrying with backoff
        stuck_at = await tracker.store.read_cursor("otel")
        last = await tracker.store.last_seq()
    assert stuck_at is not None and 0 < stuck_at < last
    # run 2: a new process (nothing in memory), a working exporter, more sessions
    second = InMemorySpanExporter()
    otel = OtelExporter(second, start="beginning", batch_size=7, **FAST)
    async with sessiontrack.Tracker(database_url, consumers=[otel], **options(prefix)) as tracker:
        await report_many(tracker, 2, t0=T0 + timedelta(hours=1))
        await exported(tracker, otel)
        assert otel.stats.events == (await tracker.store.last_seq()) - stuck_at

    expected = await reference(database_url, prefix)
    assert len(expected) == 6 * 6  # 6 sessions of 6 spans
    got = [*first.get_finished_spans(), *second.get_finished_spans()]
    assert {key(s) for s in got} == set(expected)  # nothing lost
    assert len(got) > len(expected)  # some twice (at least once) ...
    for span in got:
        assert shape(span) == expected[key(span)]  # ... and then identical, ids included


async def test_only_committed_reports_become_spans(database_url: str, prefix: str) -> None:
    memory = InMemorySpanExporter()
    otel = OtelExporter(memory, start="beginning", **FAST)
    async with sessiontrack.Tracker(
        database_url, consumers=[otel], **options(prefix, commit_delay=1.0)
    ) as tracker:
        hook = tracker.plugin_manager.hook
        sid = sessiontrack.new_session_id()
        hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot")
        hook.sessiontrack_node_executed(session_id=sid, node_id="a", duration_ms=5.0)
        await tracker.flush()
        # the next batch starts a second after this one: these wait, uncommitted
        hook.sessiontrack_node_executed(session_id=sid, node_id="b", duration_ms=5.0)
        hook.sessiontrack_node_executed(session_id=sessiontrack.new_session_id(), node_id="x")
        await wait_until(lambda: otel.stats.last_seq == 2)
        await anyio.sleep(0.2)
        assert await tracker.store.last_seq() == 2, "the test needs node b still queued"
        assert [s.name for s in memory.get_finished_spans()] == ["node a"]
        hook.sessiontrack_session_completed(session_id=sid, status="stopped", reason="agent")
        await tracker.flush()
        hook.sessiontrack_node_executed(session_id=sid, node_id="late")  # after a stop: late
        hook.sessiontrack_status_changed(session_id=sid, status="running")  # late too
        await exported(tracker, otel)
        assert tracker.stats.orphans == 1 and tracker.stats.late == 2
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == ["node a", "node b", "invoke_workflow bot"]
    assert dict(spans[2].attributes or {})["sessiontrack.session.status"] == "stopped"


# --- OTLP over HTTP to a real receiver ---------------------------------------------------


class Receiver:
    """An OTLP/HTTP trace receiver: a real HTTP server decoding the protobuf requests.
    ``status`` is what it answers (200, or an error while it is "down")."""

    def __init__(self) -> None:
        self.spans: list[Any] = []  # opentelemetry.proto.trace.v1.Span
        self.resources: list[dict[str, Any]] = []
        self.status = 200
        self.requests = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                status = receiver.status
                if status == 200 and self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    for rs in request.resource_spans:
                        receiver.resources.append(
                            {a.key: a.value.string_value for a in rs.resource.attributes}
                        )
                        for ss in rs.scope_spans:
                            assert ss.scope.name == "sessiontrack.otel"
                            receiver.spans.extend(ss.spans)
                self.send_response(status if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def shapes(self) -> list[tuple[tuple[int, int], tuple[Any, ...]]]:
        """Every span received (twice if it came twice): its ids and the rest."""
        out = []
        for s in list(self.spans):
            attrs = {a.key: _any(a.value) for a in s.attributes}
            events = [
                (e.name, e.time_unix_nano, {a.key: _any(a.value) for a in e.attributes})
                for e in s.events
            ]
            ids = (int.from_bytes(s.trace_id, "big"), int.from_bytes(s.span_id, "big"))
            parent = int.from_bytes(s.parent_span_id, "big") if s.parent_span_id else None
            rest = (parent, s.name, s.start_time_unix_nano, s.end_time_unix_nano, s.status.code)
            out.append((ids, (*rest, attrs, events)))
        return out


def _any(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_any(v) for v in value.array_value.values)
    return getattr(value, kind)


def proto_shape(shape: tuple[Any, ...]) -> tuple[Any, ...]:
    """A span's :func:`shape` as the receiver decodes it."""
    (_, _), parent, name, _kind, start, end, code, _desc, attrs, events = shape
    return (parent, name, start, end, code.value, attrs, events)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


async def test_otlp_over_http_delivers_the_same_spans_after_an_outage(
    database_url: str, prefix: str, receiver: Receiver
) -> None:
    receiver.status = 500  # down: not retried by the SDK, so the consumer backs off
    otlp = OtelExporter(
        OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", timeout=2),
        start="beginning",
        batch_size=9,
        **FAST,
    )
    async with sessiontrack.Tracker(database_url, consumers=[otlp], **options(prefix)) as tracker:
        await report_many(tracker, 3)
        await wait_until(lambda: otlp.stats.failures >= 3)
        assert receiver.spans == [] and await tracker.store.read_cursor("otel") == 0
        receiver.status = 200
        await exported(tracker, otlp)
    expected = await reference(database_url, prefix)
    got = receiver.shapes()
    assert len(got) == len(expected) == 18  # each once: no acknowledgement was lost
    assert dict(got) == {k: proto_shape(v) for k, v in expected.items()}
    assert receiver.resources[0]["service.name"] == "sessiontrack"


HOST = """
import anyio, sessiontrack
from datetime import UTC, datetime, timedelta
from sessiontrack.otel import OtelExporter

async def main():
    otel = OtelExporter(endpoint={endpoint!r}, start="beginning", batch_size=5, poll_interval=0.05)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    async with sessiontrack.Tracker({url!r}, prefix={prefix!r}, migrate=True,
                                    sweep_interval=None, consumers=[otel]) as tracker:
        hook = tracker.plugin_manager.hook
        for i in range(10_000):
            sid, at = sessiontrack.new_session_id(), t0 + timedelta(minutes=i)
            hook.sessiontrack_session_started(session_id=sid, chatbot_id="bot", at=at)
            hook.sessiontrack_message(session_id=sid, direction="inbound", text="hi", at=at)
            hook.sessiontrack_node_executed(session_id=sid, node_id="a", duration_ms=9, at=at)
            hook.sessiontrack_llm_call(session_id=sid, model="m", input_tokens=3, at=at)
            hook.sessiontrack_tool_call(session_id=sid, name="t", error="boom", at=at)
            hook.sessiontrack_session_completed(session_id=sid, at=at + timedelta(seconds=1))
            await tracker.flush()
            await anyio.sleep(0.01)

anyio.run(main)
"""


async def test_a_host_killed_mid_export_loses_nothing_and_the_cli_resumes(
    database_url: str, prefix: str, receiver: Receiver, tmp_path: Path
) -> None:
    env = {**os.environ, "OTEL_SERVICE_NAME": "bot-host"}
    script = HOST.format(endpoint=receiver.url, url=database_url, prefix=prefix)
    host = await anyio.open_process([sys.executable, "-c", script], env=env, stdout=None)
    try:
        await wait_until(lambda: len(receiver.spans) >= 20, within=90)
    finally:
        host.send_signal(signal.SIGKILL)  # mid-way: sessions half exported, batches in flight
        await host.wait()
    command = [sys.executable, "-m", "sessiontrack.cli", "otel", "--database-url", database_url]
    command += ["--prefix", prefix, "--endpoint", receiver.url, "--poll-interval", "0.05"]
    with (tmp_path / "cli.err").open("wb") as err:
        cli = await anyio.open_process(command, env=env, stdout=None, stderr=err)
        try:
            expected = await reference(database_url, prefix)  # the log, as committed
            # a generous limit: the CLI's own start (imports) took over 20 s on a loaded
            # two-core machine, and a SIGINT during its imports fails the test
            await wait_until(lambda: {k for k, _ in receiver.shapes()} >= set(expected), 90)
            # the host may have exported everything before it died: then the CLI has
            # nothing to send, and a SIGINT still in its imports fails it; interrupt it
            # once it runs (its first progress line)
            await wait_until(lambda: b"otel:" in (tmp_path / "cli.err").read_bytes(), 90)
        finally:
            cli.send_signal(signal.SIGINT)
            await cli.wait()
    assert cli.returncode in (0, 130), (tmp_path / "cli.err").read_text()
    got = receiver.shapes()
    assert {k for k, _ in got} == set(expected)  # nothing lost, nothing invented
    for ids, rest in got:
        assert rest == proto_shape(expected[ids])  # a span sent twice: the same both times
    assert {r["service.name"] for r in receiver.resources} == {"bot-host"}


def test_the_docs_example_runs_as_printed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/opentelemetry.md's runnable example, run as printed (in a temporary folder:
    it writes a relative SQLite file); its output has the shape the page shows."""
    page = (Path(__file__).parent.parent / "docs" / "opentelemetry.md").read_text()
    (code,) = [
        b for b in re.findall(r"^```python\n(.*?)^```", page, re.S | re.M) if "anyio.run" in b
    ]
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/opentelemetry.md", "exec"), {"__name__": "__main__"})
    lines = out.getvalue().splitlines()
    assert [line.split()[-1] for line in lines if line.startswith("trace ")] == [
        "completed",
        "expired",
    ]
    assert re.match(r"trace [0-9a-f]{32}  invoke_workflow Billing bot  completed", lines[0])
    assert [line.split()[0] for line in lines[1:4]] == ["chat", "execute_tool", "node"]
    assert lines[2].split()[-3:] == ["300", "ms", "ERROR"]

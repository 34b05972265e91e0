"""OpenTelemetry export cost: ingestion with and without sessiontrack.otel running.

One process, one backend at a time, fresh tables per run. A workload of sessions (each a
start, 3 nodes, 4 messages, 2 LLM calls, 1 tool call, 2 status changes and a completion:
14 events, 7 spans) is reported through the tracker's hooks as fast as the tracker takes
it, once with no consumer and once with an ``OtelExporter`` in the same tracker, the order
swapped every run. Measured per run:

- ingestion: events/s from the first hook call until ``flush()`` returns, and the
  process's CPU µs per event over that time;
- with the exporter: the same, then the time until the exporter has exported everything
  (end to end), the process CPU µs per event up to then, and the exporter's own CPU µs
  per event (mapping events to spans on the event loop plus the exporter's thread,
  ``OtelStats.cpu_s``).

The span exporter is ``--exporter encode`` (default: the OTLP protobuf encoding the
OTLP exporters do, then discarded: the SDK's cost without a network), ``memory`` (the
SDK's InMemorySpanExporter) or ``otlp`` (OTLP/HTTP to a receiver in a separate process,
which answers 200 without decoding).

    python benchmarks/bench_otel.py                        # SQLite, 2 runs of 2,000 sessions
    python benchmarks/bench_otel.py --backend postgresql --exporter otlp
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
    POSTGRES_URL,
    machine,
    median,
    postgres_version,
    print_machine,
    print_table,
    progress,
    progress_done,
    write_json,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import sessiontrack
from sessiontrack.otel import OtelExporter

EVENTS_PER_SESSION = 14
SPANS_PER_SESSION = 7


class EncodeOnly(SpanExporter):
    """What an OTLP exporter does before the network: encode the request, then drop it."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializeToString())
        return SpanExportResult.SUCCESS


RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def report(tracker: sessiontrack.Tracker, sessions: int, t0: datetime) -> None:
    hook = tracker.plugin_manager.hook
    for i in range(sessions):
        sid = sessiontrack.new_session_id()
        at = t0 + timedelta(seconds=i)
        hook.sessiontrack_session_started(
            session_id=sid, chatbot_id=f"bot-{i % 4}", conversation_id=f"+49{i}", at=at
        )
        hook.sessiontrack_message(session_id=sid, direction="inbound", text="Hello", at=at)
        hook.sessiontrack_node_executed(session_id=sid, node_id="greet", duration_ms=3, at=at)
        hook.sessiontrack_status_changed(session_id=sid, status="waiting_input", at=at)
        hook.sessiontrack_message(session_id=sid, direction="inbound", text="My bill", at=at)
        hook.sessiontrack_status_changed(session_id=sid, status="running", at=at)
        for _ in range(2):
            hook.sessiontrack_llm_call(
                session_id=sid,
                node_id="answer",
                model="gpt-4o-mini",
                provider="openai",
                input_tokens=200,
                output_tokens=40,
                latency_ms=700,
                cost=0.0004,
                at=at,
            )
        hook.sessiontrack_tool_call(
            session_id=sid, node_id="answer", name="lookup", duration_ms=80, at=at
        )
        hook.sessiontrack_node_executed(session_id=sid, node_id="answer", duration_ms=900, at=at)
        hook.sessiontrack_message(session_id=sid, direction="outbound", text="Here", at=at)
        hook.sessiontrack_node_executed(session_id=sid, node_id="bye", duration_ms=2, at=at)
        hook.sessiontrack_message(session_id=sid, direction="outbound", text="Bye", at=at)
        hook.sessiontrack_session_completed(session_id=sid, at=at + timedelta(seconds=1))


async def one_run(url: str, sessions: int, exporter: SpanExporter | None) -> dict[str, Any]:
    prefix = f"bench_otel_{uuid.uuid4().hex[:8]}_"
    groups = [OtelExporter(exporter, start="beginning", poll_interval=0.2)] if exporter else []
    options: dict[str, Any] = {"prefix": prefix, "migrate": True, "sweep_interval": None}
    try:
        async with sessiontrack.Tracker(url, consumers=groups, **options) as tracker:
            events = sessions * EVENTS_PER_SESSION
            cpu0, t0 = time.process_time(), time.perf_counter()
            chunk = 100
            for done in range(0, sessions, chunk):
                report(tracker, chunk, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=done))
                await tracker.drain()
            await tracker.flush()
            ingest_s, ingest_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            out: dict[str, Any] = {
                "events": events,
                "ingest_events_s": events / ingest_s,
                "ingest_cpu_us": ingest_cpu / events * 1e6,
            }
            if groups:
                otel = groups[0]
                last = await tracker.store.last_seq()
                while otel.stats.last_seq < last:  # noqa: ASYNC110 (a counter, not an event)
                    await asyncio.sleep(0.01)
                total_s, total_cpu = time.perf_counter() - t0, time.process_time() - cpu0
                assert otel.stats.spans >= sessions * SPANS_PER_SESSION
                out |= {
                    "end_to_end_events_s": events / total_s,
                    "total_cpu_us": total_cpu / events * 1e6,
                    "exporter_cpu_us": otel.stats.cpu_s / events * 1e6,
                    "spans": otel.stats.spans,
                }
            return out
    finally:
        if url.startswith("postgresql"):
            from tests.conftest import drop_prefixed_tables

            await drop_prefixed_tables(url, prefix)


def make_exporter(kind: str, port: int | None) -> SpanExporter:
    if kind == "memory":
        return InMemorySpanExporter()
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    return EncodeOnly()


async def main(args: argparse.Namespace, port: int | None) -> dict[str, Any]:
    pg = await postgres_version(args.postgres_url) if args.backend == "postgresql" else None
    info = machine(pg)
    print_machine(info)
    DATA_DIR.mkdir(exist_ok=True)
    runs: list[tuple[str, dict[str, Any]]] = []
    try:
        for n in range(args.repeat):
            order = ["without", "with"] if n % 2 == 0 else ["with", "without"]
            for mode in order:
                progress(f"run {n + 1}/{args.repeat}: {mode} the exporter")
                if args.backend == "sqlite":
                    db = DATA_DIR / f"bench_otel_{uuid.uuid4().hex[:8]}.db"
                    url = f"sqlite+aiosqlite:///{db}"
                else:
                    url = args.postgres_url
                exporter = make_exporter(args.exporter, port) if mode == "with" else None
                runs.append((mode, await one_run(url, args.sessions, exporter)))
                if args.backend == "sqlite":
                    for f in DATA_DIR.glob(f"{db.name}*"):
                        f.unlink()
    finally:
        progress_done()
    without = [r for m, r in runs if m == "without"]
    with_ = [r for m, r in runs if m == "with"]
    ingest_without = median([r["ingest_events_s"] for r in without])
    ingest_with = median([r["ingest_events_s"] for r in with_])
    cpu_without = median([r["ingest_cpu_us"] for r in without])
    print(
        f"backend {args.backend}, exporter {args.exporter}, {args.sessions:,} sessions "
        f"({args.sessions * EVENTS_PER_SESSION:,} events, "
        f"{args.sessions * SPANS_PER_SESSION:,} spans) per run, medians of {args.repeat} runs"
    )
    print_table(
        ["", "events/s", "CPU µs/event"],
        [
            ["ingestion, no exporter", ingest_without, cpu_without],
            [
                "ingestion, exporter running",
                ingest_with,
                median([r["ingest_cpu_us"] for r in with_]),
            ],
            [
                "ingestion + export done (end to end)",
                median([r["end_to_end_events_s"] for r in with_]),
                median([r["total_cpu_us"] for r in with_]),
            ],
            ["the exporter's own CPU", "-", median([r["exporter_cpu_us"] for r in with_])],
        ],
    )
    print(f"  ingestion with the exporter running: {ingest_with / ingest_without:.0%} of without")
    results = {"machine": info, "args": vars(args), "runs": runs}
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--exporter", choices=["encode", "memory", "otlp"], default="encode")
    parser.add_argument("--sessions", type=int, default=2000, help="per run (default 2,000)")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each (default 2)")
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args()
    receiver = None
    if arguments.exporter == "otlp":
        receiver = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE)
        assert receiver.stdout is not None
    try:
        asyncio.run(main(arguments, int(receiver.stdout.readline()) if receiver else None))
    finally:
        if receiver is not None:
            receiver.kill()

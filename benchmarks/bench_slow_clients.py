"""Slow clients benchmark: the RSS of ``sessiontrack serve`` against the number of stalled
clients.

For each count of stalled Socket.IO clients (default 0, 20, 50, 100, 200), a fresh
``sessiontrack serve`` runs in its own process on the same database; this process opens
the clients (raw websockets with a 4 KiB receive buffer that subscribe to every session
and then read nothing), plus some stalled SSE streams, and reports a steady stream of hook
calls (default 2,000 events/s, messages of ``--text-bytes`` characters) for a fixed
duration. The server's RSS (``VmRSS`` of ``/proc/<pid>/status``) is sampled every 0.25 s;
the table gives it once the clients are connected, at its peak and at the end, and the
peak's difference from the run without slow clients of the same invocation. The socket
clients cut off by their send-queue bound are counted from the server's log.

    python benchmarks/bench_slow_clients.py                       # PostgreSQL, 30 s each
    python benchmarks/bench_slow_clients.py --backend sqlite --counts 0 20 50
    python benchmarks/bench_slow_clients.py --duration 60 --sse 50
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
    POSTGRES_URL,
    machine,
    postgres_version,
    print_machine,
    print_table,
    write_json,
)

from tests.web_helpers.live import PREFIX
from tests.web_helpers.processes import rss_kib, serve_pid, serve_process
from tests.web_helpers.raw_socket import raw_socket

TABLE_PREFIX = "bench_slow_"


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


async def stalled_sse(port: int, stack: AsyncExitStack) -> None:
    """An SSE stream that is opened and then never read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    _, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {PREFIX}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    stack.callback(writer.close)


async def load(pm: Any, rate: float, duration: float, text: str) -> int:
    """``rate`` events/s for ``duration`` s: sessions of a start and five messages."""
    import sessiontrack

    hook = pm.hook
    emitted = 0
    open_sessions: list[tuple[str, int]] = []
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration:
        for _ in range(int(rate * elapsed) - emitted):
            emitted += 1
            if len(open_sessions) < 100:
                sid = sessiontrack.new_session_id()
                hook.sessiontrack_session_started(session_id=sid, chatbot_id="bench")
                open_sessions.append((sid, 0))
                continue
            sid, sent = open_sessions.pop(0)
            hook.sessiontrack_message(session_id=sid, direction="outbound", text=text)
            if sent < 4:
                open_sessions.append((sid, sent + 1))
        await asyncio.sleep(0.005)
    return emitted


async def one_run(
    args: argparse.Namespace, url: str, tracker: Any, sockets: int, log_dir: Path
) -> dict[str, Any]:
    text = "x" * args.text_bytes
    async with serve_process(url, TABLE_PREFIX, log_dir) as base:
        port = int(base.rsplit(":", 1)[1])
        pid = serve_pid(port)
        async with AsyncExitStack() as stack:
            for _ in range(sockets):
                raw = await stack.enter_async_context(raw_socket(base))
                await raw.call("sessions:subscribe")
            for _ in range(args.sse if sockets else 0):
                await stalled_sse(port, stack)
            await asyncio.sleep(1)
            start = rss_mib(pid)
            samples = [start]
            task = asyncio.create_task(load(tracker.plugin_manager, args.rate, args.duration, text))
            while not task.done():
                samples.append(rss_mib(pid))
                await asyncio.sleep(0.25)
            emitted = task.result()
            await tracker.flush()
            await asyncio.sleep(1)
            samples.append(rss_mib(pid))
            logs = "".join(
                p.read_text(errors="replace")
                for p in log_dir.glob("serve-*.log")  # noqa: ASYNC240 - a small local file
            )
    return {
        "sockets": sockets,
        "sse": args.sse if sockets else 0,
        "events": emitted,
        "rss_start_mib": round(start, 1),
        "rss_peak_mib": round(max(samples), 1),
        "rss_end_mib": round(samples[-1], 1),
        "cut": logs.count("queue up: disconnecting it"),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    import sessiontrack

    if args.backend == "sqlite":
        DATA_DIR.mkdir(exist_ok=True)
        for p in DATA_DIR.glob("slow_clients.db*"):
            p.unlink()
        url = f"sqlite+aiosqlite:///{DATA_DIR / 'slow_clients.db'}"
        pg = None
    else:
        url = args.postgres_url
        pg = await postgres_version(url)
    info = machine(pg)
    print_machine(info)
    runs = []
    tracker = sessiontrack.Tracker(url, prefix=TABLE_PREFIX, migrate=True, sweep_interval=None)
    async with tracker:
        for count in args.counts:
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(await one_run(args, url, tracker, count, Path(tmp)))
            print(f"  {runs[-1]}", flush=True)
    if args.backend == "postgresql":
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(url)
        async with engine.begin() as conn:
            names = await conn.scalars(
                text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'bench_slow_%'")
            )
            for name in list(names):
                await conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
        await engine.dispose()
    baseline = next((r["rss_peak_mib"] for r in runs if r["sockets"] == 0), None)
    print(
        f"{args.backend}, {args.rate:,.0f} events/s for {args.duration:.0f} s per run, "
        f"messages of {args.text_bytes} characters, stalled SSE streams: {args.sse}"
    )
    print_table(
        [
            "stalled sockets",
            "stalled SSE",
            "events",
            "RSS start",
            "RSS peak",
            "RSS end",
            "peak vs 0",
            "cut",
        ],
        [
            [
                r["sockets"],
                r["sse"],
                r["events"],
                f"{r['rss_start_mib']:.1f} MiB",
                f"{r['rss_peak_mib']:.1f} MiB",
                f"{r['rss_end_mib']:.1f} MiB",
                "-" if baseline is None else f"{r['rss_peak_mib'] - baseline:+.1f} MiB",
                r["cut"],
            ]
            for r in runs
        ],
    )
    return {"machine": info, "args": vars(args), "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--counts", type=int, nargs="+", default=[0, 20, 50, 100, 200])
    parser.add_argument("--sse", type=int, default=10, help="stalled SSE streams per run")
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--text-bytes", type=int, default=500)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    write_json(args.json, asyncio.run(bench(args)))


if __name__ == "__main__":
    main()

"""Live delivery benchmark: hook call → receipt by Socket.IO and SSE clients.

One process is the host: a Tracker ingesting a steady stream of hook calls (default 2,000
events/s) and the sub-app under uvicorn. A second process holds the clients: Socket.IO
clients (some subscribed to all sessions, the rest joined to one session each) and SSE
clients (some on all sessions, the rest on one session). Each client measures receipt time
minus the event's own timestamp (taken at the hook call), and checks that no event is
missing or repeated (subscribers of all: every sequence number of the run, once; joined
clients: every message of their session, counted by messageCount).

    python benchmarks/bench_delivery.py                              # SQLite, 10 s
    python benchmarks/bench_delivery.py --backend postgresql --duration 20
    python benchmarks/bench_delivery.py --sockets-all 10 --sockets-joined 90   # more fan-out

The default mix models dashboards: 100 Socket.IO clients of which 2 watch every session
(list views) and 98 follow one session each (detail views); 20 SSE clients, 2 on every
session and 18 on one session each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import DATA_DIR, POSTGRES_URL, machine, percentile, postgres_version, print_machine

PREFIX = "/api/chatbot-sessions"
TIME_FIELDS = {
    "session:started": "startedAt",
    "session:node-executed": "at",
    "session:message-sent": "timestamp",
    "session:status-changed": "updatedAt",
    "session:completed": "completedAt",
    "session:variables-changed": "updatedAt",
}


def hook_time(name: str, data: dict[str, Any]) -> float:
    return datetime.fromisoformat(data[TIME_FIELDS[name]]).timestamp()


# --- the client process -------------------------------------------------------------------


class Tally:
    def __init__(self, kind: str, scope: str) -> None:
        self.kind, self.scope = kind, scope
        self.latencies: list[float] = []
        self.seqs: list[int] = []
        self.message_counts: list[int] = []

    def add(self, name: str, data: dict[str, Any]) -> None:
        now = time.time()
        self.latencies.append((now - hook_time(name, data)) * 1000)
        self.seqs.append(data["seq"])
        if name == "session:message-sent":
            self.message_counts.append(data["messageCount"])


async def socket_client(url: str, tally: Tally, join: str | None, ready: list[int]) -> Any:
    import socketio

    client = socketio.AsyncClient(reconnection=False)

    async def on_any(event: str, data: Any = None) -> None:
        if event in TIME_FIELDS:
            tally.add(event, data)

    client.on("*", on_any, namespace="/sessions")
    await client.connect(
        url,
        socketio_path=f"{PREFIX}/socket.io",
        namespaces=["/sessions"],
        transports=["websocket"],
        wait_timeout=30,
    )
    if join is None:
        ack = await client.call("sessions:subscribe", None, namespace="/sessions", timeout=30)
    else:
        ack = await client.call(
            "session:join", {"sessionId": join}, namespace="/sessions", timeout=30
        )
    assert ack["success"], ack
    ready.append(1)
    return client


async def sse_client(
    url: str, tally: Tally, session: str | None, ready: list[int], stop: asyncio.Event
) -> None:
    import httpx

    params = {"sessionId": session} if session else {}
    async with (
        httpx.AsyncClient(base_url=url + PREFIX, timeout=None) as http,
        http.stream("GET", "/events", params=params) as response,
    ):
        name = data = None
        async for line in response.aiter_lines():
            if line == ": connected":
                ready.append(1)
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name and data:
                tally.add(name, json.loads(data))
                name = data = None
            if stop.is_set():
                return


async def client_main(args: argparse.Namespace) -> None:
    watch = args.watch.split(",") if args.watch else []
    tallies: list[Tally] = []
    ready: list[int] = []
    stop = asyncio.Event()
    sockets = []
    tasks = []
    for _ in range(args.sockets_all):
        tallies.append(Tally("socket", "all"))
        sockets.append(await socket_client(args.url, tallies[-1], None, ready))
    for i in range(args.sockets_joined):
        tallies.append(Tally("socket", watch[i]))
        sockets.append(await socket_client(args.url, tallies[-1], watch[i], ready))
    sse_sessions = [None] * args.sse_all + watch[args.sockets_joined :][: args.sse_session]
    for session in sse_sessions:
        tallies.append(Tally("sse", session or "all"))
        tasks.append(asyncio.create_task(sse_client(args.url, tallies[-1], session, ready, stop)))
    total = args.sockets_all + args.sockets_joined + len(sse_sessions)
    while len(ready) < total:  # noqa: ASYNC110 - counting connects, nothing to wait on
        await asyncio.sleep(0.05)
    print("READY", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    expect = json.loads(line)
    # Let every client catch up (bounded): what has not arrived by then counts as missing.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(  # noqa: ASYNC110 - polling the tallies
        t.scope == "all" and (not t.seqs or t.seqs[-1] < expect["last"]) for t in tallies
    ):
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    stop.set()
    out = []
    first, last = expect["first"], expect["last"]
    for t in tallies:
        in_run = [
            (s, lat) for s, lat in zip(t.seqs, t.latencies, strict=True) if first <= s <= last
        ]
        seqs = [s for s, _ in in_run]
        if t.scope == "all":
            lost = (last - first + 1) - len(set(seqs))
        else:
            counts = t.message_counts
            lost = expect["watch"].get(t.scope, 0) - len(set(counts))
        out.append(
            {
                "kind": t.kind,
                "scope": "all" if t.scope == "all" else "one",
                "received": len(seqs),
                "duplicates": len(seqs) - len(set(seqs)),
                "missing": lost,
                "ordered": seqs == sorted(seqs),
                "latencies": [round(lat, 2) for _, lat in in_run],
            }
        )
    print(json.dumps(out), flush=True)
    for client in sockets:
        await client.disconnect()
    for task in tasks:
        task.cancel()


# --- the host process ---------------------------------------------------------------------


async def load(pm: Any, rate: float, duration: float, watch: list[str]) -> dict[str, int]:
    """Report ``rate`` events/s for ``duration`` s: session lifecycles of 8 events, plus a
    tenth of the rate as messages to the watched sessions."""
    import sessiontrack

    hook = pm.hook
    lifecycles: list[tuple[str, int]] = []
    watch_counts = dict.fromkeys(watch, 0)
    emitted = 0
    w = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < duration:
        due = int(rate * elapsed) - emitted
        for _ in range(due):
            emitted += 1
            if watch and emitted % 10 == 0:
                sid = watch[w % len(watch)]
                w += 1
                watch_counts[sid] += 1
                hook.sessiontrack_message(session_id=sid, direction="outbound", text="ping")
                continue
            if len(lifecycles) < 200:
                sid = sessiontrack.new_session_id()
                hook.sessiontrack_session_started(
                    session_id=sid, chatbot_id="bench", contact={"phone": "+5511900000000"}
                )
                lifecycles.append((sid, 1))
                continue
            sid, step = lifecycles.pop(0)
            if step in (1, 5):
                hook.sessiontrack_node_executed(session_id=sid, node_id=f"n{step}")
            elif step in (2, 4, 6):
                hook.sessiontrack_message(
                    session_id=sid, direction="outbound" if step != 4 else "inbound", text="hello"
                )
            elif step == 3:
                hook.sessiontrack_status_changed(session_id=sid, status="waiting_input")
            else:
                hook.sessiontrack_session_completed(session_id=sid)
                continue
            lifecycles.append((sid, step + 1))
        await asyncio.sleep(0.005)
    return watch_counts


async def host_main(args: argparse.Namespace) -> dict[str, Any]:
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    import sessiontrack
    from sessiontrack.web import create_app

    if args.backend == "sqlite":
        DATA_DIR.mkdir(exist_ok=True)
        path = DATA_DIR / "delivery.db"
        for p in DATA_DIR.glob("delivery.db*"):
            p.unlink()
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = args.postgres_url
    table_prefix = "bench_d_"
    tracker = sessiontrack.Tracker(url, prefix=table_prefix, migrate=True, sweep_interval=None)
    async with tracker:
        pm = tracker.plugin_manager
        pm.hook.sessiontrack_flow_registered(
            chatbot_id="bench",
            name="Bench",
            flow={
                "nodes": [
                    {
                        "id": "n1",
                        "type": "start",
                        "position": {"x": 0, "y": 0},
                        "data": {"label": "Start"},
                    }
                ],
                "edges": [],
            },
        )
        n_watch = args.sockets_joined + args.sse_session
        watch = [sessiontrack.new_session_id() for _ in range(n_watch)]
        for sid in watch:
            pm.hook.sessiontrack_session_started(session_id=sid, chatbot_id="bench")
        await tracker.flush()
        app = Starlette(routes=[Mount(PREFIX, app=create_app(tracker))])
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                lifespan="off",
                log_level="warning",
                timeout_graceful_shutdown=2,
            )
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.01)
        base = f"http://127.0.0.1:{port}"
        client = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            "--url",
            base,
            "--watch",
            ",".join(watch),
            "--sockets-all",
            str(args.sockets_all),
            "--sockets-joined",
            str(args.sockets_joined),
            "--sse-all",
            str(args.sse_all),
            "--sse-session",
            str(args.sse_session),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            limit=1 << 30,
        )
        assert client.stdout is not None and client.stdin is not None
        line = await asyncio.wait_for(client.stdout.readline(), 120)
        assert line.strip() == b"READY", line
        first = await tracker.store.last_seq() + 1
        stats0 = (tracker.stats.committed, tracker.stats.batches)
        t0 = time.perf_counter()
        watch_counts = await load(pm, args.rate, args.duration, watch)
        await tracker.flush()
        ingest_s = time.perf_counter() - t0
        last = await tracker.store.last_seq()
        await asyncio.sleep(2)
        client.stdin.write(
            (json.dumps({"first": first, "last": last, "watch": watch_counts}) + "\n").encode()
        )
        await client.stdin.drain()
        results = json.loads(await asyncio.wait_for(client.stdout.readline(), 120))
        await client.wait()
        server.should_exit = True
        await serving
        events = last - first + 1
        return {
            "url_backend": args.backend,
            "events": events,
            "ingest_s": ingest_s,
            "rate": events / ingest_s,
            "batches": tracker.stats.batches - stats0[1],
            "clients": results,
        }


def summarize(run: dict[str, Any]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in run["clients"]:
        groups.setdefault((c["kind"], c["scope"]), []).append(c)
    rows = []
    for (kind, scope), cs in sorted(groups.items()):
        lat = [x for c in cs for x in c["latencies"]]
        what = "all sessions" if scope == "all" else "one session"
        rows.append(
            {
                "clients": f"{len(cs)} {kind} ({what})",
                "received": sum(c["received"] for c in cs),
                "p50_ms": percentile(lat, 50),
                "p99_ms": percentile(lat, 99),
                "max_ms": max(lat) if lat else float("nan"),
                "missing": sum(c["missing"] for c in cs),
                "duplicates": sum(c["duplicates"] for c in cs),
                "in_order": all(c["ordered"] for c in cs),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument(
        "--sockets-all",
        type=int,
        default=2,
        help="Socket.IO clients subscribed to all sessions (default 2)",
    )
    parser.add_argument(
        "--sockets-joined",
        type=int,
        default=98,
        help="Socket.IO clients joined to one session each (default 98)",
    )
    parser.add_argument(
        "--sse-all", type=int, default=2, help="SSE clients on all sessions (default 2)"
    )
    parser.add_argument(
        "--sse-session", type=int, default=18, help="SSE clients on one session each (default 18)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--watch", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.client:
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        asyncio.run(client_main(args))
        return
    pg = asyncio.run(postgres_version(args.postgres_url)) if args.backend == "postgresql" else None
    info = machine(pg)
    print_machine(info)
    run = asyncio.run(host_main(args))
    rows = summarize(run)
    print(
        f"backend {args.backend}: {run['events']} events in {run['ingest_s']:.1f} s "
        f"({run['rate']:.0f} events/s ingested, {run['batches']} commits)"
    )
    for r in rows:
        print(
            f"  {r['clients']:<34} received {r['received']:>8,}  p50 {r['p50_ms']:7.1f} ms  "
            f"p99 {r['p99_ms']:7.1f} ms  max {r['max_ms']:7.1f} ms  missing {r['missing']}  "
            f"dup {r['duplicates']}  ordered {r['in_order']}"
        )
    if args.json:
        print(
            json.dumps(
                {
                    "machine": info,
                    "backend": args.backend,
                    "events": run["events"],
                    "rate": run["rate"],
                    "rows": rows,
                }
            )
        )


if __name__ == "__main__":
    main()
